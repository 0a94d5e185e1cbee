package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// errorInfo returns a gRPC error's code and ErrorInfo.
func errorInfo(t *testing.T, err error) (codes.Code, *errdetails.ErrorInfo) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got success")
	}
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info
		}
	}
	t.Fatalf("no ErrorInfo in %v", err)
	return 0, nil
}

func storeName(redis bool) string {
	if redis {
		return "redis"
	}
	return "memory"
}

func TestChainSucceeds(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(storeName(redis), func(t *testing.T) {
			e := apptest.StartWith(t, apptest.Options{Redis: redis})

			t.Run("grpc", func(t *testing.T) {
				subject := e.SubjectToken(t, sandbox.Alice)
				resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
				if err != nil {
					t.Fatal(err)
				}
				if c := e.CheckBToken(t, resp.AccessToken); c.Subject != sandbox.AliceSubB {
					t.Errorf("sub = %q, want alice's linked user in B %q", c.Subject, sandbox.AliceSubB)
				}
				if resp.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" || !strings.EqualFold(resp.TokenType, "bearer") || resp.ExpiresIn <= 0 {
					t.Errorf("response = %v", resp)
				}
				if len(resp.Hops) != 2 || resp.Hops[0].Domain != sandbox.DomainAName || resp.Hops[1].Domain != sandbox.DomainBName ||
					resp.Hops[0].AssertionJtiHash == "" || resp.Hops[1].AssertionJtiHash != resp.Hops[0].AssertionJtiHash {
					t.Errorf("hops = %v", resp.Hops)
				}
				ev, err := e.Audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: resp.AuditId})
				if err != nil {
					t.Fatal(err)
				}
				got := ev.Event
				if got.Outcome != pb.Outcome_OUTCOME_SUCCESS || got.Subject != sandbox.AliceSubA || got.Reason != "" ||
					got.SourceDomain != sandbox.DomainAName || got.TargetDomain != sandbox.DomainBName || got.Caller != "anonymous" ||
					got.AssertionIssuer != e.Sandbox.A.Issuer() || len(got.Hops) != 2 || got.AssertionJtiHash != resp.Hops[0].AssertionJtiHash {
					t.Errorf("audit event = %v", got)
				}
				if got.SubjectTokenHash != broker.Hash(subject) {
					t.Errorf("subject_token_hash = %q, want SHA-256 of the token", got.SubjectTokenHash)
				}
				raw, _ := json.Marshal(got)
				if bytes.Contains(raw, []byte(subject)) || bytes.Contains(raw, []byte(resp.AccessToken)) {
					t.Error("audit event contains a raw token")
				}
			})

			t.Run("rest", func(t *testing.T) {
				subject := e.SubjectToken(t, sandbox.Alice)
				status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": "domain-b"})
				if status != http.StatusOK {
					t.Fatalf("status %d: %s", status, body)
				}
				var resp map[string]any
				if err := json.Unmarshal(body, &resp); err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"access_token", "issued_token_type", "token_type", "expires_in", "audit_id", "hops"} {
					if _, ok := resp[k]; !ok {
						t.Errorf("REST response lacks %q (proto field names expected): %s", k, body)
					}
				}
				if _, ok := resp["expires_in"].(float64); !ok {
					t.Errorf("expires_in is not a JSON number: %v", resp["expires_in"])
				}
				access, _ := resp["access_token"].(string)
				if c := e.CheckBToken(t, access); c.Subject != sandbox.AliceSubB {
					t.Errorf("sub = %q, want %q", c.Subject, sandbox.AliceSubB)
				}
				// The audit trail lists it, by subject, over REST.
				status, body = e.Get(t, "/v1/audit/events?subject="+url.QueryEscape(sandbox.AliceSubA)+"&page_size=1")
				if status != http.StatusOK {
					t.Fatalf("list audit: %d %s", status, body)
				}
				var list struct {
					Events []struct {
						ID      string `json:"id"`
						Outcome string `json:"outcome"`
						Subject string `json:"subject"`
					} `json:"events"`
				}
				if err := json.Unmarshal(body, &list); err != nil {
					t.Fatal(err)
				}
				if len(list.Events) != 1 || list.Events[0].ID != resp["audit_id"] || list.Events[0].Outcome != "OUTCOME_SUCCESS" {
					t.Errorf("audit list = %s", body)
				}
				status, body = e.Get(t, "/v1/audit/events/"+url.PathEscape(list.Events[0].ID))
				if status != http.StatusOK || !bytes.Contains(body, []byte(`"subject_token_hash"`)) {
					t.Errorf("get audit event: %d %s", status, body)
				}
			})
		})
	}
}

// Each rule of docs/design.md §2, broken by domain A: the broker refuses the grant
// with its own reason, domain B is never called, and the failure is audited.
func TestAssertionValidationFailures(t *testing.T) {
	// jwks_min_refresh 1s: an unknown kid waits for A's JWKS to be fetched
	// again and is then ASSERTION_KEY_UNKNOWN (with 30s, the JWKS fetched
	// for the subject token moments before may not be refetched yet:
	// SOURCE_KEYS_REFRESHING, TestSourceKeyRotation).
	e := apptest.Start(t, func(f *config.File) { f.Domains[0].JWKSMinRefresh = config.Duration(time.Second) })
	tests := []struct {
		name   string
		m      sandbox.Misbehaviour
		reason string
	}{
		{"wrong issuer", sandbox.Misbehaviour{Issuer: "http://127.0.0.1:1/realms/evil"}, "ASSERTION_ISSUER_UNTRUSTED"},
		{"two audiences", sandbox.Misbehaviour{ExtraAudience: "account"}, "ASSERTION_AUDIENCE_MULTIPLE"},
		{"other audience", sandbox.Misbehaviour{ExtraClaims: map[string]any{"aud": "account"}}, "ASSERTION_AUDIENCE_INVALID"},
		{"expired", sandbox.Misbehaviour{Expired: true}, "ASSERTION_EXPIRED"},
		{"no exp", sandbox.Misbehaviour{OmitExp: true}, "ASSERTION_EXPIRATION_MISSING"},
		{"lifetime above max", sandbox.Misbehaviour{Lifetime: time.Hour}, "ASSERTION_LIFETIME_TOO_LONG"},
		{"nbf in the future", sandbox.Misbehaviour{NotBeforeFuture: true}, "ASSERTION_NOT_YET_VALID"},
		{"iat in the future", sandbox.Misbehaviour{IssuedAtFuture: true}, "ASSERTION_NOT_YET_VALID"},
		{"missing jti", sandbox.Misbehaviour{OmitJTI: true}, "ASSERTION_JTI_MISSING"},
		{"missing sub", sandbox.Misbehaviour{OmitSub: true}, "ASSERTION_SUBJECT_MISSING"},
		{"bad signature", sandbox.Misbehaviour{BadSignature: true}, "ASSERTION_SIGNATURE_INVALID"},
		{"unknown kid", sandbox.Misbehaviour{UnknownKid: true}, "ASSERTION_KEY_UNKNOWN"},
		{"alg HS256", sandbox.Misbehaviour{Alg: "HS256"}, "ASSERTION_ALG_NOT_ALLOWED"},
		{"alg none", sandbox.Misbehaviour{Alg: "none"}, "ASSERTION_ALG_NOT_ALLOWED"},
		{"typ not accepted", sandbox.Misbehaviour{Typ: "secevent+jwt"}, "ASSERTION_TYPE_INVALID"}, // at+jwt is (TestKeycloakGrantTyp)
	}
	subject := e.SubjectToken(t, sandbox.Alice)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.Sandbox.A.SetMisbehaviour(tt.m)
			defer e.Sandbox.A.ResetMisbehaviour()
			bCalls := e.Sandbox.B.JWTBearerCount()
			resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
			if resp != nil {
				t.Fatalf("got a response: %v", resp)
			}
			code, info := errorInfo(t, err)
			if info.Reason != tt.reason || info.Domain != "chainbroker" {
				t.Fatalf("reason = %s/%s, want %s (%v)", info.Domain, info.Reason, tt.reason, err)
			}
			if code != codes.FailedPrecondition {
				t.Errorf("code = %v, want FailedPrecondition", code)
			}
			if got := e.Sandbox.B.JWTBearerCount(); got != bCalls {
				t.Errorf("domain B was called (%d -> %d) with a grant the broker refused", bCalls, got)
			}
			ev := e.LastEvent(t)
			if ev.Outcome != pb.Outcome_OUTCOME_FAILURE || ev.Reason != tt.reason || len(ev.Hops) != 1 {
				t.Errorf("audit event = %v", ev)
			}
		})
	}
	// With A behaving again, the same subject token chains.
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
		t.Fatalf("after the failures: %v", err)
	}
}

// Domain A answering twice with the same grant: the second is refused as a
// replay before domain B sees it.
func TestReplayedAssertion(t *testing.T) {
	for _, redis := range []bool{false, true} {
		t.Run(storeName(redis), func(t *testing.T) {
			for _, m := range []struct {
				name string
				m    sandbox.Misbehaviour
			}{
				{"same assertion", sandbox.Misbehaviour{ReuseAssertion: true}},
				{"same jti", sandbox.Misbehaviour{FixedJTI: "fixed-jti-1"}},
			} {
				t.Run(m.name, func(t *testing.T) {
					e := apptest.StartWith(t, apptest.Options{Redis: redis})
					subject := e.SubjectToken(t, sandbox.Alice)
					e.Sandbox.A.SetMisbehaviour(m.m)
					first, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
					if err != nil {
						t.Fatalf("first chain: %v", err)
					}
					bCalls := e.Sandbox.B.JWTBearerCount()
					_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
					code, info := errorInfo(t, err)
					if info.Reason != "ASSERTION_REPLAYED" || code != codes.PermissionDenied {
						t.Fatalf("second chain: %v %s, want PermissionDenied ASSERTION_REPLAYED", code, info.Reason)
					}
					if got := e.Sandbox.B.JWTBearerCount(); got != bCalls {
						t.Errorf("domain B was called with the replayed grant (%d -> %d)", bCalls, got)
					}
					ev := e.LastEvent(t)
					if ev.Reason != "ASSERTION_REPLAYED" || ev.AssertionJtiHash != first.Hops[0].AssertionJtiHash {
						t.Errorf("audit event = %v", ev)
					}
				})
			}
		})
	}
}

// Domain B refuses (alice not linked): its invalid_grant and description reach
// the caller over both transports.
func TestTargetRefuses(t *testing.T) {
	e := apptest.Start(t, nil)
	e.Sandbox.B.Unlink(sandbox.AliceSubA)
	subject := e.SubjectToken(t, sandbox.Alice)
	_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	code, info := errorInfo(t, err)
	if code != codes.PermissionDenied || info.Reason != "JWT_BEARER_REJECTED" || info.Metadata["hop"] != "jwt_bearer" ||
		info.Metadata["error"] != "invalid_grant" || info.Metadata["error_description"] != "User not found" {
		t.Errorf("got %v %v", code, info)
	}
	ev := e.LastEvent(t)
	if ev.Reason != "JWT_BEARER_REJECTED" || ev.UpstreamError != "invalid_grant" || ev.UpstreamErrorDescription != "User not found" || len(ev.Hops) != 2 {
		t.Errorf("audit event = %v", ev)
	}

	status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": "domain-b"})
	if status != http.StatusForbidden || !bytes.Contains(body, []byte(`"User not found"`)) || !bytes.Contains(body, []byte(`"JWT_BEARER_REJECTED"`)) {
		t.Errorf("REST: %d %s", status, body)
	}
	// bob is still linked.
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Bob), TargetDomain: "domain-b"}); err != nil {
		t.Errorf("bob: %v", err)
	}
}

func TestUpstreamUnavailable(t *testing.T) {
	deadURL := "http://" + testutil.FreeAddr(t) + "/token"

	t.Run("domain A unreachable", func(t *testing.T) {
		e := apptest.Start(t, func(f *config.File) { f.Domains[0].TokenEndpoint = deadURL })
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
		code, info := errorInfo(t, err)
		if code != codes.Unavailable || info.Reason != "UPSTREAM_UNAVAILABLE" || info.Metadata["hop"] != "token_exchange" {
			t.Errorf("got %v %v", code, info)
		}
		if ev := e.LastEvent(t); ev.Reason != "UPSTREAM_UNAVAILABLE" {
			t.Errorf("audit event = %v", ev)
		}
	})
	t.Run("domain A slow past the deadline", func(t *testing.T) {
		e := apptest.Start(t, func(f *config.File) { f.Domains[0].Timeout = config.Duration(300 * time.Millisecond) })
		e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Delay: 10 * time.Second})
		start := time.Now()
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
		code, info := errorInfo(t, err)
		if code != codes.Unavailable || info.Reason != "UPSTREAM_UNAVAILABLE" {
			t.Errorf("got %v %v", code, info)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the domain timeout was not honoured: %v", d)
		}
	})
	t.Run("domain B answers 503", func(t *testing.T) {
		e := apptest.Start(t, nil)
		e.Sandbox.B.SetMisbehaviour(sandbox.Misbehaviour{Status: 503})
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
		code, info := errorInfo(t, err)
		if code != codes.Unavailable || info.Reason != "UPSTREAM_UNAVAILABLE" || info.Metadata["hop"] != "jwt_bearer" {
			t.Errorf("got %v %v", code, info)
		}
	})
	t.Run("domain A answers garbage", func(t *testing.T) {
		e := apptest.Start(t, nil)
		e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Body: "<html>oops</html>"})
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
		if _, info := errorInfo(t, err); info.Reason != "UPSTREAM_BAD_RESPONSE" {
			t.Errorf("got %v", info)
		}
	})
	t.Run("domain A refuses the exchange", func(t *testing.T) {
		e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) { // the policy lets it through; domain A refuses it
			f.Policy[0].Chains[0].Audiences = []string{"https://not-allowed.example"}
		}})
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b",
			Audience: "https://not-allowed.example"})
		code, info := errorInfo(t, err)
		if info.Reason != "TOKEN_EXCHANGE_REJECTED" || info.Metadata["hop"] != "token_exchange" || info.Metadata["error"] == "" || code == codes.OK {
			t.Errorf("got %v %v", code, info)
		}
	})
}

// With Redis stopped, chains fail closed: UNAVAILABLE, no token, and domain B
// is never called; with Redis back, chains work again without a restart.
func TestRedisStoppedMidTest(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Redis: true, Mutate: func(f *config.File) {
		f.Listen.ReadinessInterval = config.Duration(100 * time.Millisecond)
	}})
	subject := e.SubjectToken(t, sandbox.Alice)
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
		t.Fatal(err)
	}
	e.Redis.Stop()
	bCalls := e.Sandbox.B.JWTBearerCount()
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	if resp != nil {
		t.Fatalf("a token was returned with Redis down: %v", resp)
	}
	code, info := errorInfo(t, err)
	if code != codes.Unavailable || info.Reason != "STORE_UNAVAILABLE" {
		t.Errorf("got %v %v", code, info)
	}
	if got := e.Sandbox.B.JWTBearerCount(); got != bCalls {
		t.Errorf("domain B was called while the replay store was down")
	}
	e.WaitHealth(t, healthpb.HealthCheckResponse_NOT_SERVING) // /readyz answers the same watcher's last result
	if ready, body := e.Get(t, "/readyz"); ready != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("store")) {
		t.Errorf("/readyz = %d %s with Redis down, want 503 naming the store", ready, body)
	}
	if _, err := e.Audit.ListAuditEvents(ctxT(t), &pb.ListAuditEventsRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("ListAuditEvents with Redis down: %v", err)
	}

	e.Redis.Restart()
	// go-redis re-dials in the background after failed dials (about once a
	// second): the broker recovers by itself within a bounded time.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("after Redis restarted: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := e.Audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: resp.AuditId}); err != nil {
		t.Errorf("audit event of the chain after restart: %v", err)
	}
	// /readyz answers the readiness watcher's last result: wait for it.
	testutil.WaitFor(t, 10*time.Second, "/readyz 200 after Redis restarted", func() bool {
		status, _ := e.Get(t, "/readyz")
		return status == http.StatusOK
	})
	e.WaitHealth(t, healthpb.HealthCheckResponse_SERVING)
}

func TestBadInput(t *testing.T) {
	e := apptest.Start(t, nil)
	subject := e.SubjectToken(t, sandbox.Alice)
	tests := []struct {
		name   string
		req    *pb.ChainRequest
		reason string
		field  string
	}{
		{"missing subject token", &pb.ChainRequest{TargetDomain: "domain-b"}, "REQUEST_INVALID", "subject_token"},
		{"missing target", &pb.ChainRequest{SubjectToken: subject}, "REQUEST_INVALID", "target_domain"},
		{"unknown target", &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-z"}, "DOMAIN_UNKNOWN", "target_domain"},
		{"unknown source", &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", SourceDomain: "nowhere"}, "DOMAIN_UNKNOWN", "source_domain"},
		{"opaque token, no source", &pb.ChainRequest{SubjectToken: "opaque-token", TargetDomain: "domain-b"}, "SOURCE_UNDETERMINED", "source_domain"},
		{"oversized subject token", &pb.ChainRequest{SubjectToken: strings.Repeat("a", 17<<10), TargetDomain: "domain-b"}, "REQUEST_INVALID", "subject_token"},
		{"bad scope", &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: []string{"two words"}}, "REQUEST_INVALID", "scope"},
		{"too many scopes", &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: strings.Fields(strings.Repeat("s ", 33))}, "REQUEST_INVALID", "scope"},
		{"relative resource", &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Resource: []string{"/api"}}, "REQUEST_INVALID", "resource"},
		{"actor token without type", &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", ActorToken: "x"}, "REQUEST_INVALID", "actor_token_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aCalls := e.Sandbox.A.ExchangeCount()
			_, err := e.Chain.Chain(ctxT(t), tt.req)
			code, info := errorInfo(t, err)
			if code != codes.InvalidArgument || info.Reason != tt.reason || info.Metadata["field"] != tt.field {
				t.Errorf("got %v %s field=%q, want InvalidArgument %s field=%q", code, info.Reason, info.Metadata["field"], tt.reason, tt.field)
			}
			if !strings.Contains(status.Convert(err).Message(), tt.field) {
				t.Errorf("message %q does not name the field", status.Convert(err).Message())
			}
			if e.Sandbox.A.ExchangeCount() != aCalls {
				t.Error("domain A was called for an invalid request")
			}
			if ev := e.LastEvent(t); ev.Reason != tt.reason {
				t.Errorf("audit event reason = %q, want %q", ev.Reason, tt.reason)
			}
		})
	}
	t.Run("rest 400 names the field", func(t *testing.T) {
		status, body := e.Post(t, "/v1/chain", map[string]any{"target_domain": "domain-b"})
		if status != http.StatusBadRequest || !bytes.Contains(body, []byte("subject_token")) || !bytes.Contains(body, []byte("REQUEST_INVALID")) {
			t.Errorf("%d %s", status, body)
		}
	})
	t.Run("rest body too large", func(t *testing.T) {
		status, _ := e.Post(t, "/v1/chain", map[string]any{"subject_token": strings.Repeat("a", 100<<10), "target_domain": "domain-b"})
		if status < 400 || status >= 500 {
			t.Errorf("status %d for a 100 KiB body, want 4xx", status)
		}
	})
	t.Run("rest unknown field", func(t *testing.T) {
		status, _ := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": "domain-b", "bogus": 1})
		if status != http.StatusBadRequest {
			t.Errorf("status %d for an unknown field, want 400", status)
		}
	})
	t.Run("audit bad page token", func(t *testing.T) {
		_, err := e.Audit.ListAuditEvents(ctxT(t), &pb.ListAuditEventsRequest{PageToken: "not-a-token"})
		if code := status.Code(err); code != codes.InvalidArgument {
			t.Errorf("code %v", code)
		}
		_, err = e.Audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: "1-0"})
		if code := status.Code(err); code != codes.NotFound {
			t.Errorf("unknown id: code %v", code)
		}
	})
}

func TestServiceSurface(t *testing.T) {
	e := apptest.Start(t, nil)
	h, err := e.Health.Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", h, err)
	}
	d, err := e.Chain.ListDomains(ctxT(t), &pb.ListDomainsRequest{})
	if err != nil || len(d.Domains) != 3 || len(d.Chains) != 2 || d.Chains[0].Audience != e.Sandbox.B.Issuer() {
		t.Fatalf("ListDomains = %v, %v", d, err)
	}
	status, body := e.Get(t, "/v1/domains")
	if status != 200 || !bytes.Contains(body, []byte(`"token_endpoint"`)) || bytes.Contains(body, []byte(sandbox.BrokerSecretA)) {
		t.Errorf("GET /v1/domains: %d %s", status, body)
	}
	if status, _ := e.Get(t, "/readyz"); status != 200 {
		t.Errorf("/readyz = %d", status)
	}
	if status, _ := e.Get(t, "/healthz"); status != 200 {
		t.Errorf("/healthz = %d", status)
	}
}

// Paging through the audit trail over REST returns each event once.
func TestAuditPaging(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Redis: true})
	subject := e.SubjectToken(t, sandbox.Bob)
	want := map[string]bool{}
	for range 5 {
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		if err != nil {
			t.Fatal(err)
		}
		want[resp.AuditId] = true
	}
	seen := map[string]bool{}
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		resp, err := e.Audit.ListAuditEvents(ctxT(t), &pb.ListAuditEventsRequest{Subject: sandbox.BobSubA, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			if seen[ev.Id] {
				t.Errorf("event %s listed twice", ev.Id)
			}
			seen[ev.Id] = true
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	if len(seen) != len(want) {
		t.Errorf("listed %d events, want %d", len(seen), len(want))
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("event %s not listed", id)
		}
	}
}

// A long non-ASCII error description from a domain is passed on cut at a
// character boundary: the error keeps its details and the audit trail stays
// listable (found by FuzzCheckClaims).
func TestLongUnicodeUpstreamDescription(t *testing.T) {
	e := apptest.Start(t, nil)
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Status: 400, Error: "invalid_grant", ErrorDescription: "x" + strings.Repeat("é", 80)})
	_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"})
	if _, info := errorInfo(t, err); info.Reason != "TOKEN_EXCHANGE_REJECTED" {
		t.Fatalf("reason %q", info.Reason)
	}
	if status, body := e.Get(t, "/v1/audit/events?page_size=1"); status != 200 || !bytes.Contains(body, []byte("éé")) {
		t.Errorf("audit listing: %d %.200s", status, body)
	}
}
