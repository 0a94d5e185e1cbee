package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// sampleEvent fills every field of an Event with s (and variations of it).
func sampleEvent(s string, n int64) Event {
	return Event{
		ID: s, Time: time.Unix(n, n%1e9).UTC(), Caller: s, Subject: s + "x", SourceDomain: s, TargetDomain: s,
		Scopes: []string{s, "openid"}, Outcome: Outcome(n % 4), Reason: s, UpstreamError: s,
		UpstreamErrorDescription: s, Message: s,
		Hops: []Hop{
			{Domain: s, Endpoint: s, GrantType: s, Duration: time.Duration(n), AssertionJTIHash: s},
			{Domain: "b", Endpoint: "https://b/token", GrantType: "g", Duration: -1},
		},
		SubjectTokenHash: s, AssertionJTIHash: s, AssertionIssuer: s, AssertionAudience: []string{s},
		Mode: s, MappedSubject: s, TranscribedClaims: []string{s, s},
		SubjectVerified: n%2 == 0, UnverifiedSubject: s + "u", Actor: s + "a", ActorTokenHash: s,
		Profile: s + "p", DPoPJKT: s + "j", AWSAccessKeyIDHash: s + "k",
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for name, e := range map[string]Event{
		"zero":             {},
		"ascii":            sampleEvent("alice", 1_700_000_000),
		"escapes":          sampleEvent("q\"b\\s/\b\f\n\r\t\x00\x1f<>&'", 42),
		"unicode":          sampleEvent("é 日本 😀 \u2028\u2029 \u007f", -5),
		"invalid UTF-8":    sampleEvent("a\xffb\xc3(c\xed\xa0\x80", 7),
		"empty lists":      {Scopes: []string{}, Hops: []Hop{}, AssertionAudience: []string{}, Outcome: OutcomeCacheHit},
		"list of empties":  {Scopes: []string{""}, TranscribedClaims: []string{"", ""}},
		"time with offset": {Time: time.Date(2026, 11, 24, 22, 0, 0, 123456789, time.FixedZone("x", 3600))},
	} {
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatalf("%s: json.Marshal: %v", name, err)
		}
		if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
	// It appends.
	e := sampleEvent("x", 1)
	if got := e.AppendJSON([]byte("prefix")); !bytes.HasPrefix(got, []byte("prefix{")) {
		t.Errorf("does not append: %.20s", got)
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, s := range []string{"", "alice", "<&>", "\x00\"\\", "\xff\xfe", "\u2028", "日本"} {
		f.Add(s, int64(1_700_000_000))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		// Seconds from 1970 to about 9900: json.Marshal refuses years past 9999.
		e := sampleEvent(s, int64(uint64(n)%250_000_000_000))
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
		var back Event
		if err := json.Unmarshal(e.AppendJSON(nil), &back); err != nil {
			t.Fatalf("not valid JSON: %v", err)
		}
	})
}
