package interop

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// TestChainSuccess chains alice from domain A into Hydra with each of the
// two Hydra clients (opaque and JWT access tokens) over gRPC and REST, and
// checks that what the caller gets is Hydra's token response: a token Hydra
// itself recognises (introspection), Hydra's expires_in, token_type and
// scope, and both hops.
func TestChainSuccess(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	for _, tc := range []struct {
		name   string
		client hydraClient
		format func(t *testing.T, w *world, c hydraClient, access string, expiresIn int64)
	}{
		{"opaque access token", w.opaque, checkOpaque},
		{"JWT access token", w.jwt, checkJWT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := w.startBroker(t, w.config(tc.client))
			t.Run("gRPC", func(t *testing.T) {
				resp, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{
					SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainHydra,
				})
				if err != nil {
					t.Fatalf("Chain: %v", err)
				}
				res := fromProto(resp)
				w.checkSuccess(t, b, tc.client, res)
				tc.format(t, w, tc.client, res.AccessToken, res.ExpiresIn)
			})
			t.Run("REST", func(t *testing.T) {
				status, body := b.chainREST(t, map[string]any{
					"subject_token": apptest.SubjectToken(t, w.sb, sandbox.Alice), "target_domain": domainHydra,
				})
				if status != http.StatusOK {
					t.Fatalf("POST /v1/chain: HTTP %d: %s", status, body)
				}
				var res chainResult // expires_in must be a JSON number to decode
				if err := json.Unmarshal(body, &res); err != nil {
					t.Fatalf("POST /v1/chain: %v: %s", err, body)
				}
				w.checkSuccess(t, b, tc.client, res)
				tc.format(t, w, tc.client, res.AccessToken, res.ExpiresIn)
			})
		})
	}
}

// chainResult is a successful Chain answer, from gRPC or REST.
type chainResult struct {
	AccessToken     string      `json:"access_token"`
	IssuedTokenType string      `json:"issued_token_type"`
	TokenType       string      `json:"token_type"`
	ExpiresIn       int64       `json:"expires_in"`
	Scope           string      `json:"scope"`
	AuditID         string      `json:"audit_id"`
	Hops            []hopResult `json:"hops"`
}

// hopResult is one hop of a Chain answer.
type hopResult struct {
	Domain           string `json:"domain"`
	Endpoint         string `json:"endpoint"`
	GrantType        string `json:"grant_type"`
	AssertionJTIHash string `json:"assertion_jti_hash"`
}

func fromProto(r *pb.ChainResponse) chainResult {
	var res chainResult
	res.AccessToken, res.IssuedTokenType, res.TokenType = r.GetAccessToken(), r.GetIssuedTokenType(), r.GetTokenType()
	res.ExpiresIn, res.Scope, res.AuditID = int64(r.GetExpiresIn()), r.GetScope(), r.GetAuditId()
	for _, h := range r.GetHops() {
		res.Hops = append(res.Hops, hopResult{h.GetDomain(), h.GetEndpoint(), h.GetGrantType(), h.GetAssertionJtiHash()})
	}
	return res
}

// checkSuccess checks what does not depend on the token format.
func (w *world) checkSuccess(t *testing.T, b *brokerProc, c hydraClient, res chainResult) {
	t.Helper()
	if !strings.EqualFold(res.TokenType, "bearer") {
		t.Errorf("token_type = %q, want Hydra's bearer", res.TokenType)
	}
	if res.IssuedTokenType != tokenTypeAccess {
		t.Errorf("issued_token_type = %q, want %s", res.IssuedTokenType, tokenTypeAccess)
	}
	if res.Scope != defaultChainScope {
		t.Errorf("scope = %q, want %q (the chain's default scopes, as granted by Hydra)", res.Scope, defaultChainScope)
	}
	// Hydra computes expires_in from ttl.access_token when it answers.
	ttl := int64(HydraAccessTokenTTL / time.Second)
	if res.ExpiresIn < ttl-10 || res.ExpiresIn > ttl {
		t.Errorf("expires_in = %d, want Hydra's %d (ttl.access_token)", res.ExpiresIn, ttl)
	}
	if len(res.Hops) != 2 {
		t.Fatalf("hops = %+v, want token exchange at A then jwt-bearer at Hydra", res.Hops)
	}
	h1, h2 := res.Hops[0], res.Hops[1]
	if h1.Domain != domainA || h1.Endpoint != w.sb.A.TokenEndpoint() || h1.GrantType != grantTypeExchange {
		t.Errorf("hop 1 = %+v", h1)
	}
	if h2.Domain != domainHydra || h2.Endpoint != w.hydra.tokenEndpoint || h2.GrantType != GrantTypeJWTBearer {
		t.Errorf("hop 2 = %+v, want %s at %s", h2, GrantTypeJWTBearer, w.hydra.tokenEndpoint)
	}
	if h1.AssertionJTIHash == "" || h2.AssertionJTIHash != h1.AssertionJTIHash {
		t.Errorf("assertion jti hashes %q, %q: want the same, not empty", h1.AssertionJTIHash, h2.AssertionJTIHash)
	}

	ev, err := b.audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: res.AuditID})
	if err != nil {
		t.Fatalf("GetAuditEvent(%q): %v", res.AuditID, err)
	}
	e := ev.GetEvent()
	if e.GetOutcome() != pb.Outcome_OUTCOME_SUCCESS || e.GetTargetDomain() != domainHydra || e.GetSubject() != sandbox.AliceSubA ||
		!slices.Equal(e.GetAssertionAudience(), []string{w.hydra.tokenEndpoint}) {
		t.Errorf("audit event = %v", e)
	}

	// Hydra itself recognises the token, issued to the broker's client for
	// alice's subject in domain A (Hydra has no user store: sub is the assertion's).
	in := w.hydra.introspect(t, res.AccessToken)
	if !in.Active || in.Subject != sandbox.AliceSubA || in.ClientID != c.ID || in.Scope != defaultChainScope {
		t.Errorf("Hydra's introspection = %+v, want active, sub %s, client_id %s, scope %q", in, sandbox.AliceSubA, c.ID, defaultChainScope)
	}
	if left := time.Until(time.Unix(in.Expiry, 0)); absDuration(left-time.Duration(res.ExpiresIn)*time.Second) > 5*time.Second {
		t.Errorf("Hydra says the token expires in %s, the broker said expires_in %d", left.Round(time.Second), res.ExpiresIn)
	}
}

// checkOpaque: the token is Hydra's opaque format, not a JWT; the broker
// passed it through without trying to read it.
func checkOpaque(t *testing.T, _ *world, _ hydraClient, access string, _ int64) {
	t.Helper()
	if !strings.HasPrefix(access, "ory_at_") {
		t.Errorf("access token %.12q... is not Hydra's opaque format ory_at_...", access)
	}
	if _, err := token.ParseUnverified(access); err == nil {
		t.Errorf("the opaque access token parses as a JWT")
	}
}

// checkJWT: the token is a JWT signed by Hydra's key, for alice's subject
// and the broker's client, whose lifetime is Hydra's ttl.access_token.
func checkJWT(t *testing.T, w *world, c hydraClient, access string, expiresIn int64) {
	t.Helper()
	tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: w.hydra.jwksURI}, nil).Verify(ctxT(t), access)
	if err != nil {
		t.Fatalf("the access token does not verify with Hydra's JWKS (%s): %v", w.hydra.jwksURI, err)
	}
	cl := tok.Claims
	if cl.Issuer != w.hydra.issuer || cl.Subject != sandbox.AliceSubA || cl.ClientID != c.ID {
		t.Errorf("claims iss %q sub %q client_id %q, want %q %q %q", cl.Issuer, cl.Subject, cl.ClientID, w.hydra.issuer, sandbox.AliceSubA, c.ID)
	}
	// Hydra sets exp (rounded to the second) when it accepts the grant and
	// iat (truncated) when it signs: about ttl apart, not exactly.
	if life := cl.Expiry.Sub(cl.IssuedAt); absDuration(life-HydraAccessTokenTTL) > 10*time.Second {
		t.Errorf("exp - iat = %s, want Hydra's ttl.access_token %s", life, HydraAccessTokenTTL)
	}
	if d := time.Until(cl.Expiry) - time.Duration(expiresIn)*time.Second; absDuration(d) > 5*time.Second {
		t.Errorf("exp is %s away, expires_in says %d s", time.Until(cl.Expiry).Round(time.Second), expiresIn)
	}
}

// TestAssertionAudience proves the target's assertion audience settings
// (chains[].audience, what the broker asks domain A for; domains[].assertion.
// audience, what the broker accepts before calling the target) against
// Hydra's rule: aud must contain Hydra's token endpoint URL; its issuer, or
// any other value, is refused.
func TestAssertionAudience(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const custom = "urn:chainbroker:interop:hydra"
	w.sb.A.AllowAudience(w.hydra.issuer)
	w.sb.A.AllowAudience(custom)
	tokenURL, issuer := w.hydra.tokenEndpoint, w.hydra.issuer
	// fosite (Hydra's OAuth library) writes its hints with ' for ".
	audienceHint := `claim containing a value '` + tokenURL + `' that identifies the authorization server`
	for _, tc := range []struct {
		name     string
		defaults bool     // leave both settings out of the configuration
		aud      string   // chains[].audience: the aud domain A puts in the grant
		policy   []string // domains[hydra].assertion.audience
		extra    string   // a second aud added by domain A
		want     *want    // nil: success
	}{
		{name: "token endpoint", aud: tokenURL, policy: []string{tokenURL}},
		{
			// Both settings default to the target's issuer, Keycloak's
			// convention: right for Keycloak, wrong for Hydra.
			name: "broker defaults: the issuer, refused by Hydra", defaults: true, aud: issuer,
			want: &want{code: codes.PermissionDenied, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer",
				upstream: "invalid_grant", desc: audienceHint, hops: 2},
		},
		{
			name: "issuer, accepted by the policy, refused by Hydra", aud: issuer, policy: []string{issuer},
			want: &want{code: codes.PermissionDenied, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer",
				upstream: "invalid_grant", desc: audienceHint, hops: 2},
		},
		{
			name: "issuer, refused by the policy before Hydra", aud: issuer, policy: []string{tokenURL},
			want: &want{code: codes.FailedPrecondition, reason: "ASSERTION_AUDIENCE_INVALID", hop: "token_exchange", hops: 1},
		},
		{
			name: "custom value, accepted by the policy, refused by Hydra", aud: custom, policy: []string{custom},
			want: &want{code: codes.PermissionDenied, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer",
				upstream: "invalid_grant", desc: audienceHint, hops: 2},
		},
		{
			// Hydra would accept it (TestHydraBehaviour); the broker keeps
			// Keycloak's single-audience rule.
			name: "token endpoint and a second value", aud: tokenURL, policy: []string{tokenURL}, extra: "https://other.example",
			want: &want{code: codes.FailedPrecondition, reason: "ASSERTION_AUDIENCE_MULTIPLE", hop: "token_exchange", hops: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := w.config(w.opaque)
			cfg.Chains[0].Audience = tc.aud
			hydraDomain(t, cfg).Assertion.Audience = tc.policy
			if tc.defaults {
				cfg.Chains[0].Audience = ""
				hydraDomain(t, cfg).Assertion.Audience = nil
			}
			b := w.startBroker(t, cfg)
			w.sb.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraAudience: tc.extra})
			t.Cleanup(w.sb.A.ResetMisbehaviour)

			resp, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{
				SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainHydra,
			})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Chain: %v", err)
				}
				w.checkSuccess(t, b, w.opaque, fromProto(resp))
				return
			}
			checkGRPCError(t, err, *tc.want)
			checkAudit(t, b, *tc.want)
			if ev := b.lastEvent(t); !slices.Equal(ev.GetAssertionAudience(), append([]string{tc.aud}, strings.Fields(tc.extra)...)) {
				t.Errorf("audit assertion_audience = %q, want %q (+ %q)", ev.GetAssertionAudience(), tc.aud, tc.extra)
			}
		})
	}
}

// TestReplay presents one assertion again: to the same broker, whose replay
// guard refuses it before Hydra sees it; and to other brokers with their own
// memory stores (replicas without a shared Redis), which send it: Hydra's
// non-standard jti_known answer becomes ASSERTION_REPLAYED.
func TestReplay(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	b1 := w.startBroker(t, w.config(w.opaque))
	b2 := w.startBroker(t, w.config(w.opaque))
	b3 := w.startBroker(t, w.config(w.opaque))
	// Domain A issues one assertion, then answers every exchange with it.
	w.sb.A.SetMisbehaviour(sandbox.Misbehaviour{ReuseAssertion: true})
	t.Cleanup(w.sb.A.ResetMisbehaviour)
	req := &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainHydra}

	first, err := b1.chain.Chain(ctxT(t), req)
	if err != nil {
		t.Fatalf("first chain: %v", err)
	}
	jtiHash := first.GetHops()[0].GetAssertionJtiHash()

	t.Run("same broker: its replay guard", func(t *testing.T) {
		_, err := b1.chain.Chain(ctxT(t), req)
		wnt := want{code: codes.PermissionDenied, reason: "ASSERTION_REPLAYED", hop: "token_exchange", hops: 1}
		checkGRPCError(t, err, wnt)
		checkAudit(t, b1, wnt)
		if got := b1.lastEvent(t).GetAssertionJtiHash(); got != jtiHash {
			t.Errorf("audit assertion_jti_hash = %q, want the first chain's %q", got, jtiHash)
		}
	})
	// Each other broker can be fooled once: it marks the jti before hop 2.
	wnt := want{code: codes.PermissionDenied, reason: "ASSERTION_REPLAYED", hop: "jwt_bearer",
		upstream: "jti_known", desc: "The jti was already used.", hops: 2}
	t.Run("another broker over gRPC: Hydra's jti_known", func(t *testing.T) {
		_, err := b2.chain.Chain(ctxT(t), req)
		checkGRPCError(t, err, wnt)
		checkAudit(t, b2, wnt)
	})
	t.Run("a third broker over REST: Hydra's jti_known", func(t *testing.T) {
		status, body := b3.chainREST(t, map[string]any{"subject_token": req.GetSubjectToken(), "target_domain": domainHydra})
		checkRESTError(t, status, body, wnt)
		checkAudit(t, b3, wnt)
	})
}

// TestRefusals are chains Hydra (or, first, the broker) refuses; Hydra's
// OAuth error and error_description reach the caller in ErrorInfo.
func TestRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// domain-x: an issuer Hydra has no trust relationship for.
	untrusted := apptest.StartSandbox(t, sandbox.Options{})
	untrusted.A.AllowAudience(w.hydra.tokenEndpoint)
	// domain-p: trusted for bob's subject only (no allow_any_subject).
	pinned := apptest.StartSandbox(t, sandbox.Options{})
	w.trustSource(t, pinned, sandbox.BobSubA)

	strict := w.config(w.opaque)
	strict.Domains = append(strict.Domains, sourceDomain("domain-x", untrusted), sourceDomain("domain-p", pinned))
	w.allow(strict, "domain-x")
	w.allow(strict, "domain-p")
	// lenient tolerates 2 minutes of clock skew: an assertion that expired a
	// minute ago passes the broker, and Hydra (no skew) refuses it.
	lenient := w.config(w.opaque)
	hydraDomain(t, lenient).Assertion.ClockSkew = config.Duration(2 * time.Minute)
	brokers := map[string]*brokerProc{"strict": w.startBroker(t, strict), "lenient": w.startBroker(t, lenient)}

	bad := func(desc string) *want {
		return &want{code: codes.PermissionDenied, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", upstream: "invalid_grant", desc: desc, hops: 2}
	}
	for _, tc := range []struct {
		name   string
		broker string
		sb     *sandbox.Sandbox
		source string
		user   string
		scope  []string
		misb   sandbox.Misbehaviour
		want   *want // nil: success
	}{
		{
			name: "expired, caught by the broker", broker: "strict", sb: w.sb, source: domainA, user: sandbox.Alice,
			misb: sandbox.Misbehaviour{Expired: true},
			want: &want{code: codes.FailedPrecondition, reason: "ASSERTION_EXPIRED", hop: "token_exchange", hops: 1},
		},
		{
			name: "expired, let through by clock skew, refused by Hydra", broker: "lenient", sb: w.sb, source: domainA, user: sandbox.Alice,
			misb: sandbox.Misbehaviour{Expired: true},
			want: bad(`The JWT in 'assertion' request parameter expired.`),
		},
		{
			name: "issuer Hydra does not trust", broker: "strict", sb: untrusted, source: "domain-x", user: sandbox.Alice,
			want: bad(`No public JWK was registered for issuer '` + untrusted.A.Issuer() + `'`),
		},
		{
			name: "subject Hydra does not trust for this issuer", broker: "strict", sb: pinned, source: "domain-p", user: sandbox.Alice,
			want: bad(`No public JWK was registered for issuer '` + pinned.A.Issuer() + `' and subject '` + sandbox.AliceSubA + `'`),
		},
		{name: "subject Hydra trusts for this issuer", broker: "strict", sb: pinned, source: "domain-p", user: sandbox.Bob},
		{
			name: "scope beyond the trust relationship", broker: "strict", sb: w.sb, source: domainA, user: sandbox.Alice,
			scope: []string{"profile", "address"},
			want: &want{code: codes.InvalidArgument, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", upstream: "invalid_scope",
				desc: `is not allowed to request scope 'address'`, hops: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := brokers[tc.broker]
			tc.sb.A.SetMisbehaviour(tc.misb)
			t.Cleanup(tc.sb.A.ResetMisbehaviour)
			subject := apptest.SubjectToken(t, tc.sb, tc.user)

			resp, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{
				SubjectToken: subject, SourceDomain: tc.source, TargetDomain: domainHydra, Scope: tc.scope,
			})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Chain: %v", err)
				}
				if in := w.hydra.introspect(t, resp.GetAccessToken()); !in.Active || in.Subject != sandbox.BobSubA {
					t.Errorf("Hydra's introspection = %+v, want active for %s", in, sandbox.BobSubA)
				}
				return
			}
			checkGRPCError(t, err, *tc.want)
			checkAudit(t, b, *tc.want)
			status, body := b.chainREST(t, map[string]any{
				"subject_token": subject, "source_domain": tc.source, "target_domain": domainHydra, "scope": tc.scope,
			})
			checkRESTError(t, status, body, *tc.want)
		})
	}
}

// TestHydraDown stops Hydra under a running broker: chains fail UNAVAILABLE,
// as UPSTREAM_UNAVAILABLE, or UPSTREAM_CIRCUIT_OPEN once the broker's circuit
// breaker for the domain (where there is one) has opened after repeated
// failures.
func TestHydraDown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	b := w.startBroker(t, w.config(w.opaque))
	req := &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainHydra}
	if _, err := b.chain.Chain(ctxT(t), req); err != nil {
		t.Fatalf("Chain with Hydra up: %v", err)
	}
	w.hydra.stop(t)
	down := []string{"UPSTREAM_UNAVAILABLE", "UPSTREAM_CIRCUIT_OPEN"}

	_, err := b.chain.Chain(ctxT(t), req)
	code, info := statusInfo(t, err)
	if code != codes.Unavailable || !slices.Contains(down, info.GetReason()) || info.GetMetadata()["hop"] != "jwt_bearer" {
		t.Errorf("code %s reason %s hop %q, want UNAVAILABLE, one of %q, jwt_bearer", code, info.GetReason(), info.GetMetadata()["hop"], down)
	}
	ev := b.lastEvent(t)
	hops := ev.GetHops()
	if ev.GetOutcome() != pb.Outcome_OUTCOME_FAILURE || ev.GetReason() != info.GetReason() ||
		len(hops) < 2 || hops[len(hops)-1].GetDomain() != domainHydra {
		t.Errorf("audit event = %v, want a failure with %s after an attempt at %s", ev, info.GetReason(), domainHydra)
	}

	status, body := b.chainREST(t, map[string]any{"subject_token": req.GetSubjectToken(), "target_domain": domainHydra})
	st := restStatus(t, body)
	if status != http.StatusServiceUnavailable || st.Code != codes.Unavailable || !slices.Contains(down, st.Details[0].Reason) {
		t.Errorf("REST: HTTP %d %s, want 503 UNAVAILABLE with one of %q", status, body, down)
	}
}

// TestHydraBehaviour records, without the broker, the Hydra behaviour that
// docs/interop.md's comparison with Keycloak states, so that a Hydra upgrade
// that changes it fails here first.
func TestHydraBehaviour(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sb.A.AllowAudience(w.hydra.issuer)

	t.Run("several audiences, one of them the token endpoint: accepted; no refresh token", func(t *testing.T) {
		w.sb.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraAudience: "https://other.example"})
		t.Cleanup(w.sb.A.ResetMisbehaviour)
		status, body := w.hydra.jwtBearer(t, w.opaque, assertionFromA(t, w.sb, sandbox.Alice, w.hydra.tokenEndpoint), "profile")
		if status != http.StatusOK {
			t.Fatalf("HTTP %d: %v", status, body)
		}
		if _, ok := body["refresh_token"]; ok {
			t.Errorf("Hydra issued a refresh token for the jwt-bearer grant: %v", keys(body))
		}
		if exp, ok := body["expires_in"].(float64); !ok || int64(exp) > int64(HydraAccessTokenTTL/time.Second) {
			t.Errorf("expires_in = %v, want a number up to %d", body["expires_in"], int64(HydraAccessTokenTTL/time.Second))
		}
	})
	t.Run("aud = issuer: invalid_grant", func(t *testing.T) {
		status, body := w.hydra.jwtBearer(t, w.opaque, assertionFromA(t, w.sb, sandbox.Alice, w.hydra.issuer), "")
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("HTTP %d %v, want 400 invalid_grant", status, body)
		}
	})
	t.Run("same assertion twice: jti_known", func(t *testing.T) {
		a := assertionFromA(t, w.sb, sandbox.Alice, w.hydra.tokenEndpoint)
		if status, body := w.hydra.jwtBearer(t, w.opaque, a, ""); status != http.StatusOK {
			t.Fatalf("first presentation: HTTP %d %v", status, body)
		}
		status, body := w.hydra.jwtBearer(t, w.opaque, a, "")
		if status != http.StatusBadRequest || body["error"] != "jti_known" || body["error_description"] != "The jti was already used." {
			t.Errorf("HTTP %d %v, want 400 jti_known", status, body)
		}
	})
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// want is an expected refusal.
type want struct {
	code     codes.Code
	reason   string
	hop      string // ErrorInfo metadata "hop"
	upstream string // metadata "error" (the authorization server's); "" means none
	desc     string // a substring of metadata "error_description"
	hops     int    // hops in the audit event: 1 means Hydra was not called
}

// statusInfo returns a gRPC error's code and ErrorInfo.
func statusInfo(t *testing.T, err error) (codes.Code, *errdetails.ErrorInfo) {
	t.Helper()
	if err == nil {
		t.Fatal("Chain succeeded, want an error")
	}
	st := status.Convert(err)
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), i
		}
	}
	t.Fatalf("no ErrorInfo in %v", err)
	return 0, nil
}

// checkGRPCError checks a gRPC status and its ErrorInfo.
func checkGRPCError(t *testing.T, err error, w want) {
	t.Helper()
	code, info := statusInfo(t, err)
	checkInfo(t, code, info.GetReason(), info.GetDomain(), info.GetMetadata(), w)
	if t.Failed() {
		t.Logf("status: %v", err)
	}
}

// restError is the gateway's JSON form of a gRPC status.
type restError struct {
	Code    codes.Code `json:"code"`
	Message string     `json:"message"`
	Details []struct {
		Type     string            `json:"@type"`
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata"`
	} `json:"details"`
}

// restStatus decodes a REST error body, which must carry an ErrorInfo.
func restStatus(t *testing.T, body []byte) restError {
	t.Helper()
	var st restError
	if err := json.Unmarshal(body, &st); err != nil || len(st.Details) == 0 {
		t.Fatalf("REST error body %s: %v", body, err)
	}
	if d := st.Details[0]; d.Type != "type.googleapis.com/google.rpc.ErrorInfo" {
		t.Errorf("details[0] @type = %q", d.Type)
	}
	return st
}

// checkRESTError checks the gateway's JSON status body and HTTP status.
func checkRESTError(t *testing.T, httpStatus int, body []byte, w want) {
	t.Helper()
	if want := runtime.HTTPStatusFromCode(w.code); httpStatus != want {
		t.Errorf("HTTP %d, want %d: %s", httpStatus, want, body)
	}
	st := restStatus(t, body)
	d := st.Details[0]
	checkInfo(t, st.Code, d.Reason, d.Domain, d.Metadata, w)
}

func checkInfo(t *testing.T, code codes.Code, reason, domain string, meta map[string]string, w want) {
	t.Helper()
	if code != w.code || reason != w.reason || domain != "chainbroker" {
		t.Errorf("code %s reason %s domain %s, want %s %s chainbroker", code, reason, domain, w.code, w.reason)
	}
	if meta["hop"] != w.hop {
		t.Errorf("metadata hop = %q, want %q", meta["hop"], w.hop)
	}
	if meta["error"] != w.upstream {
		t.Errorf("metadata error = %q, want %q", meta["error"], w.upstream)
	}
	if w.upstream == "" && meta["error_description"] != "" {
		t.Errorf("metadata error_description = %q, want none", meta["error_description"])
	}
	if !strings.Contains(meta["error_description"], w.desc) {
		t.Errorf("metadata error_description = %q, want it to contain %q", meta["error_description"], w.desc)
	}
}

// checkAudit checks the newest audit event against a refusal.
func checkAudit(t *testing.T, b *brokerProc, w want) {
	t.Helper()
	ev := b.lastEvent(t)
	if ev.GetOutcome() != pb.Outcome_OUTCOME_FAILURE || ev.GetReason() != w.reason || ev.GetUpstreamError() != w.upstream {
		t.Errorf("audit event outcome %s reason %s upstream_error %q, want FAILURE %s %q",
			ev.GetOutcome(), ev.GetReason(), ev.GetUpstreamError(), w.reason, w.upstream)
	}
	if len(ev.GetHops()) != w.hops {
		t.Errorf("audit event has %d hops, want %d", len(ev.GetHops()), w.hops)
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
