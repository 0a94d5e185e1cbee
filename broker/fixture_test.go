package broker_test

// A broker from domain A to domain B with both token endpoints answered in
// process by scriptedEndpoint, real ES256 keys, and the memory store: for
// black-box tests of what Chain checks, sends and records.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

const (
	issuerA      = "https://a.example/realms/a"
	issuerB      = "https://b.example/realms/b"
	brokerIssuer = "https://broker.example"
	brokerAud    = "https://broker.example/chain" // subject tokens' aud in issue mode
)

// fixtureKeys are domain A's key and the broker's (brokertest: made once per
// test binary).
func fixtureKeys(t testing.TB) (*token.Signer, *token.Signer) {
	return brokertest.Key(t, "domain-a", "ES256"), brokertest.Key(t, "broker", "ES256")
}

// scriptedEndpoint answers hop 1 with a grant for the subject token's sub
// when the subject token verifies with domain A's key, and with an OAuth
// error otherwise; hop 2 with an access token (brokertest.Endpoint and
// GrantIssuer). It counts hop 1 requests in n.
type scriptedEndpoint struct {
	*brokertest.Endpoint
	n      atomic.Int64
	refuse func(n int64) string // the error code of the nth refusal; nil: invalid_grant
}

func newScriptedEndpoint(signA *token.Signer, keysA *token.Verifier) *scriptedEndpoint {
	e := &scriptedEndpoint{Endpoint: &brokertest.Endpoint{JWTBearer: brokertest.AccessToken("access-token-b", 300)}}
	grants := &brokertest.GrantIssuer{Signer: signA, Issuer: issuerA, Audience: issuerB, Keys: keysA}
	e.Exchange = func(ctx context.Context, _ int, req oauth.Request) (*oauth.TokenResponse, error) {
		n := e.n.Add(1)
		resp, err := grants.Exchange(ctx, int(n), req)
		var oe *oauth.Error
		if errors.As(err, &oe) && oe.Code == "invalid_grant" && e.refuse != nil {
			oe.Code = e.refuse(n)
		}
		return resp, err
	}
	return e
}

// lastForm is the form of the last hop 1 request.
func (e *scriptedEndpoint) lastForm(t testing.TB) url.Values {
	t.Helper()
	reqs := e.Requests(oauth.GrantTypeTokenExchange)
	if len(reqs) == 0 {
		t.Fatal("no token exchange request was made")
	}
	return reqs[len(reqs)-1].Form
}

type fixture struct {
	b     *broker.Broker
	st    *memory.Store
	ep    *scriptedEndpoint
	signA *token.Signer
}

// newFixture builds the broker; mutate adjusts its configuration. The
// caller "agent" may chain A -> B with any scope unless mutate says otherwise.
func newFixture(t testing.TB, mutate func(*broker.Config)) *fixture {
	t.Helper()
	signA, signBroker := fixtureKeys(t)
	keysA := brokertest.Verifier(t, signA)
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	ep := newScriptedEndpoint(signA, keysA)
	cfg := broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: keysA},
			{Name: "domain-b", Issuer: issuerB, TokenEndpoint: issuerB + "/token"},
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: ep,
		Replay:   st,
		Audit:    st,
		Issuer:   &broker.Issuer{URL: brokerIssuer, Keys: brokertest.SigningKeys{S: signBroker}},
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: "agent",
			Chains: []broker.ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}}}}}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{b: b, st: st, ep: ep, signA: signA}
}

// subjectToken is an access token of domain A for sub, signed with its key,
// with extra claims and header typ when given.
func (f *fixture) subjectToken(t testing.TB, sub string, extra map[string]any, typ string) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{"iss": issuerA, "sub": sub, "aud": brokerAud, "azp": "app",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "subject-" + sub}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	tok, err := f.signA.Sign(claims, token.SignOptions{Typ: typ})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forgedToken is a JWT naming sub at domain A with a signature of nobody.
func forgedToken(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": "k"})
	c, _ := json.Marshal(map[string]any{"iss": issuerA, "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	return enc(h) + "." + enc(c) + "." + enc([]byte("not a signature, not at all, 64 bytes long......................."))
}

// events lists every audit event, newest first.
func (f *fixture) events(t testing.TB, filter store.Filter) []store.Event {
	t.Helper()
	var all []store.Event
	page := ""
	for {
		evs, next, err := f.st.List(context.Background(), filter, store.MaxPageSize, page)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
		if next == "" {
			return all
		}
		page = next
	}
}

// reasonOf is err's reason, "" for nil.
func reasonOf(t testing.TB, err error) broker.Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	e, ok := broker.AsError(err)
	if !ok {
		t.Fatalf("not a *broker.Error: %v", err)
	}
	return e.Reason
}
