package brokertest

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// Handler answers the nth request (from 1) of one grant type.
type Handler func(ctx context.Context, n int, req oauth.Request) (*oauth.TokenResponse, error)

// Endpoint is a token endpoint (broker.TokenEndpoint) whose hops are
// scripted: Exchange answers token exchange requests (hop 1), JWTBearer the
// JWT bearer grant (hop 2), ClientCredentials the client credentials grant
// (hop 2 of an azure target). It records every request. Safe for
// concurrent use once its handlers are set.
type Endpoint struct {
	Exchange          Handler
	JWTBearer         Handler
	ClientCredentials Handler

	mu       sync.Mutex
	requests []oauth.Request
	calls    map[string]int
}

// Token answers req with the handler of its grant type.
func (e *Endpoint) Token(ctx context.Context, req oauth.Request) (*oauth.TokenResponse, error) {
	gt := req.Form.Get("grant_type")
	e.mu.Lock()
	if e.calls == nil {
		e.calls = map[string]int{}
	}
	e.calls[gt]++
	n := e.calls[gt]
	e.requests = append(e.requests, oauth.Request{Endpoint: req.Endpoint, Creds: req.Creds, Form: cloneForm(req.Form), Header: req.Header.Clone()})
	e.mu.Unlock()
	var h Handler
	switch gt {
	case oauth.GrantTypeTokenExchange:
		h = e.Exchange
	case oauth.GrantTypeJWTBearer:
		h = e.JWTBearer
	case "client_credentials":
		h = e.ClientCredentials
	}
	if h == nil {
		return nil, fmt.Errorf("brokertest: no handler for grant_type %q: %w", gt, oauth.ErrConfig)
	}
	return h(ctx, n, req)
}

func cloneForm(f url.Values) url.Values {
	out := make(url.Values, len(f))
	for k, v := range f {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// Calls is how many requests of grantType were made.
func (e *Endpoint) Calls(grantType string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[grantType]
}

// Requests are the requests of grantType made, in order.
func (e *Endpoint) Requests(grantType string) []oauth.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []oauth.Request
	for _, r := range e.requests {
		if r.Form.Get("grant_type") == grantType {
			out = append(out, r)
		}
	}
	return out
}

// Sequence answers the nth request with hs[n-1], and with the last handler
// once they run out.
func Sequence(hs ...Handler) Handler {
	return func(ctx context.Context, n int, req oauth.Request) (*oauth.TokenResponse, error) {
		return hs[min(n, len(hs))-1](ctx, n, req)
	}
}

// Answer answers every request with a copy of resp.
func Answer(resp oauth.TokenResponse) Handler {
	return func(context.Context, int, oauth.Request) (*oauth.TokenResponse, error) {
		r := resp
		return &r, nil
	}
}

// AccessToken answers hop 2 with an access token valid for expiresIn seconds.
func AccessToken(tok string, expiresIn int64) Handler {
	return Answer(oauth.TokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: expiresIn})
}

// Fail answers every request with err.
func Fail(err error) Handler {
	return func(context.Context, int, oauth.Request) (*oauth.TokenResponse, error) { return nil, err }
}

// Refuse answers with an OAuth error (HTTP 400), as *oauth.Client returns it.
func Refuse(code, description string) Handler {
	return Fail(&oauth.Error{StatusCode: 400, Code: code, Description: description})
}

// Unavailable answers as *oauth.Client does when the endpoint cannot be
// reached: an error wrapping oauth.ErrUnavailable, and oauth.ErrNotSent too
// when notSent (the request never left: the server cannot have seen it).
func Unavailable(notSent bool) Handler {
	if notSent {
		return Fail(fmt.Errorf("%w (%w): connection refused", oauth.ErrUnavailable, oauth.ErrNotSent))
	}
	return Fail(fmt.Errorf("%w: connection reset after the request was sent", oauth.ErrUnavailable))
}

// BlockUntilDone waits for the request's context to end and answers its
// error, as a slow endpoint does when the caller gives up.
func BlockUntilDone() Handler {
	return func(ctx context.Context, _ int, _ oauth.Request) (*oauth.TokenResponse, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("%w: %w", oauth.ErrUnavailable, ctx.Err())
	}
}

// GrantIssuer is a source domain's token exchange: it answers with a JWT
// authorization grant, shaped like Keycloak's, for the subject token's sub.
type GrantIssuer struct {
	Signer   *token.Signer
	Issuer   string // iss
	Audience string // aud: the target's issuer
	// Keys, when set, must verify the subject token; one that does not is
	// refused (invalid_grant), as the source would.
	Keys *token.Verifier
	// Now is the source's clock; nil: time.Now.
	Now      func() time.Time
	Lifetime time.Duration // default 60s
	// IssuedTokenType is the answer's issued_token_type; "" is the
	// access_token type.
	IssuedTokenType string
	// Mutate, when set, adjusts each grant's claims (a nil value deletes
	// the claim) and header before it is signed.
	Mutate func(claims map[string]any, opts *token.SignOptions)

	n atomic.Int64
}

// Exchange is a Handler for Endpoint.Exchange.
func (g *GrantIssuer) Exchange(ctx context.Context, _ int, req oauth.Request) (*oauth.TokenResponse, error) {
	n := g.n.Add(1)
	subject, err := token.ParseUnverified(req.Form.Get("subject_token"))
	if g.Keys != nil {
		subject, err = g.Keys.Verify(ctx, req.Form.Get("subject_token"))
	}
	if err != nil {
		return nil, &oauth.Error{StatusCode: 400, Code: "invalid_grant", Description: "subject token refused"}
	}
	now := time.Now()
	if g.Now != nil {
		now = g.Now()
	}
	life := g.Lifetime
	if life <= 0 {
		life = time.Minute
	}
	claims := map[string]any{
		"iss": g.Issuer, "sub": subject.Claims.Subject, "aud": g.Audience, "azp": "chainbroker",
		"iat": now.Unix(), "exp": now.Add(life).Unix(), "jti": "grant-" + strconv.FormatInt(n, 10),
	}
	if at := req.Form.Get("actor_token"); at != "" {
		// As Keycloak and the sandbox do: the actor token's sub becomes act.
		actor, err := token.ParseUnverified(at)
		if err != nil {
			return nil, &oauth.Error{StatusCode: 400, Code: "invalid_request", Description: "actor_token"}
		}
		claims["act"] = map[string]string{"sub": actor.Claims.Subject}
	}
	opts := token.SignOptions{Typ: token.TypeJWT}
	if g.Mutate != nil {
		g.Mutate(claims, &opts)
	}
	for k, v := range claims {
		if v == nil {
			delete(claims, k)
		}
	}
	grant, err := g.Signer.Sign(claims, opts)
	if err != nil {
		return nil, fmt.Errorf("brokertest: signing the grant: %w", err)
	}
	issued := g.IssuedTokenType
	if issued == "" {
		issued = oauth.TokenTypeAccessToken
	}
	return &oauth.TokenResponse{AccessToken: grant, TokenType: "Bearer", IssuedTokenType: issued, ExpiresIn: int64(life / time.Second)}, nil
}
