package broker

import (
	"crypto/sha256"
	"testing"
)

// TestParseMemoisedSubjectHash: a subject token met before gives its hash
// (the audit event's subject_token_hash) from the memo of subject tokens,
// equal to Hash of the token, without building it again.
func TestParseMemoisedSubjectHash(t *testing.T) {
	src, tgt := &Domain{Name: "a"}, &Domain{Name: "b"}
	b := &Broker{
		limits:   Limits{MaxTokenBytes: 1 << 14, MaxScopes: 32, MaxResources: 16, MaxFieldLength: 1024},
		domains:  map[string]*Domain{"a": src, "b": tgt},
		chains:   map[[2]string]*Chain{{"a", "b"}: {Source: "a", Target: "b"}},
		subjects: newMemo[[sha256.Size]byte, subjectInfo](8),
	}
	req := Request{SubjectToken: "an opaque subject token, longer than thirty-two bytes", SourceDomain: "a", TargetDomain: "b"}
	parse := func() *chainRun {
		r := &chainRun{b: b, req: req}
		if _, _, _, err := r.parse(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 2 { // filled, then from the memo
		if got := parse().ev.SubjectTokenHash; got != Hash(req.SubjectToken) {
			t.Fatalf("parse %d: subject token hash %q, want %q", i, got, Hash(req.SubjectToken))
		}
	}
	// The token's bytes for its SHA-256 and the run; no hex string (3 before).
	if n := testing.AllocsPerRun(100, func() { parse() }); n > 2 {
		t.Errorf("parse of a memoised subject token allocates %v objects, want at most 2", n)
	}
}
