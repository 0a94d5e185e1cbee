package apptest

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// upstream answers every POST with 200 and a body naming its form's
// subject_token.
func upstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"for-`+r.PostForm.Get("subject_token")+`"}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status     int
	body       string
	retryAfter string
}

func post(t *testing.T, p *Proxy, form url.Values) (answer, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.PostForm(p.Endpoint(), form)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header.Get("Retry-After")}, nil
}

func subject(s string) url.Values { return url.Values{"subject_token": {s}} }

func TestProxyFaults(t *testing.T) {
	up := upstream(t)
	forwarded := func(s string) answer { return answer{200, `{"access_token":"for-` + s + `"}`, ""} }
	unavailable := answer{503, `{"error":"temporarily_unavailable","error_description":""}`, ""}
	tests := []struct {
		name  string
		setup func(p *Proxy)
		sends []string // subject tokens, in order
		want  []answer
	}{
		{"forwards", func(*Proxy) {}, []string{"a", "b"}, []answer{forwarded("a"), forwarded("b")}},
		{"fails the next two", func(p *Proxy) { p.FailNext(2, Fault{Status: 429, Error: "slow_down", RetryAfter: "1"}) },
			[]string{"a", "a", "a"}, []answer{{429, `{"error":"slow_down","error_description":""}`, "1"},
				{429, `{"error":"slow_down","error_description":""}`, "1"}, forwarded("a")}},
		{"answers all until Forward", func(p *Proxy) { p.Answer(Fault{}) }, []string{"a", "b"}, []answer{unavailable, unavailable}},
		{"forwards again", func(p *Proxy) { p.Answer(Fault{}); p.Forward() }, []string{"a"}, []answer{forwarded("a")}},
		{"refuses one subject", func(p *Proxy) {
			p.Refuse("bob", Fault{Status: 500, Error: "server_error", Description: "no"})
		}, []string{"alice", "bob"}, []answer{forwarded("alice"), {500, `{"error":"server_error","error_description":"no"}`, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProxy(t, up.URL+"/realms/a/token")
			tt.setup(p)
			for i, s := range tt.sends {
				got, err := post(t, p, subject(s))
				if err != nil || got != tt.want[i] {
					t.Errorf("request %d: %+v %v, want %+v", i, got, err, tt.want[i])
				}
			}
			reqs := p.Requests()
			if len(reqs) != len(tt.sends) {
				t.Fatalf("%d requests recorded, want %d", len(reqs), len(tt.sends))
			}
			for i, r := range reqs {
				if r.Form.Get("subject_token") != tt.sends[i] || r.Answered != (tt.want[i].status != 200) {
					t.Errorf("request %d recorded as %+v", i, r)
				}
			}
		})
	}
}

func TestProxyCloseOpen(t *testing.T) {
	p := NewProxy(t, upstream(t).URL)
	p.Close()
	// Refused, or reset when another process on the machine took the freed
	// port for a moment: either way nothing answers for the proxy.
	if _, err := post(t, p, subject("a")); !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("closed proxy: %v, want connection refused", err)
	}
	if err := p.Open(); err != nil {
		t.Fatal(err)
	}
	if got, err := post(t, p, subject("a")); err != nil || got.status != 200 {
		t.Fatalf("reopened proxy: %+v %v", got, err)
	}
}

func TestProxySlow(t *testing.T) {
	p := NewProxy(t, upstream(t).URL)
	p.Slow(1, time.Hour)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := c.PostForm(p.Endpoint(), subject("a")); err == nil {
		t.Fatal("a request delayed by an hour was answered")
	}
	p.Slow(0, 0)
	if got, err := post(t, p, subject("a")); err != nil || got.status != 200 {
		t.Fatalf("after Slow(0, 0): %+v %v", got, err)
	}
}

func TestProxyRecordReplay(t *testing.T) {
	p := NewProxy(t, upstream(t).URL)
	p.RecordAnswers(true)
	post(t, p, subject("a"))
	pool := p.RecordAnswers(false)
	post(t, p, subject("b")) // not recorded
	if len(pool) != 1 || string(pool[0]) != `{"access_token":"for-a"}` {
		t.Fatalf("recorded %q", pool)
	}
	p.Replay(pool, "c")
	if got, _ := post(t, p, subject("c")); got.body != `{"access_token":"for-a"}` {
		t.Errorf("replayed answer %q", got.body)
	}
	if got, _ := post(t, p, subject("d")); got.body != `{"access_token":"for-d"}` {
		t.Errorf("other subject %q", got.body)
	}
}

func TestProxyAssertions(t *testing.T) {
	p := NewProxy(t, upstream(t).URL)
	jwt := func(jti string) string {
		return "e30." + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"`+jti+`"}`)) + ".sig"
	}
	for _, jti := range []string{"1", "2", "1", "1"} {
		post(t, p, url.Values{"assertion": {jwt(jti)}})
	}
	if got := p.Assertions(); len(got) != 4 || got[1] != jwt("2") {
		t.Errorf("assertions %q", got)
	}
	dup, distinct := p.DuplicateJTIs()
	if len(dup) != 1 || dup["1"] != 3 || distinct != 2 {
		t.Errorf("duplicates %v, %d distinct", dup, distinct)
	}
	p.KeepRequests(false)
	post(t, p, subject("x"))
	if n := len(p.Requests()); n != 4 {
		t.Errorf("%d requests kept after KeepRequests(false), want 4", n)
	}
	if !strings.HasSuffix(p.Endpoint(), p.Addr()) {
		t.Errorf("Endpoint %q for upstream without a path", p.Endpoint())
	}
}

func TestProxyHold(t *testing.T) {
	p := NewProxy(t, upstream(t).URL)
	arrived := p.Hold()
	done := make(chan answer, 1)
	go func() {
		got, _ := post(t, p, subject("a"))
		done <- got
	}()
	<-arrived
	select {
	case got := <-done:
		t.Fatalf("a held request was answered: %+v", got)
	default:
	}
	if n := len(p.Requests()); n != 0 {
		t.Errorf("%d requests recorded while held, want 0: held before anything else", n)
	}
	p.Release()
	if got := <-done; got.status != 200 || got.body != `{"access_token":"for-a"}` {
		t.Errorf("released request: %+v", got)
	}
	if got, err := post(t, p, subject("b")); err != nil || got.status != 200 {
		t.Errorf("after Release: %+v %v", got, err)
	}
}
