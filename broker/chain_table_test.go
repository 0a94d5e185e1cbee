package broker_test

// Table tests of Broker.Chain built on brokertest: both hops scripted in
// process, real ES256 keys, the memory store with error injection and a fake
// clock. One case (at least) per reason code the broker produces; a test
// checks that none is missing.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// kit is a broker from domain A to domain B (and an issue mode chain from
// domain C to domain B) on brokertest parts. Hop 1 at A is a GrantIssuer
// checking the subject token with A's key; hop 2 answers an access token.
type kit struct {
	b      *broker.Broker
	clock  *brokertest.Clock
	st     *brokertest.FaultyStore
	ep     *brokertest.Endpoint
	grants *brokertest.GrantIssuer
	signA  *token.Signer
	last   broker.Request // the last request chained
}

const issuerC = "https://c.example" // an issue mode source (no token exchange)

func newKit(t testing.TB, mutate func(*broker.Config)) *kit {
	t.Helper()
	signA := brokertest.Key(t, "domain-a", "ES256")
	signBroker := brokertest.Key(t, "broker", "ES256")
	keysA := brokertest.Verifier(t, signA)
	k := &kit{clock: brokertest.NewClock(time.Time{}), st: brokertest.NewFaultyStore(t), signA: signA}
	k.grants = &brokertest.GrantIssuer{Signer: signA, Issuer: issuerA, Audience: issuerB, Keys: keysA, Now: k.clock.Now}
	k.ep = &brokertest.Endpoint{Exchange: k.grants.Exchange, JWTBearer: brokertest.AccessToken("access-token-b", 300)}
	cfg := broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: keysA},
			{Name: "domain-b", Issuer: issuerB, TokenEndpoint: issuerB + "/token",
				Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "b"}},
			{Name: "domain-c", Issuer: issuerC, TokenEndpoint: issuerC + "/token", Keys: keysA},
		},
		Chains: []broker.Chain{
			{Source: "domain-a", Target: "domain-b"},
			{Source: "domain-c", Target: "domain-b", Mode: broker.ModeIssue, SubjectAudience: []string{brokerAud}},
		},
		Endpoint:  k.ep,
		Replay:    k.st,
		Audit:     k.st,
		Cache:     k.st,
		CacheKeys: []broker.CacheKey{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}},
		Issuer:    &broker.Issuer{URL: brokerIssuer, Keys: brokertest.SigningKeys{S: signBroker}},
		Now:       k.clock.Now,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: "agent", Chains: []broker.ChainGrant{
			{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}},
			{Source: "domain-c", Target: "domain-b", Scopes: []string{broker.AnyScope}},
		}}}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k.b = b
	return k
}

// subject is an access token of domain A (iss issuer, A's key) for sub,
// valid 5 minutes on the kit's clock; extra claims are set (nil deletes).
func (k *kit) subject(t testing.TB, iss, sub string, extra map[string]any) string {
	t.Helper()
	now := k.clock.Now()
	claims := map[string]any{"iss": iss, "sub": sub, "aud": brokerAud, "azp": "app",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "subject-" + sub}
	for name, v := range extra {
		if v == nil {
			delete(claims, name)
			continue
		}
		claims[name] = v
	}
	tok, err := k.signA.Sign(claims, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request is the default request: agent chains alice's token from A to B.
func (k *kit) request(t testing.TB) broker.Request {
	return broker.Request{Caller: "agent", SubjectToken: k.subject(t, issuerA, "alice", nil), TargetDomain: "domain-b"}
}

// issueRequest chains alice's token from C to B in issue mode.
func (k *kit) issueRequest(t testing.TB) broker.Request {
	return broker.Request{Caller: "agent", SubjectToken: k.subject(t, issuerC, "alice", nil), TargetDomain: "domain-b"}
}

func (k *kit) chain(ctx context.Context, req broker.Request) (*broker.Result, error) {
	k.last = req
	return k.b.Chain(ctx, req)
}

type chainCase struct {
	name   string
	config func(*broker.Config)
	// setup scripts the endpoint, store and clock, and may run earlier
	// chains (replay, breaker, cache).
	setup func(t *testing.T, k *kit)
	// req adjusts the default request (k.request).
	req  func(t *testing.T, k *kit, r *broker.Request)
	ctx  func() (context.Context, context.CancelFunc)
	want broker.Reason // "" success
	// check asserts more: calls, events, result.
	check func(t *testing.T, k *kit, res *broker.Result, err error)
}

// grantMutation makes hop 1 answer grants adjusted by mutate.
func grantMutation(mutate func(c map[string]any, o *token.SignOptions)) func(*testing.T, *kit) {
	return func(_ *testing.T, k *kit) { k.grants.Mutate = mutate }
}

// acceptIDJAG lets every target take ID-JAG grants (assertion.allowed_typ).
func acceptIDJAG(c *broker.Config) {
	for i := range c.Domains {
		c.Domains[i].Assertion.AllowedTyp = append(append([]string(nil), broker.DefaultAllowedTyp...), token.TypeIDJAG)
	}
}

func setClaim(name string, v any) func(*testing.T, *kit) {
	return grantMutation(func(c map[string]any, _ *token.SignOptions) { c[name] = v })
}

func maxAttempts(n int) func(*broker.Config) {
	return func(c *broker.Config) {
		for i := range c.Domains {
			c.Domains[i].Resilience.MaxAttempts = n
		}
	}
}

func verifySubject(c *broker.Config) { c.Domains[0].VerifySubjectToken = true }

// calls checks the number of hop 1 and hop 2 requests.
func calls(exchange, bearer int) func(*testing.T, *kit, *broker.Result, error) {
	return func(t *testing.T, k *kit, _ *broker.Result, _ error) {
		t.Helper()
		if got := k.ep.Calls(oauth.GrantTypeTokenExchange); got != exchange {
			t.Errorf("%d token exchange requests, want %d", got, exchange)
		}
		if got := k.ep.Calls(oauth.GrantTypeJWTBearer); got != bearer {
			t.Errorf("%d jwt-bearer requests, want %d", got, bearer)
		}
	}
}

// both runs checks in order.
func both(checks ...func(*testing.T, *kit, *broker.Result, error)) func(*testing.T, *kit, *broker.Result, error) {
	return func(t *testing.T, k *kit, res *broker.Result, err error) {
		t.Helper()
		for _, c := range checks {
			c(t, k, res, err)
		}
	}
}

// lastEvent checks the newest audit event's outcome and reason.
func lastEvent(outcome store.Outcome) func(*testing.T, *kit, *broker.Result, error) {
	return func(t *testing.T, k *kit, _ *broker.Result, err error) {
		t.Helper()
		evs := k.st.Events(t)
		if len(evs) == 0 {
			t.Fatal("no audit event")
		}
		ev := evs[0]
		if ev.Outcome != outcome {
			t.Errorf("event outcome %v, want %v", ev.Outcome, outcome)
		}
		if want := string(reasonOf(t, err)); ev.Reason != want {
			t.Errorf("event reason %q, want %q", ev.Reason, want)
		}
	}
}

// assertions are the assertions hop 2 was sent, in order.
func assertions(k *kit) []string {
	var out []string
	for _, r := range k.ep.Requests(oauth.GrantTypeJWTBearer) {
		out = append(out, r.Form.Get("assertion"))
	}
	return out
}

// awsTarget makes domain-b an aws target answered by a brokertest.AWSSTS
// (credentials for an hour) unless edit sets another client.
func awsTarget(edit func(*broker.AWSTarget)) func(*broker.Config) {
	return func(c *broker.Config) {
		a := &broker.AWSTarget{RoleARN: "arn:aws:iam::111122223333:role/test", Client: &brokertest.AWSSTS{}}
		if edit != nil {
			edit(a)
		}
		c.Domains[1].Kind, c.Domains[1].AWS = broker.KindAWS, a
	}
}

// awsGrants makes hop 1 issue grants for AWS's audience, adjusted by edit.
func awsGrants(edit func(c map[string]any)) func(*testing.T, *kit) {
	return func(_ *testing.T, k *kit) {
		k.grants.Audience = broker.DefaultAWSAudience
		if edit != nil {
			k.grants.Mutate = func(c map[string]any, _ *token.SignOptions) { edit(c) }
		}
	}
}

// azureTarget makes domain-b an azure target (app-1 in tenant-1) whose
// federated credential is domain A's issuer and alice.
func azureTarget(edit func(*broker.AzureTarget)) func(*broker.Config) {
	return func(c *broker.Config) {
		a := &broker.AzureTarget{Tenant: "tenant-1", ClientID: "app-1", Scope: "https://management.azure.com/.default",
			FederatedCredentials: []broker.AzureFederatedCredential{{Issuer: issuerA, Subject: "alice"}}}
		if edit != nil {
			edit(a)
		}
		c.Domains[1].Kind, c.Domains[1].Azure = broker.KindAzure, a
	}
}

// azureGrants makes hop 1 issue grants for Entra's audience, adjusted by
// edit, and the target answer an access token.
func azureGrants(edit func(c map[string]any)) func(*testing.T, *kit) {
	return func(_ *testing.T, k *kit) {
		k.grants.Audience = broker.DefaultAzureAudience
		k.ep.ClientCredentials = brokertest.AccessToken("entra-token", 3599)
		if edit != nil {
			k.grants.Mutate = func(c map[string]any, _ *token.SignOptions) { edit(c) }
		}
	}
}

// Keys for the gcp cases: an ES384 key, and an RS256 key whose tokens
// carry no kid (the only RS256 key of domain A, so that they verify).
var (
	gcpES384  = mustSigner(token.GenerateSigner("ES384"))
	gcpRSAKey = func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}()
	gcpRS256 = mustSigner(token.NewSigner(gcpRSAKey, "RS256", "rsa-1"))
)

func mustSigner(s *token.Signer, err error) *token.Signer {
	if err != nil {
		panic(err)
	}
	return s
}

// gcpExtraKeys adds gcpES384 and gcpRS256 to domain A's keys.
func gcpExtraKeys(c *broker.Config) {
	jwks, err := token.PublicJWKS(gcpES384, gcpRS256)
	if err != nil {
		panic(err)
	}
	extra, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		panic(err)
	}
	c.Domains[0].Keys = anyOf{c.Domains[0].Keys, extra}
}

// anyOf verifies with the first verifier that accepts the token.
type anyOf []broker.Verifier

func (v anyOf) Verify(ctx context.Context, compact string) (*token.Token, error) {
	var first error
	for _, one := range v {
		tok, err := one.Verify(ctx, compact)
		if err == nil {
			return tok, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// both2 applies two configuration changes.
func both2(a, b func(*broker.Config)) func(*broker.Config) {
	return func(c *broker.Config) { a(c); b(c) }
}

// kidlessRS256 signs claims with gcpRSAKey under a header without kid.
func kidlessRS256(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, gcpRSAKey, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc(sig)
}

const gcpAudience = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool-1/providers/prov-1"

// gcpTarget makes domain-b a gcp target answered by a brokertest.GCP.
func gcpTarget(edit func(*broker.GCPTarget)) func(*broker.Config) {
	return func(c *broker.Config) {
		g := &broker.GCPTarget{Audience: gcpAudience, Client: &brokertest.GCP{}}
		if edit != nil {
			edit(g)
		}
		c.Domains[1].Kind, c.Domains[1].GCP = broker.KindGCP, g
	}
}

// gcpGrants makes hop 1 issue grants for the provider's audience, adjusted
// by edit and header.
func gcpGrants(edit func(c map[string]any), header func(*token.SignOptions)) func(*testing.T, *kit) {
	return func(t *testing.T, k *kit) {
		k.grants.Audience = gcpAudience
		k.grants.Mutate = func(c map[string]any, o *token.SignOptions) {
			if edit != nil {
				edit(c)
			}
			if header != nil {
				header(o)
			}
		}
	}
}

// serverOnlyReasons are reasons of broker.Reasons() that only the server
// produces, so that no Chain case can: none today.
var serverOnlyReasons = []broker.Reason{}

func chainCases() []chainCase {
	unavailable := func(notSent bool) func(*testing.T, *kit) {
		return func(_ *testing.T, k *kit) { k.ep.Exchange = brokertest.Unavailable(notSent) }
	}
	return append([]chainCase{
		{name: "success", want: "", check: both(calls(1, 1), lastEvent(store.OutcomeSuccess),
			func(t *testing.T, k *kit, res *broker.Result, _ error) {
				if res.AccessToken != "access-token-b" || res.AuditID == "" || len(res.Hops) != 2 {
					t.Errorf("result %+v", res)
				}
				if ev := k.st.Events(t)[0]; ev.Subject != "alice" || !ev.SubjectVerified || ev.AssertionJTIHash == "" {
					t.Errorf("event %+v", ev)
				}
			})},

		// Request checks, before any call.
		{name: "no subject token", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.SubjectToken = "" },
			want: broker.ReasonRequestInvalid, check: both(calls(0, 0), lastEvent(store.OutcomeFailure))},
		{name: "malformed scope", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.Scopes = []string{"a\"b"} },
			want: broker.ReasonRequestInvalid, check: calls(0, 0)},
		{name: "resource not absolute", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.Resources = []string{"relative/path"} },
			want: broker.ReasonRequestInvalid},
		{name: "actor token without type", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.ActorToken = "x" },
			want: broker.ReasonRequestInvalid},
		{name: "unknown target", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.TargetDomain = "nowhere" },
			want: broker.ReasonDomainUnknown},
		{name: "unknown source", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.SourceDomain = "nowhere" },
			want: broker.ReasonDomainUnknown},
		{name: "opaque subject token without source", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.SubjectToken = "opaque" },
			want: broker.ReasonSourceUndetermined},
		{name: "subject token of an unknown issuer", req: func(t *testing.T, k *kit, r *broker.Request) {
			r.SubjectToken = k.subject(t, "https://elsewhere.example", "alice", nil)
		}, want: broker.ReasonSourceUndetermined},
		{name: "no such chain", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.SourceDomain, r.TargetDomain = "domain-b", "domain-a" },
			want: broker.ReasonChainNotAllowed},

		// Policy denials.
		{name: "caller not in the policy", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.Caller = "stranger" },
			want: broker.ReasonChainNotAllowed, check: both(calls(0, 0), lastEvent(store.OutcomeFailure))},
		{name: "scope not granted", config: func(c *broker.Config) { c.Policy.Callers[0].Chains[0].Scopes = []string{"profile"} },
			req: func(_ *testing.T, _ *kit, r *broker.Request) { r.Scopes = []string{"profile", "admin"} }, want: broker.ReasonScopeNotAllowed},
		{name: "resource not granted", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.Resources = []string{"https://api.example"} },
			want: broker.ReasonResourceNotAllowed},
		{name: "audience not granted", req: func(_ *testing.T, _ *kit, r *broker.Request) { r.Audience = "https://other.example" },
			want: broker.ReasonAudienceNotAllowed},
		{name: "own actor token on an act chain", config: func(c *broker.Config) { c.Chains[0].Transcription.Act = true },
			req: func(_ *testing.T, _ *kit, r *broker.Request) {
				r.ActorToken, r.ActorTokenType = "actor", oauth.TokenTypeJWT
			}, want: broker.ReasonActorTokenNotAllowed, check: calls(0, 0)},
		{name: "subject azp not granted", config: func(c *broker.Config) {
			verifySubject(c)
			c.Policy.Callers[0].Chains[0].SubjectAZP = []string{"other-app"}
		}, want: broker.ReasonSubjectNotAllowed, check: calls(0, 0)},
		{name: "when condition false", config: func(c *broker.Config) {
			verifySubject(c)
			c.Policy.Callers[0].Chains[0].When = `subject.tenant == "acme"`
		}, want: broker.ReasonPolicyDenied, check: both(calls(0, 0), lastEvent(store.OutcomeFailure))},

		// The subject token, checked before hop 1.
		{name: "forged subject token", config: verifySubject, req: func(_ *testing.T, _ *kit, r *broker.Request) {
			r.SubjectToken = forgedToken("alice")
		}, want: broker.ReasonSubjectTokenInvalid, check: calls(0, 0)},
		{name: "subject token not valid yet", config: verifySubject, req: func(t *testing.T, k *kit, r *broker.Request) {
			r.SubjectToken = k.subject(t, issuerA, "alice", map[string]any{"nbf": k.clock.Now().Add(time.Minute).Unix()})
		}, want: broker.ReasonSubjectTokenInvalid},
		{name: "subject token expired on the broker's clock", config: verifySubject, req: func(t *testing.T, k *kit, r *broker.Request) {
			k.clock.Advance(5 * time.Minute) // exp is now: expired
		}, want: broker.ReasonSubjectTokenExpired, check: calls(0, 0)},
		{name: "subject token without exp", config: verifySubject, req: func(t *testing.T, k *kit, r *broker.Request) {
			r.SubjectToken = k.subject(t, issuerA, "alice", map[string]any{"exp": nil})
		}, want: broker.ReasonSubjectTokenExpired},
		{name: "subject keys unavailable", config: func(c *broker.Config) {
			verifySubject(c)
			c.Domains[0].Keys = brokertest.FailingKeys{Err: fmt.Errorf("fetch: %w", token.ErrKeysUnavailable)}
		}, want: broker.ReasonKeysUnavailable, check: calls(0, 0)},

		// Hop 1.
		{name: "hop 1 refused", setup: func(_ *testing.T, k *kit) { k.ep.Exchange = brokertest.Refuse("invalid_grant", "no") },
			want: broker.ReasonTokenExchangeRejected, check: both(calls(1, 0), lastEvent(store.OutcomeFailure),
				func(t *testing.T, k *kit, _ *broker.Result, err error) {
					if e, _ := broker.AsError(err); e.Upstream == nil || e.Upstream.Code != "invalid_grant" || e.Hop != broker.HopTokenExchange {
						t.Errorf("error %+v", e)
					}
				})},
		{name: "hop 1 unavailable, no retry", config: maxAttempts(1), setup: unavailable(false),
			want: broker.ReasonUpstreamUnavailable, check: calls(1, 0)},
		{name: "hop 1 retried", setup: func(_ *testing.T, k *kit) {
			k.ep.Exchange = brokertest.Sequence(brokertest.Unavailable(false), k.grants.Exchange)
		}, want: "", check: calls(2, 1)},
		{name: "hop 1 misconfigured client", setup: func(_ *testing.T, k *kit) {
			k.ep.Exchange = brokertest.Fail(fmt.Errorf("%w: no secret", oauth.ErrConfig))
		}, want: broker.ReasonInternal, check: calls(1, 0)},
		{name: "hop 1 invalid response", setup: func(_ *testing.T, k *kit) {
			k.ep.Exchange = brokertest.Fail(fmt.Errorf("%w: no access_token", oauth.ErrBadResponse))
		}, want: broker.ReasonUpstreamBadResponse},
		{name: "hop 1 issues a refresh token", setup: func(_ *testing.T, k *kit) {
			k.grants.IssuedTokenType = "urn:ietf:params:oauth:token-type:refresh_token"
		},
			want: broker.ReasonUpstreamBadResponse, check: calls(1, 0)},
		{name: "caller's deadline passed", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}, setup: func(_ *testing.T, k *kit) { k.ep.Exchange = brokertest.BlockUntilDone() },
			want: broker.ReasonRequestDeadlineExceeded, check: lastEvent(store.OutcomeFailure)},
		{name: "caller cancelled", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, setup: func(_ *testing.T, k *kit) { k.ep.Exchange = brokertest.BlockUntilDone() },
			want: broker.ReasonRequestCancelled, check: lastEvent(store.OutcomeFailure)},

		// The grant, checked as the target would (docs/design.md §2).
		{name: "grant not a JWS", setup: func(_ *testing.T, k *kit) {
			k.ep.Exchange = brokertest.Answer(oauth.TokenResponse{AccessToken: "not-a-jwt", TokenType: "Bearer", IssuedTokenType: oauth.TokenTypeAccessToken})
		}, want: broker.ReasonAssertionMalformed, check: calls(1, 0)},
		{name: "grant alg not allowed by the target", config: func(c *broker.Config) { c.Domains[1].Assertion.AllowedAlgs = []string{"RS256"} },
			want: broker.ReasonAssertionAlgNotAllowed, check: calls(1, 0)},
		{name: "grant typ not accepted by the target", setup: grantMutation(func(_ map[string]any, o *token.SignOptions) { o.Typ = "secevent+jwt" }),
			want: broker.ReasonAssertionTypeInvalid},
		{name: "grant signed by an unknown key", setup: func(t *testing.T, k *kit) { k.grants.Signer = brokertest.Key(t, "stranger", "ES256") },
			want: broker.ReasonAssertionKeyUnknown},
		{name: "grant signature invalid", setup: func(t *testing.T, k *kit) {
			k.grants.Signer = brokertest.Key(t, "stranger", "ES256")
			k.grants.Mutate = func(_ map[string]any, o *token.SignOptions) { o.Kid = k.signA.KeyID() } // lies about its key
		}, want: broker.ReasonAssertionSignatureInvalid},
		{name: "grant keys unavailable", config: func(c *broker.Config) {
			c.Domains[0].Keys = brokertest.FailingKeys{Err: fmt.Errorf("fetch: %w", token.ErrKeysUnavailable)}
		}, want: broker.ReasonKeysUnavailable, check: calls(1, 0)},
		{name: "grant key rotated, JWKS not refetchable yet", config: func(c *broker.Config) {
			c.Domains[0].Keys = brokertest.FailingKeys{Err: &token.KeyUnknownError{Kid: "k2", Alg: "ES256", RefreshIn: time.Minute}}
		}, want: broker.ReasonKeysRefreshing, check: func(t *testing.T, _ *kit, _ *broker.Result, err error) {
			if e, _ := broker.AsError(err); e.RetryAfter <= 0 {
				t.Errorf("no retry delay: %+v", e)
			}
		}},
		{name: "grant of another issuer", setup: setClaim("iss", "https://evil.example"), want: broker.ReasonAssertionIssuerUntrusted},
		{name: "grant with two audiences", setup: setClaim("aud", []string{issuerB, "account"}), want: broker.ReasonAssertionAudienceMultiple},
		{name: "grant for another audience", setup: setClaim("aud", "account"), want: broker.ReasonAssertionAudienceInvalid},
		{name: "grant without exp", setup: setClaim("exp", nil), want: broker.ReasonAssertionExpirationMissing},
		{name: "grant expired on the broker's clock", setup: func(_ *testing.T, k *kit) {
			k.grants.Now = func() time.Time { return k.clock.Now().Add(-2 * time.Minute) } // the source's clock is behind
		}, want: broker.ReasonAssertionExpired, check: calls(1, 0)},
		{name: "grant not valid yet on the broker's clock", setup: func(_ *testing.T, k *kit) {
			k.grants.Now = func() time.Time { return k.clock.Now().Add(time.Minute) } // the source's clock is ahead
		}, want: broker.ReasonAssertionNotYetValid},
		{name: "grant living too long", setup: func(_ *testing.T, k *kit) { k.grants.Lifetime = time.Hour },
			want: broker.ReasonAssertionLifetimeTooLong},
		{name: "grant without jti", setup: setClaim("jti", nil), want: broker.ReasonAssertionJTIMissing},
		{name: "grant without sub", setup: setClaim("sub", nil), want: broker.ReasonAssertionSubjectMissing},
		{name: "ID-JAG without iat", config: acceptIDJAG, setup: grantMutation(func(c map[string]any, o *token.SignOptions) {
			o.Typ, c["iat"], c["client_id"] = token.TypeIDJAG, nil, "chainbroker"
		}), want: broker.ReasonAssertionIssuedAtMissing},
		{name: "ID-JAG for another client", config: acceptIDJAG, setup: grantMutation(func(c map[string]any, o *token.SignOptions) {
			o.Typ, c["client_id"] = token.TypeIDJAG, "someone-else"
		}), want: broker.ReasonAssertionClientIDMismatch},
		{name: "ID-JAG for the broker's client", config: acceptIDJAG, setup: grantMutation(func(c map[string]any, o *token.SignOptions) {
			o.Typ, c["client_id"] = token.TypeIDJAG, "chainbroker"
		}), want: ""},
		{name: "ID-JAG to a target that does not list it", setup: grantMutation(func(c map[string]any, o *token.SignOptions) {
			o.Typ, c["client_id"] = token.TypeIDJAG, "chainbroker"
		}), want: broker.ReasonAssertionTypeInvalid},
		{name: "at+jwt grant (Keycloak's RFC 9068 access tokens)", setup: grantMutation(func(_ map[string]any, o *token.SignOptions) {
			o.Typ = "at+jwt"
		}), want: ""},

		// Replay and the fail-closed store.
		{name: "grant replayed", setup: func(t *testing.T, k *kit) {
			k.grants.Mutate = func(c map[string]any, _ *token.SignOptions) { c["jti"] = "always-the-same" }
			if _, err := k.chain(context.Background(), k.request(t)); err != nil {
				t.Fatal(err)
			}
		}, want: broker.ReasonAssertionReplayed, check: both(calls(2, 1), lastEvent(store.OutcomeFailure))},
		{name: "target reports the jti as used", setup: func(_ *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Refuse("jti_known", "jti already used")
		}, want: broker.ReasonAssertionReplayed, check: calls(1, 1)},
		{name: "replay store unavailable: fail closed", setup: func(_ *testing.T, k *kit) { k.st.Fail(brokertest.OpMark, nil) },
			want: broker.ReasonStoreUnavailable, check: both(calls(1, 0), lastEvent(store.OutcomeFailure))},
		{name: "audit log unavailable: no token without its event", setup: func(_ *testing.T, k *kit) { k.st.Fail(brokertest.OpAppend, nil) },
			want: broker.ReasonStoreUnavailable, check: func(t *testing.T, k *kit, res *broker.Result, _ error) {
				if res != nil || k.st.Calls(brokertest.OpAppend) != 1 {
					t.Errorf("result %+v after %d appends", res, k.st.Calls(brokertest.OpAppend))
				}
			}},
		{name: "audit log unavailable on a refusal: the refusal is answered", setup: func(_ *testing.T, k *kit) {
			k.st.Fail(brokertest.OpAppend, nil)
			k.ep.Exchange = brokertest.Refuse("invalid_grant", "no")
		}, want: broker.ReasonTokenExchangeRejected, check: func(t *testing.T, k *kit, _ *broker.Result, _ error) {
			if n := k.st.Calls(brokertest.OpAppend); n != 1 {
				t.Errorf("%d appends, want 1", n)
			}
		}},

		// Hop 2, and retries from hop 1.
		{name: "hop 2 refused", setup: func(_ *testing.T, k *kit) { k.ep.JWTBearer = brokertest.Refuse("invalid_grant", "no") },
			want: broker.ReasonJWTBearerRejected, check: both(calls(1, 1), func(t *testing.T, _ *kit, _ *broker.Result, err error) {
				if e, _ := broker.AsError(err); e.Hop != broker.HopJWTBearer || e.Upstream == nil {
					t.Errorf("error %+v", e)
				}
			})},
		{name: "hop 2 unavailable after sending: retried from hop 1 with a fresh grant", setup: func(_ *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Sequence(brokertest.Unavailable(false), brokertest.AccessToken("access-token-b", 300))
		}, want: "", check: both(calls(2, 2), func(t *testing.T, k *kit, _ *broker.Result, _ error) {
			if a := assertions(k); a[0] == a[1] {
				t.Error("an assertion the target may have seen was sent again")
			}
		})},
		{name: "hop 2 not sent: the same grant again", setup: func(_ *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Sequence(brokertest.Unavailable(true), brokertest.AccessToken("access-token-b", 300))
		}, want: "", check: both(calls(1, 2), func(t *testing.T, k *kit, _ *broker.Result, _ error) {
			if a := assertions(k); a[0] != a[1] {
				t.Error("an unsent assertion was not retried")
			}
		})},
		{name: "hop 2 unavailable, attempts exhausted", config: maxAttempts(2), setup: func(_ *testing.T, k *kit) {
			k.ep.JWTBearer = brokertest.Unavailable(false)
		}, want: broker.ReasonUpstreamUnavailable, check: calls(2, 2)},

		// Circuit breaker.
		{name: "circuit open after an outage", config: func(c *broker.Config) {
			maxAttempts(1)(c)
			c.Domains[0].Resilience.BreakerFailures = 1
		}, setup: func(t *testing.T, k *kit) {
			k.ep.Exchange = brokertest.Sequence(brokertest.Unavailable(false), k.grants.Exchange)
			if _, err := k.chain(context.Background(), k.request(t)); reasonOf(t, err) != broker.ReasonUpstreamUnavailable {
				t.Fatalf("outage: %v", err)
			}
		}, want: broker.ReasonUpstreamCircuitOpen, check: calls(1, 0)},
		{name: "circuit half-open after the cooldown: the probe closes it", config: func(c *broker.Config) {
			maxAttempts(1)(c)
			c.Domains[0].Resilience.BreakerFailures = 1
			c.Domains[0].Resilience.BreakerCooldown = time.Minute
		}, setup: func(t *testing.T, k *kit) {
			k.ep.Exchange = brokertest.Sequence(brokertest.Unavailable(false), k.grants.Exchange)
			ctx := context.Background()
			if _, err := k.chain(ctx, k.request(t)); reasonOf(t, err) != broker.ReasonUpstreamUnavailable {
				t.Fatalf("outage: %v", err)
			}
			k.clock.Advance(59 * time.Second)
			if _, err := k.chain(ctx, k.request(t)); reasonOf(t, err) != broker.ReasonUpstreamCircuitOpen {
				t.Fatalf("within the cooldown: %v", err)
			}
			k.clock.Advance(time.Second)
		}, want: "", check: calls(2, 1)},

		// Issue mode: the broker signs the grant.
		{name: "issue mode", req: func(t *testing.T, k *kit, r *broker.Request) { *r = k.issueRequest(t) }, want: "",
			check: both(calls(0, 1), func(t *testing.T, k *kit, _ *broker.Result, _ error) {
				g, err := token.ParseUnverified(assertions(k)[0])
				if err != nil || g.Claims.Issuer != brokerIssuer || g.Claims.Subject != "alice" || g.Claims.JTI == "" ||
					!g.Claims.Expiry.Equal(k.clock.Now().Add(time.Minute)) {
					t.Errorf("issued grant %+v, %v", g, err)
				}
			})},
		{name: "issue mode: subject token for another audience", req: func(t *testing.T, k *kit, r *broker.Request) {
			r.SubjectToken = k.subject(t, issuerC, "alice", map[string]any{"aud": "account"})
		}, want: broker.ReasonSubjectTokenAudience, check: calls(0, 0)},
		{name: "issue mode: subject token expired", req: func(t *testing.T, k *kit, r *broker.Request) {
			*r = k.issueRequest(t)
			k.clock.Advance(10 * time.Minute)
		}, want: broker.ReasonSubjectTokenExpired},
		{name: "issue mode: subject not in the mapping", config: func(c *broker.Config) {
			c.Chains[1].Transcription.SubjectMap = map[string]string{"bob": "b-bob"}
		}, req: func(t *testing.T, k *kit, r *broker.Request) { *r = k.issueRequest(t) },
			want: broker.ReasonSubjectUnmapped, check: calls(0, 0)},
		{name: "issue mode: ID token refused", req: func(t *testing.T, k *kit, r *broker.Request) {
			r.SubjectToken = k.subject(t, issuerC, "alice", map[string]any{"nonce": "n"})
		}, want: broker.ReasonSubjectTokenInvalid},

		// Token cache.
		{name: "cache miss then hit", config: func(c *broker.Config) { c.Domains[1].Cache.Enabled = true },
			setup: func(t *testing.T, k *kit) {
				if _, err := k.chain(context.Background(), k.request(t)); err != nil {
					t.Fatal(err)
				}
				k.clock.Advance(time.Minute)
			},
			req:  func(_ *testing.T, k *kit, r *broker.Request) { *r = k.last }, // the same subject token
			want: "", check: both(calls(1, 1), lastEvent(store.OutcomeCacheHit), func(t *testing.T, _ *kit, res *broker.Result, _ error) {
				if res.AccessToken != "access-token-b" || res.ExpiresIn != 240 {
					t.Errorf("cached result %+v, want the token with 240 s left", res)
				}
			})},
		{name: "cache entry expired on the broker's clock", config: func(c *broker.Config) { c.Domains[1].Cache.Enabled = true },
			setup: func(t *testing.T, k *kit) {
				if _, err := k.chain(context.Background(), k.request(t)); err != nil {
					t.Fatal(err)
				}
				k.clock.Advance(300 * time.Second) // the access token's lifetime
				// The memory store keeps the first chain's fill lease for 3 s of
				// real time, which the fake clock does not move: without a
				// lease store, the chain does not wait for it.
				k.st.Fail(brokertest.OpCacheLease, nil)
			},
			req:  func(_ *testing.T, k *kit, r *broker.Request) { *r = k.last },
			want: "", check: both(calls(2, 2), lastEvent(store.OutcomeSuccess))},
		{name: "aws target: credentials", config: awsTarget(nil), setup: awsGrants(nil),
			want: "", check: func(t *testing.T, k *kit, res *broker.Result, _ error) {
				if res.AWSCredentials == nil || res.AWSCredentials.AccessKeyID != "ASIATEST1" || res.AccessToken != "" {
					t.Fatalf("result %+v", res)
				}
				// The audit event names the key id by its hash, and holds
				// no part of the credentials.
				ev := k.st.Events(t)[0]
				if ev.AWSAccessKeyIDHash != broker.Hash("ASIATEST1") {
					t.Errorf("event's access key id hash %q, want Hash(ASIATEST1)", ev.AWSAccessKeyIDHash)
				}
				if js, _ := json.Marshal(ev); bytes.Contains(js, []byte("ASIATEST1")) || bytes.Contains(js, []byte(res.AWSCredentials.SecretAccessKey)) ||
					bytes.Contains(js, []byte(res.AWSCredentials.SessionToken)) {
					t.Errorf("the audit event holds a credential: %s", js)
				}
			}},
		{name: "aws target: iss is not the provider URL", config: awsTarget(func(a *broker.AWSTarget) { a.ProviderURL = "https://other.example" }),
			setup: awsGrants(nil), want: broker.ReasonAWSProviderMismatch},
		{name: "aws target: aud not in the client ids", config: awsTarget(nil),
			setup: awsGrants(func(c map[string]any) { c["aud"] = issuerB; c["azp"] = nil }), want: broker.ReasonAWSAudienceInvalid},
		{name: "aws target: no sub", config: awsTarget(nil),
			setup: awsGrants(func(c map[string]any) { c["sub"] = nil }), want: broker.ReasonAWSSubjectMissing},
		{name: "aws target: STS refuses", config: awsTarget(func(a *broker.AWSTarget) {
			a.Client = &brokertest.AWSSTS{Handler: brokertest.AWSRefuse("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")}
		}), setup: awsGrants(nil), want: broker.ReasonAWSRejected, check: func(t *testing.T, _ *kit, _ *broker.Result, err error) {
			if e, _ := broker.AsError(err); e.Upstream == nil || e.Upstream.Code != "AccessDenied" || e.Hop != broker.HopAWSSTS {
				t.Fatalf("error %+v", e)
			}
		}},
		{name: "aws target: throttled, retried", config: awsTarget(func(a *broker.AWSTarget) {
			a.Client = &brokertest.AWSSTS{Handler: func(ctx context.Context, n int, in *sts.AssumeRoleWithWebIdentityInput) (*sts.AssumeRoleWithWebIdentityOutput, error) {
				if n == 1 {
					return brokertest.AWSRefuse("Throttling", "Rate exceeded")(ctx, n, in)
				}
				return brokertest.AWSCredentials(time.Hour)(ctx, n, in)
			}}
		}), setup: awsGrants(nil), want: "", check: calls(2, 0)},
		{name: "aws target: throttled throughout", config: awsTarget(func(a *broker.AWSTarget) {
			a.Client = &brokertest.AWSSTS{Handler: brokertest.AWSRefuse("Throttling", "Rate exceeded")}
		}), setup: awsGrants(nil), want: broker.ReasonUpstreamUnavailable, check: calls(3, 0)},
		{name: "azure target: token", config: azureTarget(nil), setup: azureGrants(nil),
			want: "", check: func(t *testing.T, k *kit, res *broker.Result, _ error) {
				reqs := k.ep.Requests("client_credentials")
				if res.AccessToken != "entra-token" || len(reqs) != 1 || reqs[0].Creds.ClientID != "app-1" || reqs[0].Creds.Method != oauth.AuthNone ||
					reqs[0].Form.Get("scope") != "https://management.azure.com/.default" || reqs[0].Form.Get("client_assertion") == "" ||
					reqs[0].Form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					t.Fatalf("result %+v, requests %+v", res, reqs)
				}
			}},
		{name: "azure target: no federated credential for iss", config: azureTarget(func(a *broker.AzureTarget) { a.FederatedCredentials[0].Issuer = issuerB }),
			setup: azureGrants(nil), want: broker.ReasonAzureIssuerMismatch},
		{name: "azure target: subject mismatch", config: azureTarget(nil),
			setup: azureGrants(func(c map[string]any) { c["sub"] = "ALICE" }), want: broker.ReasonAzureSubjectMismatch},
		{name: "azure target: audience", config: azureTarget(nil),
			setup: azureGrants(func(c map[string]any) { c["aud"] = []string{broker.DefaultAzureAudience, "x"} }), want: broker.ReasonAzureAudienceInvalid},
		{name: "azure target: subject above 600 characters", config: azureTarget(nil),
			setup: azureGrants(func(c map[string]any) { c["sub"] = strings.Repeat("s", 601) }), want: broker.ReasonAzureClaimTooLong},
		{name: "azure target: Entra refuses", config: azureTarget(nil), setup: func(t *testing.T, k *kit) {
			azureGrants(nil)(t, k)
			k.ep.ClientCredentials = brokertest.Refuse("invalid_request", "AADSTS70021: No matching federated identity record found for presented assertion.")
		}, want: broker.ReasonAzureRejected, check: func(t *testing.T, _ *kit, _ *broker.Result, err error) {
			if e, _ := broker.AsError(err); e.Hop != broker.HopAzure || e.Upstream == nil || !strings.HasPrefix(e.Upstream.Description, "AADSTS70021") {
				t.Fatalf("error %+v", e)
			}
		}},
		{name: "azure target: throttled, retried", config: azureTarget(nil), setup: func(t *testing.T, k *kit) {
			azureGrants(nil)(t, k)
			k.ep.ClientCredentials = brokertest.Sequence(brokertest.Unavailable(false), brokertest.AccessToken("entra-token", 3599))
		}, want: "", check: calls(2, 0)},
		{name: "gcp target: federated token", config: gcpTarget(nil), setup: gcpGrants(nil, nil),
			want: "", check: func(t *testing.T, _ *kit, res *broker.Result, _ error) {
				if res.AccessToken != "federated-1" || res.ExpiresIn != 3600 {
					t.Fatalf("result %+v", res)
				}
			}},
		{name: "gcp target: service account token", config: gcpTarget(func(g *broker.GCPTarget) {
			g.ServiceAccount, g.IAMCredentialsEndpoint, g.Lifetime = "sa@p.iam.gserviceaccount.com", "https://iamcredentials.example", 30*time.Minute
		}), setup: gcpGrants(nil, nil), want: "", check: func(t *testing.T, _ *kit, res *broker.Result, _ error) {
			if res.AccessToken != "sa-token-1" || len(res.Hops) != 3 || res.Hops[2].GrantType != "gcp:generateAccessToken" {
				t.Fatalf("result %+v", res)
			}
		}},
		{name: "gcp target: aud with https:", config: gcpTarget(nil), setup: gcpGrants(func(c map[string]any) { c["aud"] = "https:" + gcpAudience }, nil), want: ""},
		{name: "gcp target: no kid", config: both2(gcpTarget(nil), gcpExtraKeys), setup: func(t *testing.T, k *kit) {
			k.ep.Exchange = func(_ context.Context, _ int, req oauth.Request) (*oauth.TokenResponse, error) {
				sub, _ := token.ParseUnverified(req.Form.Get("subject_token"))
				now := k.clock.Now()
				return &oauth.TokenResponse{AccessToken: kidlessRS256(t, map[string]any{"iss": issuerA, "sub": sub.Claims.Subject, "aud": gcpAudience,
					"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "kidless"}), TokenType: "N_A", IssuedTokenType: oauth.TokenTypeJWT}, nil
			}
		}, want: broker.ReasonGCPKeyIDMissing},
		{name: "gcp target: alg", config: both2(gcpTarget(nil), gcpExtraKeys), setup: func(t *testing.T, k *kit) {
			gcpGrants(nil, nil)(t, k)
			k.grants.Signer = gcpES384
		}, want: broker.ReasonGCPAlgNotAllowed},
		{name: "gcp target: lifetime 48h", config: gcpTarget(nil), setup: gcpGrants(func(c map[string]any) {
			c["exp"] = c["iat"].(int64) + int64(48*3600)
		}, nil), want: broker.ReasonGCPLifetimeTooLong},
		{name: "gcp target: audience", config: gcpTarget(nil), setup: gcpGrants(func(c map[string]any) { c["aud"] = issuerB }, nil), want: broker.ReasonGCPAudienceInvalid},
		{name: "gcp target: subject above 127 bytes", config: gcpTarget(nil), setup: gcpGrants(func(c map[string]any) { c["sub"] = strings.Repeat("s", 128) }, nil),
			want: broker.ReasonGCPSubjectInvalid},
		{name: "gcp target: STS refuses", config: gcpTarget(func(g *broker.GCPTarget) {
			g.Client = &brokertest.GCP{Exchange: func(context.Context, int, string, string, string) (string, int64, error) {
				return "", 0, &broker.GCPError{StatusCode: 400, Code: "invalid_grant", Message: "The audience in ID Token [x] does not match the expected audience."}
			}}
		}), setup: gcpGrants(nil, nil), want: broker.ReasonGCPRejected},
		{name: "gcp target: impersonation refused", config: gcpTarget(func(g *broker.GCPTarget) {
			g.ServiceAccount, g.IAMCredentialsEndpoint = "sa@p.iam.gserviceaccount.com", "https://iamcredentials.example"
			g.Client = &brokertest.GCP{Impersonate: func(context.Context, int, string, string, time.Duration) (string, time.Time, error) {
				return "", time.Time{}, &broker.GCPError{StatusCode: 403, Code: "PERMISSION_DENIED", Message: "Permission 'iam.serviceAccounts.getAccessToken' denied"}
			}}
		}), setup: gcpGrants(nil, nil), want: broker.ReasonGCPImpersonationRefused},
		{name: "gcp target: STS throttles, retried", config: gcpTarget(func(g *broker.GCPTarget) {
			g.Client = &brokertest.GCP{Exchange: func(_ context.Context, n int, _, _, _ string) (string, int64, error) {
				if n == 1 {
					return "", 0, &broker.GCPError{StatusCode: 429, Code: "rate_limit_exceeded"}
				}
				return "federated", 3600, nil
			}}
		}), setup: gcpGrants(nil, nil), want: "", check: calls(2, 0)},
		{name: "aws target: the subject token itself as the grant", config: both2(awsTarget(nil), func(c *broker.Config) { c.Chains[0].Mode = broker.ModeSubjectToken }),
			req: func(t *testing.T, k *kit, r *broker.Request) {
				r.SubjectToken = k.subject(t, issuerA, "alice", map[string]any{"aud": broker.DefaultAWSAudience})
			},
			want: "", check: both(calls(0, 0), lastEvent(store.OutcomeSuccess), func(t *testing.T, k *kit, res *broker.Result, _ error) {
				if res.AWSCredentials == nil || len(res.Hops) != 1 || res.Hops[0].GrantType != "aws:AssumeRoleWithWebIdentity" {
					t.Fatalf("result %+v", res)
				}
				// Presented once: a second chain with the same token is a replay.
				if _, err := k.chain(context.Background(), k.last); reasonOf(t, err) != broker.ReasonAssertionReplayed {
					t.Fatalf("second presentation: %v", err)
				}
			})},
		{name: "aws target: the subject token itself, not for AWS", config: both2(awsTarget(nil), func(c *broker.Config) { c.Chains[0].Mode = broker.ModeSubjectToken }),
			want: broker.ReasonAWSAudienceInvalid, check: calls(0, 0)},
		{name: "aws target: credentials cached", config: both2(awsTarget(nil), func(c *broker.Config) { c.Domains[1].Cache.Enabled = true }),
			setup: func(t *testing.T, k *kit) {
				awsGrants(nil)(t, k)
				if _, err := k.chain(context.Background(), k.request(t)); err != nil {
					t.Fatal(err)
				}
				k.clock.Advance(time.Minute)
			},
			req:  func(_ *testing.T, k *kit, r *broker.Request) { *r = k.last },
			want: "", check: both(calls(1, 0), lastEvent(store.OutcomeCacheHit), func(t *testing.T, k *kit, res *broker.Result, _ error) {
				if res.AWSCredentials == nil || res.AWSCredentials.AccessKeyID != "ASIATEST1" || res.AWSCredentials.SessionToken != "session-1" {
					t.Fatalf("cached result %+v", res)
				}
			})},
		{name: "aws target: cached never past the subject token's exp", config: both2(awsTarget(nil), func(c *broker.Config) { c.Domains[1].Cache.Enabled = true }),
			setup: func(t *testing.T, k *kit) {
				awsGrants(nil)(t, k)
				if _, err := k.chain(context.Background(), k.request(t)); err != nil {
					t.Fatal(err)
				}
				k.clock.Advance(5 * time.Minute) // the subject token's lifetime; the credentials' is an hour
			},
			req:  func(_ *testing.T, k *kit, r *broker.Request) { *r = k.last },
			want: "", check: both(calls(2, 0), lastEvent(store.OutcomeSuccess))},
		{name: "cache store unavailable: chained without it", config: func(c *broker.Config) { c.Domains[1].Cache.Enabled = true },
			setup: func(_ *testing.T, k *kit) {
				k.st.Fail(brokertest.OpCacheGet, nil)
				k.st.Fail(brokertest.OpCacheLease, nil)
				k.st.Fail(brokertest.OpCachePut, nil)
			}, want: "", check: both(calls(1, 1), lastEvent(store.OutcomeSuccess))},
	}, idJAGCases()...) // profile_idjag_test.go
}

// TestChainTable runs every case on a fresh kit.
func TestChainTable(t *testing.T) {
	for _, tc := range chainCases() {
		t.Run(tc.name, func(t *testing.T) {
			k := newKit(t, tc.config)
			if tc.setup != nil {
				tc.setup(t, k)
			}
			req := k.request(t)
			if tc.req != nil {
				tc.req(t, k, &req)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			res, err := k.chain(ctx, req)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("reason %q, want %q (%v)", got, tc.want, err)
			}
			if (err == nil) != (res != nil) {
				t.Fatalf("result %+v with error %v", res, err)
			}
			if tc.check != nil {
				tc.check(t, k, res, err)
			}
		})
	}
}

// TestChainTableCoversEveryReason: every reason of broker.Reasons() is
// produced by at least one case of TestChainTable, except those only the
// server produces (serverOnlyReasons), so that a new reason comes with its
// case.
func TestChainTableCoversEveryReason(t *testing.T) {
	covered := map[broker.Reason]bool{}
	for _, tc := range chainCases() {
		covered[tc.want] = true
	}
	for _, r := range broker.Reasons() {
		if !covered[r] && !slices.Contains(serverOnlyReasons, r) {
			t.Errorf("no TestChainTable case produces %s: add one (or list it in serverOnlyReasons if only the server produces it)", r)
		}
	}
	for _, r := range serverOnlyReasons {
		if covered[r] {
			t.Errorf("%s is listed as server-only, but a Chain case produces it", r)
		}
	}
}
