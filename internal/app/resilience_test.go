package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
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
	errorCode  string // the OAuth error of its answers; default temporarily_unavailable
	errorDesc  string // and its error_description, if any
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
	st, ra, code, desc := p.status, p.retryAfter, p.errorCode, p.errorDesc
	p.mu.Unlock()
	if code == "" {
		code = "temporarily_unavailable"
	}
	if answer {
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
		w.Write(b)
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
		errorCode  string
		retryAfter string
		wantErr    string
		wantCalls  int
		minGap     time.Duration // between the first two attempts
	}{
		{"two 503s then success", 2, 503, "", "", "", 3, 0},
		{"429 with Retry-After is honoured", 1, 429, "slow_down", "1", "", 2, time.Second},
		{"attempts exhausted", 5, 502, "", "", "UPSTREAM_UNAVAILABLE", 3, 0},
		{"a refusal is not retried", 1, 400, "invalid_request", "", "TOKEN_EXCHANGE_REJECTED", 1, 0},
		{"a 500 with an OAuth error is a refusal", 1, 500, "server_error", "", "TOKEN_EXCHANGE_REJECTED", 1, 0},
		{"temporarily_unavailable is retried whatever the status", 1, 400, "", "", "", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFaultProxy(t)
			p.set(func(p *faultProxy) {
				p.fail, p.status, p.errorCode, p.retryAfter = tt.fail, tt.status, tt.errorCode, tt.retryAfter
			})
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

// refusingProxy sits in front of domain A's token endpoint and answers the
// token exchanges of one subject token itself, as some authorization
// servers refuse a user-dependent request: HTTP 500 with a well-formed
// OAuth error body. Everything else is forwarded to domain A.
type refusingProxy struct {
	srv     *httptest.Server
	target  *url.URL
	subject string

	mu          sync.Mutex
	description string
	refused     int
	forwarded   int
}

func newRefusingProxy(t *testing.T) *refusingProxy {
	p := &refusingProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		p.mu.Lock()
		refuse := form.Get("subject_token") == p.subject
		desc := p.description
		if refuse {
			p.refused++
		} else {
			p.forwarded++
		}
		p.mu.Unlock()
		if refuse {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			b, _ := json.Marshal(map[string]string{"error": "server_error", "error_description": desc})
			w.Write(b)
			return
		}
		httputil.NewSingleHostReverseProxy(p.target).ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *refusingProxy) counts() (refused, forwarded int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused, p.forwarded
}

// A refusal that depends on the user, answered with HTTP 500 and an OAuth
// error body, is the user's refusal, not the domain's outage: it is not
// retried, it does not count against the domain's circuit breaker (the
// other users' chains, interleaved with the refused ones, all succeed), and
// the server's error and description (bounded) reach the caller and the
// audit trail.
func TestUpstreamRefusalIsNotAnOutage(t *testing.T) {
	p := newRefusingProxy(t)
	e := newEnv(t, envOptions{mutate: func(f *config.File) {
		u, _ := url.Parse(f.Domains[0].TokenEndpoint)
		p.target = &url.URL{Scheme: u.Scheme, Host: u.Host}
		f.Domains[0].TokenEndpoint = p.srv.URL + u.Path
		f.Domains[0].CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Minute)}
	}})
	const desc = "user doesn't have impersonation permission"
	p.mu.Lock()
	p.subject, p.description = e.subjectToken(t, sandbox.Bob, sandbox.BobPassword), desc
	p.mu.Unlock()
	good := e.subjectToken(t, "alice", "alice")

	const rounds = 4
	for i := range rounds {
		_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: p.subject, TargetDomain: "domain-b"})
		code, info := errorInfo(t, err)
		if code != codes.PermissionDenied || info.Reason != "TOKEN_EXCHANGE_REJECTED" || info.Metadata["hop"] != "token_exchange" ||
			info.Metadata["error"] != "server_error" || info.Metadata["error_description"] != desc {
			t.Fatalf("round %d: refused user got %v %v", i, code, info)
		}
		if ev := e.lastEvent(t); ev.Reason != "TOKEN_EXCHANGE_REJECTED" || ev.UpstreamError != "server_error" || ev.UpstreamErrorDescription != desc {
			t.Fatalf("round %d: audit event: reason %s, upstream %q %q", i, ev.Reason, ev.UpstreamError, ev.UpstreamErrorDescription)
		}
		if _, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: good, TargetDomain: "domain-b"}); err != nil {
			t.Fatalf("round %d: the good user's chain failed: %v", i, err)
		}
	}
	if refused, forwarded := p.counts(); refused != rounds || forwarded != rounds {
		t.Errorf("domain A saw %d refused and %d good exchanges, want %d each (a refusal is not retried)", refused, forwarded, rounds)
	}

	// The description is bounded (512 bytes) for the caller and the audit.
	p.mu.Lock()
	p.description = strings.Repeat("é", 600)
	p.mu.Unlock()
	_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: p.subject, TargetDomain: "domain-b"})
	_, info := errorInfo(t, err)
	if d := info.Metadata["error_description"]; len(d) > 512+len("…") || !strings.HasPrefix(d, "éé") || !utf8.ValidString(d) {
		t.Errorf("error_description of %d bytes: %q", len(d), d)
	}
	if ev := e.lastEvent(t); len(ev.UpstreamErrorDescription) > 512+len("…") {
		t.Errorf("audit upstream_error_description of %d bytes", len(ev.UpstreamErrorDescription))
	}
}

// One chain's retries count once against the domain's circuit breaker: two
// unavailable answers then a good one make one successful chain, not an open
// circuit (failures 2).
func TestOneChainCountsOnceAgainstTheBreaker(t *testing.T) {
	p := newFaultProxy(t)
	p.set(func(p *faultProxy) { p.fail = 2 })
	e := newEnv(t, envOptions{mutate: p.front(0, func(d *config.Domain) {
		d.CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Minute)}
	})})
	subject := e.subjectToken(t, "alice", "alice")
	for i := range 2 {
		if _, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
			t.Fatalf("chain %d: %v", i+1, err)
		}
	}
	if arrivals, _ := p.seen(); len(arrivals) != 4 {
		t.Errorf("%d token exchanges, want 4 (3 attempts, then 1)", len(arrivals))
	}
}

// An invalid answer (here a 200 that is not a token response) is reported
// as UPSTREAM_BAD_RESPONSE, is not retried, and does not count against the
// circuit breaker: retrying later would not fix it, and one user's odd
// answer must not suspend the domain for the others.
func TestBadResponsesDoNotOpenTheCircuit(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(f *config.File) {
		f.Domains[0].CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Minute)}
	}})
	subject := e.subjectToken(t, "alice", "alice")
	before := e.sb.A.ExchangeCount()
	e.sb.A.SetMisbehaviour(sandbox.Misbehaviour{Body: "<html>maintenance</html>"})
	for i := range 4 {
		_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		if code, info := errorInfo(t, err); code != codes.Unavailable || info.Reason != "UPSTREAM_BAD_RESPONSE" {
			t.Fatalf("chain %d: %v %v, want UNAVAILABLE UPSTREAM_BAD_RESPONSE", i+1, code, info)
		}
	}
	if got := e.sb.A.ExchangeCount() - before; got != 4 {
		t.Errorf("%d token exchanges for 4 chains: a bad response is not retried", got)
	}
	e.sb.A.SetMisbehaviour(sandbox.Misbehaviour{})
	if _, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
		t.Fatalf("domain A fixed: %v", err)
	}
}

// onSpanEnd is a trace.SpanProcessor that calls f, synchronously, as each
// span ends: a test hook at a precise point of a chain (the end of a hop).
type onSpanEnd struct{ f func(sdktrace.ReadOnlySpan) }

func (p onSpanEnd) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (p onSpanEnd) OnEnd(s sdktrace.ReadOnlySpan)                   { p.f(s) }
func (p onSpanEnd) Shutdown(context.Context) error                  { return nil }
func (p onSpanEnd) ForceFlush(context.Context) error                { return nil }

// Domain B down at first (connection refused: nothing was sent), then up:
// hop 2 is retried with the same assertion, which B never saw, instead of
// exchanging a new one at A. The broker's replay guard, which marked that
// jti before the first attempt, does not refuse the retry.
func TestHop2RetriesAnUnsentAssertion(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(storeName(redis), func(t *testing.T) { testHop2RetriesAnUnsentAssertion(t, redis) })
	}
}

func testHop2RetriesAnUnsentAssertion(t *testing.T, redis bool) {
	// B's token endpoint is reached through a proxy on a port closed at
	// first; the proxy starts listening as the first hop 2 attempt ends,
	// before the retry's backoff.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var (
		mu         sync.Mutex
		target     *url.URL
		assertions []string
		proxy      *http.Server
		startErr   error
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		mu.Lock()
		assertions = append(assertions, form.Get("assertion"))
		mu.Unlock()
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	})
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(onSpanEnd{func(s sdktrace.ReadOnlySpan) {
		mu.Lock()
		defer mu.Unlock()
		if s.Name() != "chainbroker.hop.jwt_bearer" || proxy != nil {
			return
		}
		proxy = &http.Server{Handler: handler}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			startErr = err
			return
		}
		go proxy.Serve(l)
	}}))
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if proxy != nil {
			proxy.Close()
		}
	})
	e := newEnv(t, envOptions{redis: redis, tracer: tp, mutate: func(f *config.File) {
		u, _ := url.Parse(f.Domains[1].TokenEndpoint)
		target = &url.URL{Scheme: u.Scheme, Host: u.Host}
		f.Domains[1].TokenEndpoint = "http://" + addr + u.Path
	}})
	subject := e.subjectToken(t, "alice", "alice")
	before := e.sb.A.ExchangeCount()
	res, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	mu.Lock()
	startErr, seen := startErr, append([]string(nil), assertions...)
	mu.Unlock()
	if startErr != nil {
		t.Fatalf("B's proxy could not listen on %s: %v", addr, startErr)
	}
	if err != nil {
		t.Fatalf("chain: %v", err)
	}
	e.checkBToken(t, res.AccessToken)
	if got := e.sb.A.ExchangeCount() - before; got != 1 {
		t.Errorf("%d token exchanges at A, want 1: B never saw the first assertion", got)
	}
	if len(seen) != 1 || seen[0] == "" {
		t.Errorf("B received %d requests, want 1 (the first attempt was refused before anything was sent)", len(seen))
	}
	var bearer []string
	for _, h := range res.Hops {
		if h.GrantType == "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			bearer = append(bearer, h.AssertionJtiHash)
		}
	}
	if len(res.Hops) != 3 || len(bearer) != 2 || bearer[0] == "" || bearer[0] != bearer[1] {
		t.Errorf("hops %d, jwt-bearer attempts' jti hashes %q: want 3 hops, hop 2 twice with the same assertion", len(res.Hops), bearer)
	}
	if ev := e.lastEvent(t); ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || len(ev.Hops) != 3 {
		t.Errorf("audit event: outcome %v, %d hops (want 3)", ev.Outcome, len(ev.Hops))
	}
}

// Domain A rotates its signing key: its JWKS (a real loopback server) has
// the new key, the broker's cached copy, fetched moments before, does not.
// With jwks_min_refresh 1m the chain fails with SOURCE_KEYS_REFRESHING
// naming the kid (a transient condition, not the configuration
// disagreement ASSERTION_KEY_UNKNOWN, nor SUBJECT_TOKEN_INVALID when the
// subject token is checked first); with 1s it waits for the refetch and
// succeeds, at the cost of no extra token exchange.
func TestSourceKeyRotation(t *testing.T) {
	old, err := token.GenerateSigner("RS256")
	if err != nil {
		t.Fatal(err)
	}
	oldJWKS, err := token.PublicJWKS(old)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		floor         time.Duration
		verifySubject bool   // the subject token, signed with the new key too, is checked first
		reason        string // "" = success
		exchanges     int64
		fetches       int32 // after the broker's copy was fetched
	}{
		{"grant, refetch a minute away", time.Minute, false, "SOURCE_KEYS_REFRESHING", 1, 0},
		{"grant, refetch within a second", time.Second, false, "", 1, 1},
		{"subject token, refetch a minute away", time.Minute, true, "SOURCE_KEYS_REFRESHING", 0, 0},
		{"subject token, refetch within a second", time.Second, true, "", 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc atomic.Pointer[[]byte]
			var fetches atomic.Int32
			doc.Store(&oldJWKS)
			jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fetches.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.Write(*doc.Load())
			}))
			t.Cleanup(jwks.Close)
			e := newEnv(t, envOptions{mutate: func(f *config.File) {
				f.Domains[0].JWKSURI = jwks.URL
				f.Domains[0].VerifySubjectToken = tt.verifySubject
				f.Domains[0].JWKSMinRefresh = config.Duration(tt.floor)
			}})
			subject := e.subjectToken(t, "alice", "alice")
			// The broker's copy: A's JWKS before the rotation.
			if err := e.app.Broker.Domains()[0].Keys.(*token.Verifier).Refresh(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			fetched := fetches.Load()
			newJWKS := e.sb.A.JWKS()
			doc.Store(&newJWKS) // the rotation
			before := e.sb.A.ExchangeCount()
			_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
			if got := reason(err); got != tt.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.reason)
			}
			if err != nil {
				// The kid the grant names: the new key's.
				var set struct {
					Keys []struct {
						Kid string `json:"kid"`
					} `json:"keys"`
				}
				if json.Unmarshal(newJWKS, &set) != nil || len(set.Keys) == 0 {
					t.Fatal("A's JWKS has no key")
				}
				if ev := e.lastEvent(t); ev.Reason != tt.reason || !strings.Contains(ev.Message, `"`+set.Keys[0].Kid+`"`) {
					t.Errorf("audit event: %s %q, want the kid %q named", ev.Reason, ev.Message, set.Keys[0].Kid)
				}
			}
			if got := e.sb.A.ExchangeCount() - before; got != tt.exchanges {
				t.Errorf("%d token exchanges, want %d", got, tt.exchanges)
			}
			if got := fetches.Load() - fetched; got != tt.fetches {
				t.Errorf("%d JWKS fetches after the rotation, want %d", got, tt.fetches)
			}
		})
	}
}

func TestJWKSMinRefreshValidated(t *testing.T) {
	for _, v := range []time.Duration{500 * time.Millisecond, -time.Second, 2 * time.Hour} {
		f := &config.File{Domains: []config.Domain{{Name: "a", JWKSMinRefresh: config.Duration(v)}}}
		f.SetDefaults()
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "domains[0].jwks_min_refresh") {
			t.Errorf("jwks_min_refresh %v: %v", v, err)
		}
	}
	f := &config.File{Domains: []config.Domain{{Name: "a"}}}
	f.SetDefaults()
	if f.Domains[0].JWKSMinRefresh.D() != 30*time.Second {
		t.Errorf("default jwks_min_refresh %v, want 30s", f.Domains[0].JWKSMinRefresh.D())
	}
}

// An outage that says why (503 temporarily_unavailable with a description)
// is retried, and its error and description reach the caller and the audit.
func TestOutageCarriesTheUpstreamError(t *testing.T) {
	p := newFaultProxy(t)
	p.set(func(p *faultProxy) { p.down, p.errorDesc = true, "maintenance until 21:00" })
	e := newEnv(t, envOptions{mutate: p.front(0, nil)})
	_, err := e.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.subjectToken(t, "alice", "alice"), TargetDomain: "domain-b"})
	code, info := errorInfo(t, err)
	if code != codes.Unavailable || info.Reason != "UPSTREAM_UNAVAILABLE" ||
		info.Metadata["error"] != "temporarily_unavailable" || info.Metadata["error_description"] != "maintenance until 21:00" {
		t.Fatalf("got %v %v", code, info)
	}
	if ev := e.lastEvent(t); ev.UpstreamError != "temporarily_unavailable" || ev.UpstreamErrorDescription != "maintenance until 21:00" {
		t.Errorf("audit event: upstream %q %q", ev.UpstreamError, ev.UpstreamErrorDescription)
	}
	if arrivals, _ := p.seen(); len(arrivals) != 3 {
		t.Errorf("%d attempts, want 3: an outage is retried", len(arrivals))
	}
}
