package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// faultProxy sits in front of a domain's token endpoint: it answers the next
// `fail` requests itself (status, Retry-After), or all of them while
// `down`, and forwards the rest. It records what it saw.
type faultProxy struct {
	srv    *httptest.Server
	target *url.URL

	mu         sync.Mutex
	fail       int
	down       bool
	status     int
	retryAfter string
	arrivals   []time.Time
	assertions []string
	forms      []url.Values
}

func newFaultProxy(t *testing.T) *faultProxy {
	p := &faultProxy{status: http.StatusServiceUnavailable}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	p.mu.Lock()
	p.arrivals = append(p.arrivals, time.Now())
	p.assertions = append(p.assertions, form.Get("assertion"))
	p.forms = append(p.forms, form)
	answer := p.down || p.fail > 0
	if p.fail > 0 {
		p.fail--
	}
	st, ra := p.status, p.retryAfter
	p.mu.Unlock()
	if answer {
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		w.Write([]byte(`{"error":"temporarily_unavailable"}`))
		return
	}
	httputil.NewSingleHostReverseProxy(p.target).ServeHTTP(w, r)
}

func (p *faultProxy) set(f func(p *faultProxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *faultProxy) seen() ([]time.Time, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.arrivals...), append([]string(nil), p.assertions...)
}

// front routes domain i's token endpoint through p.
func (p *faultProxy) front(i int, tune func(*config.Domain)) func(*config.File) {
	return func(f *config.File) {
		u, _ := url.Parse(f.Domains[i].TokenEndpoint)
		p.target = &url.URL{Scheme: u.Scheme, Host: u.Host}
		f.Domains[i].TokenEndpoint = p.srv.URL + u.Path
		if tune != nil {
			tune(&f.Domains[i])
		}
	}
}

func TestHop1Retries(t *testing.T) {
	tests := []struct {
		name       string
		fail       int
		status     int
		retryAfter string
		wantErr    string
		wantCalls  int
		minGap     time.Duration // between the first two attempts
	}{
		{"two 503s then success", 2, 503, "", "", 3, 0},
		{"429 with Retry-After is honoured", 1, 429, "1", "", 2, time.Second},
		{"attempts exhausted", 5, 502, "", "UPSTREAM_UNAVAILABLE", 3, 0},
		{"a refusal is not retried", 1, 400, "", "TOKEN_EXCHANGE_REJECTED", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFaultProxy(t)
			p.set(func(p *faultProxy) { p.fail, p.status, p.retryAfter = tt.fail, tt.status, tt.retryAfter })
			e := newEnv(t, envOptions{mutate: p.front(0, nil)})
			_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.subjectToken(t, "alice", "alice"), TargetDomain: "domain-b"})
			if got := reason(err); got != tt.wantErr {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.wantErr)
			}
			arrivals, _ := p.seen()
			if len(arrivals) != tt.wantCalls {
				t.Errorf("%d token exchange requests, want %d", len(arrivals), tt.wantCalls)
			}
			if tt.minGap > 0 && len(arrivals) > 1 && arrivals[1].Sub(arrivals[0]) < tt.minGap {
				t.Errorf("retried after %v, before the Retry-After of %v", arrivals[1].Sub(arrivals[0]), tt.minGap)
			}
		})
	}
}

// A Retry-After beyond the caller's deadline is not waited for: the call
// fails within the deadline.
func TestCallerDeadlineNeverExceeded(t *testing.T) {
	p := newFaultProxy(t)
	p.set(func(p *faultProxy) { p.down, p.retryAfter = true, "5" })
	e := newEnv(t, envOptions{mutate: p.front(0, nil)})
	subject := e.subjectToken(t, "alice", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	elapsed := time.Since(start)
	if status.Code(err) != codes.Unavailable || reason(err) != "UPSTREAM_UNAVAILABLE" {
		t.Fatalf("got %v", err)
	}
	if elapsed > 700*time.Millisecond {
		t.Errorf("the call took %v, past its 700ms deadline", elapsed)
	}
	if arrivals, _ := p.seen(); len(arrivals) != 1 {
		t.Errorf("%d attempts; a 5 s Retry-After does not fit a 700 ms deadline", len(arrivals))
	}
}

// Hop 2 unavailable: the chain starts again from hop 1, and the target never
// receives the same assertion twice.
func TestHop2NeverResendsAnAssertion(t *testing.T) {
	p := newFaultProxy(t)
	p.set(func(p *faultProxy) { p.fail = 1 })
	e := newEnv(t, envOptions{mutate: p.front(1, nil)})
	subject := e.subjectToken(t, "alice", "alice")
	before := e.sb.A.ExchangeCount()
	if _, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
		t.Fatal(err)
	}
	if got := e.sb.A.ExchangeCount() - before; got != 2 {
		t.Errorf("%d token exchanges, want 2 (a fresh assertion for the second hop 2)", got)
	}
	_, assertions := p.seen()
	if len(assertions) != 2 || assertions[0] == "" || assertions[0] == assertions[1] {
		t.Errorf("domain B received %d assertions, the same one twice: %v", len(assertions), len(assertions) == 2 && assertions[0] == assertions[1])
	}
	if ev := e.lastEvent(t); ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || len(ev.Hops) != 4 {
		t.Errorf("audit event: outcome %v, %d hops (want 4: both attempts recorded)", ev.Outcome, len(ev.Hops))
	}
}

func TestCircuitBreaker(t *testing.T) {
	p := newFaultProxy(t)
	p.set(func(p *faultProxy) { p.down = true })
	e := newEnv(t, envOptions{mutate: p.front(0, func(d *config.Domain) {
		d.MaxAttempts = 1
		d.CircuitBreaker = config.CircuitBreaker{Failures: 3, Cooldown: config.Duration(500 * time.Millisecond)}
	})})
	subject := e.subjectToken(t, "alice", "alice")
	chain := func() error {
		_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		return err
	}
	for i := range 3 {
		if r := reason(chain()); r != "UPSTREAM_UNAVAILABLE" {
			t.Fatalf("failure %d: %s", i, r)
		}
	}
	calls := func() int { a, _ := p.seen(); return len(a) }
	n := calls()
	err := chain()
	if status.Code(err) != codes.Unavailable || reason(err) != "UPSTREAM_CIRCUIT_OPEN" {
		t.Fatalf("after 3 failures: %v, want UNAVAILABLE UPSTREAM_CIRCUIT_OPEN", err)
	}
	if calls() != n {
		t.Error("an open circuit still called the domain")
	}
	p.set(func(p *faultProxy) { p.down = false })
	time.Sleep(600 * time.Millisecond) // the cooldown
	if err := chain(); err != nil {
		t.Fatalf("probe after the cooldown: %v", err)
	}
	if err := chain(); err != nil {
		t.Fatalf("closed again: %v", err)
	}
	if got := calls() - n; got != 2 {
		t.Errorf("%d calls after the cooldown, want 2", got)
	}
}
