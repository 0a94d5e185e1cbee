package broker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

// cloudFixture is a broker whose source is domain A (hop 1 answered in
// process by a GrantIssuer) and whose target is one of the sandbox's
// cloud imitations, on loopback, trusting domain A's key (served by an
// httptest JWKS).
type cloudFixture struct {
	b      *broker.Broker
	st     *memory.Store
	sb     *sandbox.Sandbox
	grants *brokertest.GrantIssuer
	ep     *brokertest.Endpoint
	signA  *token.Signer
}

func newCloudFixture(t *testing.T, target broker.Domain, audience string, mutate func(*broker.Config)) *cloudFixture {
	t.Helper()
	signA, _ := fixtureKeys(t)
	keysA := brokertest.Verifier(t, signA)
	sb, err := sandbox.Start(t.Context(), sandbox.Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", CloudAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	grants := &brokertest.GrantIssuer{Signer: signA, Issuer: issuerA, Audience: audience, Keys: keysA}
	ep := &brokertest.Endpoint{Exchange: grants.Exchange}
	target.Name = "cloud"
	cfg := broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: keysA},
			target,
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "cloud"}},
		Endpoint: ep,
		Replay:   st,
		Audit:    st,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: "agent",
			Chains: []broker.ChainGrant{{Source: "domain-a", Target: "cloud", Scopes: []string{broker.AnyScope}}}}}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cloudFixture{b: b, st: st, sb: sb, grants: grants, ep: ep, signA: signA}
}

// jwksOf serves signers' JWKS on loopback: domain A's keys as the clouds
// fetch them.
func jwksOf(t *testing.T, signers ...*token.Signer) string {
	t.Helper()
	doc, err := token.PublicJWKS(signers...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (f *cloudFixture) chain(t *testing.T) (*broker.Result, error) {
	t.Helper()
	now := time.Now()
	sub, err := f.signA.Sign(map[string]any{"iss": issuerA, "sub": "alice", "aud": "chainbroker",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "subject-alice"}, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f.b.Chain(context.Background(), broker.Request{Caller: "agent", SubjectToken: sub, SourceDomain: "domain-a", TargetDomain: "cloud"})
}

const awsRole = "arn:aws:iam::" + sandbox.AWSAccountID + ":role/broker-test"

func TestAWSTarget(t *testing.T) {
	signA, _ := fixtureKeys(t)
	jwks := jwksOf(t, signA)
	start := func(t *testing.T, edit func(*broker.AWSTarget), mutateGrant func(map[string]any, *token.SignOptions)) (*cloudFixture, *sandbox.Sandbox) {
		t.Helper()
		sb, err := sandbox.Start(t.Context(), sandbox.Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", CloudAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sb.Close() })
		if err := sb.Cloud.AWS.AddOIDCProvider(sandbox.AWSProvider{URL: issuerA, ClientIDs: []string{broker.DefaultAWSAudience}, JWKSURI: jwks}); err != nil {
			t.Fatal(err)
		}
		if err := sb.Cloud.AWS.AddRole(sandbox.AWSRole{ARN: awsRole, Provider: issuerA}); err != nil {
			t.Fatal(err)
		}
		a := &broker.AWSTarget{RoleARN: awsRole, Client: sts.New(broker.AWSSTSOptions(sb.Cloud.AWS.Endpoint(), ""))}
		if edit != nil {
			edit(a)
		}
		f := newCloudFixture(t, broker.Domain{Kind: broker.KindAWS, Issuer: "urn:test:aws", TokenEndpoint: sb.Cloud.AWS.Endpoint(), AWS: a},
			broker.DefaultAWSAudience, nil)
		f.grants.Mutate = mutateGrant
		return f, sb
	}

	t.Run("credentials", func(t *testing.T) {
		f, sb := start(t, nil, nil)
		res, err := f.chain(t)
		if err != nil {
			t.Fatal(err)
		}
		c := res.AWSCredentials
		if c == nil || res.AccessToken != "" {
			t.Fatalf("result: %+v", res)
		}
		issued, ok := sb.Cloud.AWS.Credentials(c.AccessKeyID)
		if !ok || issued.SecretAccessKey != c.SecretAccessKey || issued.SessionToken != c.SessionToken ||
			!issued.Expiration.Equal(c.Expiration) || issued.SessionName != "alice" || issued.Subject != "alice" {
			t.Fatalf("credentials %+v, issued %+v", c, issued)
		}
		if res.ExpiresIn < 3590 || res.ExpiresIn > 3600 {
			t.Fatalf("ExpiresIn %d, want about 3600", res.ExpiresIn)
		}
		evs := f.events(t)
		if len(evs) != 1 || evs[0].Outcome != store.OutcomeSuccess || len(evs[0].Hops) != 2 || evs[0].Hops[1].GrantType != "aws:AssumeRoleWithWebIdentity" {
			t.Fatalf("audit: %+v", evs)
		}
	})

	for _, tc := range []struct {
		name     string
		edit     func(*broker.AWSTarget)
		grant    func(map[string]any, *token.SignOptions)
		setup    func(*sandbox.Sandbox)
		reason   broker.Reason
		upstream string
		calls    int64 // STS requests expected
	}{
		{name: "provider URL mismatch", edit: func(a *broker.AWSTarget) { a.ProviderURL = "https://other.example" }, reason: broker.ReasonAWSProviderMismatch},
		{name: "audience not in client ids", grant: func(c map[string]any, _ *token.SignOptions) { c["aud"] = "other"; c["azp"] = nil },
			reason: broker.ReasonAWSAudienceInvalid},
		{name: "azp in client ids", grant: func(c map[string]any, _ *token.SignOptions) { c["aud"] = "other"; c["azp"] = broker.DefaultAWSAudience },
			calls: 1},
		{name: "no sub", grant: func(c map[string]any, _ *token.SignOptions) { c["sub"] = nil }, reason: broker.ReasonAWSSubjectMissing},
		{name: "role unknown at AWS", edit: func(a *broker.AWSTarget) { a.RoleARN = "arn:aws:iam::111122223333:role/missing" },
			reason: broker.ReasonAWSRejected, upstream: "AccessDenied", calls: 1},
		{name: "duration above the role maximum", edit: func(a *broker.AWSTarget) { a.Duration = 2 * time.Hour },
			reason: broker.ReasonAWSRejected, upstream: "ValidationError", calls: 1},
		{name: "subject revoked", setup: func(sb *sandbox.Sandbox) { sb.Cloud.AWS.RevokeSubject("alice") },
			reason: broker.ReasonAWSRejected, upstream: "IDPRejectedClaim", calls: 1},
		{name: "throttled once, then retried", setup: func(sb *sandbox.Sandbox) { sb.Cloud.AWS.SetThrottle(1) }, calls: 2},
		{name: "throttled throughout", setup: func(sb *sandbox.Sandbox) { sb.Cloud.AWS.SetThrottle(100) },
			reason: broker.ReasonUpstreamUnavailable, upstream: "Throttling", calls: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, sb := start(t, tc.edit, tc.grant)
			if tc.setup != nil {
				tc.setup(sb)
			}
			res, err := f.chain(t)
			if got := reasonOf(t, err); got != tc.reason {
				t.Fatalf("reason %q, want %q (%v)", got, tc.reason, err)
			}
			if tc.reason == "" && (res == nil || res.AWSCredentials == nil) {
				t.Fatalf("no credentials: %+v", res)
			}
			if tc.upstream != "" {
				e, _ := broker.AsError(err)
				if e.Upstream == nil || e.Upstream.Code != tc.upstream || e.Hop != broker.HopAWSSTS {
					t.Fatalf("upstream %+v hop %q, want %s", e.Upstream, e.Hop, tc.upstream)
				}
			}
			if n := sb.Cloud.AWS.Requests(); n != tc.calls {
				t.Fatalf("STS requests %d, want %d", n, tc.calls)
			}
		})
	}
}

func (f *cloudFixture) events(t *testing.T) []store.Event {
	t.Helper()
	evs, _, err := f.st.List(context.Background(), store.Filter{}, store.MaxPageSize, "")
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestAWSTargetConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    broker.Domain
		want string
	}{
		{"no settings", broker.Domain{Kind: broker.KindAWS}, "kind aws needs its aws settings"},
		{"role ARN", broker.Domain{Kind: broker.KindAWS, AWS: &broker.AWSTarget{RoleARN: "role"}}, "aws.role_arn"},
		{"no client", broker.Domain{Kind: broker.KindAWS, AWS: &broker.AWSTarget{RoleARN: awsRole}}, "needs an STS client"},
		{"duration below 15m", broker.Domain{Kind: broker.KindAWS, AWS: &broker.AWSTarget{RoleARN: awsRole, Duration: time.Minute}}, "aws.duration"},
		{"duration above 12h", broker.Domain{Kind: broker.KindAWS, AWS: &broker.AWSTarget{RoleARN: awsRole, Duration: 13 * time.Hour}}, "aws.duration"},
		{"unknown kind", broker.Domain{Kind: "gcloud"}, `unknown kind "gcloud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := memory.New(memory.Options{})
			defer st.Close()
			tc.d.Name, tc.d.Issuer, tc.d.TokenEndpoint = "cloud", "urn:test:cloud", "https://sts.example/"
			_, err := broker.New(broker.Config{Domains: []broker.Domain{tc.d}, Endpoint: &brokertest.Endpoint{}, Replay: st, Audit: st})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	// A cloud target is never a source.
	st := memory.New(memory.Options{})
	defer st.Close()
	signA, _ := fixtureKeys(t)
	_, err := broker.New(broker.Config{
		Domains: []broker.Domain{
			{Name: "aws", Kind: broker.KindAWS, Issuer: "urn:aws", TokenEndpoint: "https://sts.example/", Keys: brokertest.Verifier(t, signA), AWS: &broker.AWSTarget{RoleARN: awsRole}},
			{Name: "b", Issuer: issuerB, TokenEndpoint: issuerB + "/token"},
		},
		Chains:   []broker.Chain{{Source: "aws", Target: "b"}},
		Endpoint: &brokertest.Endpoint{}, Replay: st, Audit: st,
	})
	if err == nil || !strings.Contains(err.Error(), "cannot be a source") {
		t.Fatalf("New: %v", err)
	}
}
