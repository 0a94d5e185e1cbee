package broker_test

// A broker from domain A to domain B with both token endpoints answered in
// process by scriptedEndpoint, real ES256 keys, and the memory store: for
// black-box tests of what Chain checks, sends and records.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
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

// fixtureKeys are domain A's key and the broker's, made once per test binary.
var fixtureKeys = sync.OnceValues(func() (*token.Signer, *token.Signer) {
	a, err := token.GenerateSigner("ES256")
	if err != nil {
		panic(err)
	}
	br, err := token.GenerateSigner("ES256")
	if err != nil {
		panic(err)
	}
	return a, br
})

func verifierFor(t testing.TB, s *token.Signer) *token.Verifier {
	t.Helper()
	jwks, err := token.PublicJWKS(s)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type signingKeys struct{ s *token.Signer }

func (k signingKeys) Signer() *token.Signer { return k.s }

// scriptedEndpoint answers hop 1 with a grant for the subject token's sub
// when the subject token verifies with domain A's key, and with an OAuth
// error otherwise; hop 2 with an access token. It keeps every hop 1 form.
type scriptedEndpoint struct {
	t      testing.TB
	keysA  *token.Verifier
	signA  *token.Signer
	n      atomic.Int64
	mu     sync.Mutex
	forms  []url.Values
	refuse func(n int64) string // the error code of the nth refusal; nil: invalid_grant
}

func (e *scriptedEndpoint) Token(ctx context.Context, req oauth.Request) (*oauth.TokenResponse, error) {
	if req.Form.Get("grant_type") != oauth.GrantTypeTokenExchange {
		return &oauth.TokenResponse{AccessToken: "access-token-b", TokenType: "Bearer", ExpiresIn: 300}, nil
	}
	n := e.n.Add(1)
	e.mu.Lock()
	e.forms = append(e.forms, url.Values(req.Form))
	e.mu.Unlock()
	subj, err := e.keysA.Verify(ctx, req.Form.Get("subject_token"))
	if err != nil {
		code := "invalid_grant"
		if e.refuse != nil {
			code = e.refuse(n)
		}
		return nil, &oauth.Error{StatusCode: 400, Code: code, Description: "subject token refused"}
	}
	now := time.Now()
	claims := map[string]any{
		"iss": issuerA, "sub": subj.Claims.Subject, "aud": issuerB, "azp": "chainbroker",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "grant-" + strconv.FormatInt(n, 10),
	}
	if at := req.Form.Get("actor_token"); at != "" {
		// As Keycloak and the sandbox do: the actor token's sub becomes act.
		actor, err := token.ParseUnverified(at)
		if err != nil {
			return nil, &oauth.Error{StatusCode: 400, Code: "invalid_request", Description: "actor_token"}
		}
		claims["act"] = map[string]string{"sub": actor.Claims.Subject}
	}
	grant, err := e.signA.Sign(claims, token.SignOptions{})
	if err != nil {
		e.t.Error(err)
		return nil, err
	}
	return &oauth.TokenResponse{AccessToken: grant, TokenType: "Bearer", IssuedTokenType: oauth.TokenTypeAccessToken, ExpiresIn: 60}, nil
}

// lastForm is the form of the last hop 1 request.
func (e *scriptedEndpoint) lastForm(t testing.TB) url.Values {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.forms) == 0 {
		t.Fatal("no token exchange request was made")
	}
	return e.forms[len(e.forms)-1]
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
	signA, signBroker := fixtureKeys()
	keysA := verifierFor(t, signA)
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	ep := &scriptedEndpoint{t: t, keysA: keysA, signA: signA}
	cfg := broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: keysA},
			{Name: "domain-b", Issuer: issuerB, TokenEndpoint: issuerB + "/token"},
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: ep,
		Replay:   st,
		Audit:    st,
		Issuer:   &broker.Issuer{URL: brokerIssuer, Keys: signingKeys{signBroker}},
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
