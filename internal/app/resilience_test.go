package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

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
			p := apptest.NewProxy(t, "")
			p.FailNext(tt.fail, apptest.Fault{Status: tt.status, Error: tt.errorCode, RetryAfter: tt.retryAfter})
			e := apptest.Start(t, p.Front(0, nil))
			_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
			if got := reason(err); got != tt.wantErr {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.wantErr)
			}
			arrivals := p.Requests()
			if len(arrivals) != tt.wantCalls {
				t.Errorf("%d token exchange requests, want %d", len(arrivals), tt.wantCalls)
			}
			if tt.minGap > 0 && len(arrivals) > 1 && arrivals[1].At.Sub(arrivals[0].At) < tt.minGap {
				t.Errorf("retried after %v, before the Retry-After of %v", arrivals[1].At.Sub(arrivals[0].At), tt.minGap)
			}
		})
	}
}

// A Retry-After beyond the caller's deadline is not waited for: the call
// fails within the deadline.
func TestCallerDeadlineNeverExceeded(t *testing.T) {
	p := apptest.NewProxy(t, "")
	p.Answer(apptest.Fault{RetryAfter: "5"})
	e := apptest.Start(t, p.Front(0, nil))
	subject := e.SubjectToken(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	elapsed := time.Since(start)
	if status.Code(err) != codes.Unavailable || reason(err) != "UPSTREAM_UNAVAILABLE" {
		t.Fatalf("got %v", err)
	}
	if elapsed > 700*time.Millisecond {
		t.Errorf("the call took %v, past its 700ms deadline", elapsed)
	}
	if arrivals := p.Requests(); len(arrivals) != 1 {
		t.Errorf("%d attempts; a 5 s Retry-After does not fit a 700 ms deadline", len(arrivals))
	}
}

// Hop 2 unavailable: the chain starts again from hop 1, and the target never
// receives the same assertion twice.
func TestHop2NeverResendsAnAssertion(t *testing.T) {
	p := apptest.NewProxy(t, "")
	p.FailNext(1, apptest.Fault{})
	e := apptest.Start(t, p.Front(1, nil))
	subject := e.SubjectToken(t, "alice")
	before := e.Sandbox.A.ExchangeCount()
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
		t.Fatal(err)
	}
	if got := e.Sandbox.A.ExchangeCount() - before; got != 2 {
		t.Errorf("%d token exchanges, want 2 (a fresh assertion for the second hop 2)", got)
	}
	assertions := p.Assertions()
	if len(assertions) != 2 || assertions[0] == "" || assertions[0] == assertions[1] {
		t.Errorf("domain B received %d assertions, the same one twice: %v", len(assertions), len(assertions) == 2 && assertions[0] == assertions[1])
	}
	if ev := e.LastEvent(t); ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || len(ev.Hops) != 4 {
		t.Errorf("audit event: outcome %v, %d hops (want 4: both attempts recorded)", ev.Outcome, len(ev.Hops))
	}
}

func TestCircuitBreaker(t *testing.T) {
	p := apptest.NewProxy(t, "")
	p.Answer(apptest.Fault{})
	e := apptest.StartWith(t, apptest.Options{Mutate: p.Front(0, func(d *config.Domain) {
		d.MaxAttempts = 1
		d.CircuitBreaker = config.CircuitBreaker{Failures: 3, Cooldown: config.Duration(500 * time.Millisecond)}
	})})
	subject := e.SubjectToken(t, "alice")
	chain := func() error {
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		return err
	}
	for i := range 3 {
		if r := reason(chain()); r != "UPSTREAM_UNAVAILABLE" {
			t.Fatalf("failure %d: %s", i, r)
		}
	}
	calls := func() int { return len(p.Requests()) }
	n := calls()
	err := chain()
	if status.Code(err) != codes.Unavailable || reason(err) != "UPSTREAM_CIRCUIT_OPEN" {
		t.Fatalf("after 3 failures: %v, want UNAVAILABLE UPSTREAM_CIRCUIT_OPEN", err)
	}
	if calls() != n {
		t.Error("an open circuit still called the domain")
	}
	p.Forward()
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

// A refusal that depends on the user, answered with HTTP 500 and an OAuth
// error body, is the user's refusal, not the domain's outage: it is not
// retried, it does not count against the domain's circuit breaker (the
// other users' chains, interleaved with the refused ones, all succeed), and
// the server's error and description (bounded) reach the caller and the
// audit trail.
func TestUpstreamRefusalIsNotAnOutage(t *testing.T) {
	// Domain A's token endpoint behind a proxy that answers the token
	// exchanges of one subject token itself, as some authorization servers
	// refuse a user-dependent request: HTTP 500 with a well-formed OAuth
	// error body. Everything else is forwarded to domain A.
	p := apptest.NewProxy(t, "")
	e := apptest.StartWith(t, apptest.Options{Mutate: p.Front(0, func(d *config.Domain) {
		d.CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Minute)}
	})})
	const desc = "user doesn't have impersonation permission"
	refusedSubject := e.SubjectToken(t, sandbox.Bob)
	p.Refuse(refusedSubject, apptest.Fault{Status: http.StatusInternalServerError, Error: "server_error", Description: desc})
	good := e.SubjectToken(t, "alice")

	const rounds = 4
	for i := range rounds {
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: refusedSubject, TargetDomain: "domain-b"})
		code, info := errorInfo(t, err)
		if code != codes.PermissionDenied || info.Reason != "TOKEN_EXCHANGE_REJECTED" || info.Metadata["hop"] != "token_exchange" ||
			info.Metadata["error"] != "server_error" || info.Metadata["error_description"] != desc {
			t.Fatalf("round %d: refused user got %v %v", i, code, info)
		}
		if ev := e.LastEvent(t); ev.Reason != "TOKEN_EXCHANGE_REJECTED" || ev.UpstreamError != "server_error" || ev.UpstreamErrorDescription != desc {
			t.Fatalf("round %d: audit event: reason %s, upstream %q %q", i, ev.Reason, ev.UpstreamError, ev.UpstreamErrorDescription)
		}
		if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: good, TargetDomain: "domain-b"}); err != nil {
			t.Fatalf("round %d: the good user's chain failed: %v", i, err)
		}
	}
	refused, forwarded := 0, 0
	for _, r := range p.Requests() {
		if r.Answered {
			refused++
		} else {
			forwarded++
		}
	}
	if refused != rounds || forwarded != rounds {
		t.Errorf("domain A saw %d refused and %d good exchanges, want %d each (a refusal is not retried)", refused, forwarded, rounds)
	}

	// The description is bounded (512 bytes) for the caller and the audit.
	p.Refuse(refusedSubject, apptest.Fault{Status: http.StatusInternalServerError, Error: "server_error", Description: strings.Repeat("é", 600)})
	_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: refusedSubject, TargetDomain: "domain-b"})
	_, info := errorInfo(t, err)
	if d := info.Metadata["error_description"]; len(d) > 512+len("…") || !strings.HasPrefix(d, "éé") || !utf8.ValidString(d) {
		t.Errorf("error_description of %d bytes: %q", len(d), d)
	}
	if ev := e.LastEvent(t); len(ev.UpstreamErrorDescription) > 512+len("…") {
		t.Errorf("audit upstream_error_description of %d bytes", len(ev.UpstreamErrorDescription))
	}
}

// One chain's retries count once against the domain's circuit breaker: two
// unavailable answers then a good one make one successful chain, not an open
// circuit (failures 2).
func TestOneChainCountsOnceAgainstTheBreaker(t *testing.T) {
	p := apptest.NewProxy(t, "")
	p.FailNext(2, apptest.Fault{})
	e := apptest.StartWith(t, apptest.Options{Mutate: p.Front(0, func(d *config.Domain) {
		d.CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Minute)}
	})})
	subject := e.SubjectToken(t, "alice")
	for i := range 2 {
		if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
			t.Fatalf("chain %d: %v", i+1, err)
		}
	}
	if arrivals := p.Requests(); len(arrivals) != 4 {
		t.Errorf("%d token exchanges, want 4 (3 attempts, then 1)", len(arrivals))
	}
}

// An invalid answer (here a 200 that is not a token response) is reported
// as UPSTREAM_BAD_RESPONSE, is not retried, and does not count against the
// circuit breaker: retrying later would not fix it, and one user's odd
// answer must not suspend the domain for the others.
func TestBadResponsesDoNotOpenTheCircuit(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		f.Domains[0].CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Minute)}
	}})
	subject := e.SubjectToken(t, "alice")
	before := e.Sandbox.A.ExchangeCount()
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Body: "<html>maintenance</html>"})
	for i := range 4 {
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		if code, info := errorInfo(t, err); code != codes.Unavailable || info.Reason != "UPSTREAM_BAD_RESPONSE" {
			t.Fatalf("chain %d: %v %v, want UNAVAILABLE UPSTREAM_BAD_RESPONSE", i+1, code, info)
		}
	}
	if got := e.Sandbox.A.ExchangeCount() - before; got != 4 {
		t.Errorf("%d token exchanges for 4 chains: a bad response is not retried", got)
	}
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{})
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
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
	p := apptest.NewProxy(t, "")
	p.Close()
	var (
		mu       sync.Mutex
		opened   bool
		startErr error
	)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(onSpanEnd{func(s sdktrace.ReadOnlySpan) {
		mu.Lock()
		defer mu.Unlock()
		if s.Name() != "chainbroker.hop.jwt_bearer" || opened {
			return
		}
		opened = true
		startErr = p.Open()
	}}))
	e := apptest.StartWith(t, apptest.Options{Redis: redis, Tracer: tp, Mutate: p.Front(1, nil)})
	subject := e.SubjectToken(t, "alice")
	before := e.Sandbox.A.ExchangeCount()
	res, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	mu.Lock()
	openErr := startErr
	mu.Unlock()
	seen := p.Assertions()
	if openErr != nil {
		t.Fatalf("B's proxy could not listen on %s: %v", p.Addr(), openErr)
	}
	if err != nil {
		t.Fatalf("chain: %v", err)
	}
	e.CheckBToken(t, res.AccessToken)
	if got := e.Sandbox.A.ExchangeCount() - before; got != 1 {
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
	if ev := e.LastEvent(t); ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || len(ev.Hops) != 3 {
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
			e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
				f.Domains[0].JWKSURI = jwks.URL
				f.Domains[0].VerifySubjectToken = tt.verifySubject
				f.Domains[0].JWKSMinRefresh = config.Duration(tt.floor)
			}})
			subject := e.SubjectToken(t, "alice")
			// The broker's copy: A's JWKS before the rotation.
			if err := e.App.Broker.Domains()[0].Keys.(*token.Verifier).Refresh(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			fetched := fetches.Load()
			newJWKS := e.Sandbox.A.JWKS()
			doc.Store(&newJWKS) // the rotation
			before := e.Sandbox.A.ExchangeCount()
			_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
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
				if ev := e.LastEvent(t); ev.Reason != tt.reason || !strings.Contains(ev.Message, `"`+set.Keys[0].Kid+`"`) {
					t.Errorf("audit event: %s %q, want the kid %q named", ev.Reason, ev.Message, set.Keys[0].Kid)
				}
			}
			if got := e.Sandbox.A.ExchangeCount() - before; got != tt.exchanges {
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
	p := apptest.NewProxy(t, "")
	p.Answer(apptest.Fault{Description: "maintenance until 21:00"})
	e := apptest.Start(t, p.Front(0, nil))
	_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
	code, info := errorInfo(t, err)
	if code != codes.Unavailable || info.Reason != "UPSTREAM_UNAVAILABLE" ||
		info.Metadata["error"] != "temporarily_unavailable" || info.Metadata["error_description"] != "maintenance until 21:00" {
		t.Fatalf("got %v %v", code, info)
	}
	if ev := e.LastEvent(t); ev.UpstreamError != "temporarily_unavailable" || ev.UpstreamErrorDescription != "maintenance until 21:00" {
		t.Errorf("audit event: upstream %q %q", ev.UpstreamError, ev.UpstreamErrorDescription)
	}
	if arrivals := p.Requests(); len(arrivals) != 3 {
		t.Errorf("%d attempts, want 3: an outage is retried", len(arrivals))
	}
}
