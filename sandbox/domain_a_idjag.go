package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// Domain A as an ID-JAG issuer (draft-ietf-oauth-identity-assertion-authz-grant),
// following Keycloak's IdentityAssertionGrantTokenExchangeProvider (main
// branch, 2026): a token exchange with requested_token_type id-jag and an
// ID token as subject token is answered with a signed grant, typ
// oauth-id-jag+jwt, for one allow-listed audience (a resource
// authorization server's issuer), carrying the client id the exchanging
// client has there, valid 300 s.
//
// ID tokens come from the password grant with scope openid: their aud holds
// sandbox-agent and chainbroker, as a Keycloak audience mapper "add to ID
// token" on sandbox-agent's dedicated scope would make it.

// Token type URIs of ID-JAG.
const (
	// TokenTypeIDJAG is requested_token_type and issued_token_type of an
	// ID-JAG exchange.
	TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"
	// TokenTypeIDToken is the subject_token_type of an OpenID Connect ID
	// token.
	TokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"
)

// IDJAGLifetime is the lifetime of the ID-JAGs domain A issues: Keycloak's
// fixed 300 s.
const IDJAGLifetime = 300 * time.Second

// Domain A, ID-JAG token exchange: Keycloak's texts, in its order.
const (
	// DescIDJAGPublicClient: 400 invalid_client.
	DescIDJAGPublicClient = "Public clients are not allowed to issue an Identity Assertion JWT"
	// DescIDJAGNotAllowed: 400 unauthorized_client (SetIDJAGIssuance).
	DescIDJAGNotAllowed = "Client is not allowed to issue an Identity Assertion JWT"
	// DescIDJAGSubjectRequired: 400 invalid_request.
	DescIDJAGSubjectRequired = "Parameter 'subject_token' is required"
	// DescIDJAGSubjectType: 400 invalid_request.
	DescIDJAGSubjectType = "Parameter 'subject_token_type' must be " + TokenTypeIDToken
	// DescIDJAGAudienceRequired: 400 invalid_request.
	DescIDJAGAudienceRequired = "Parameter 'audience' is required"
	// DescIDJAGOneAudience: 400 invalid_request, several audiences.
	DescIDJAGOneAudience = "Only a single 'audience' is supported for an Identity Assertion JWT"
	// DescIDJAGAudienceNotAllowed: 403 access_denied, an audience off the
	// client's allow-list (AllowIDJAGAudience).
	DescIDJAGAudienceNotAllowed = "Audience is not allowed for this client"
	// DescIDJAGOneResource: 400 invalid_request, several resources.
	DescIDJAGOneResource = "Only a single 'resource' is supported for an Identity Assertion JWT"
	// DescIDJAGForeignSubject: 400 invalid_grant, the subject token's iss
	// is another issuer.
	DescIDJAGForeignSubject = "subject_token must be an ID token issued by this realm"
	// DescIDJAGInvalidSubject: 400 invalid_grant, a subject token that does
	// not verify, has expired, or names no user.
	DescIDJAGInvalidSubject = "Invalid subject_token"
	// DescIDJAGNotIDToken: 400 invalid_grant, a token whose typ claim is
	// not ID (e.g. an access token sent as an ID token).
	DescIDJAGNotIDToken = "subject_token must be an ID token"
	// DescIDJAGNotIssuedToClient: 400 invalid_grant, the exchanging client
	// is not in the ID token's aud. Keycloak compares the ID token's azp;
	// the sandbox applies the draft's rule (§4.3: the subject token's aud
	// matches the client), so that the broker can exchange an ID token the
	// agent obtained (azp sandbox-agent, aud sandbox-agent and chainbroker).
	DescIDJAGNotIssuedToClient = "subject_token was not issued to this client"
	// DescIDJAGScopeNotAllowed prefixes a scope off the allow-list
	// (SetIDJAGAllowedScopes): 400 invalid_scope.
	DescIDJAGScopeNotAllowed = "Scope not allowed for an Identity Assertion JWT: "
)

// idJAGIssuer is domain A's ID-JAG configuration of the client chainbroker
// (Keycloak's client attributes: issuance enabled, allowed audiences, the
// client id at each audience, allowed scopes).
type idJAGIssuer struct {
	mu        sync.Mutex
	off       bool              // SetIDJAGIssuance(false)
	audiences map[string]string // allowed audience -> client id there ("" = the client's own id)
	scopes    []string          // allowed scopes; empty: any
	last      *issued           // previous ID-JAG, for Misbehaviour.ReuseAssertion
}

func (a *DomainA) initIDJAG() {
	a.jag.audiences = map[string]string{}
}

// AllowIDJAGAudience lets chainbroker request ID-JAGs for aud (a resource
// authorization server's issuer), carrying clientID as client_id ("" means
// chainbroker, Keycloak's fallback). Domain C's issuer is allowed from the
// start, with chainbroker.
func (a *DomainA) AllowIDJAGAudience(aud, clientID string) {
	a.jag.mu.Lock()
	defer a.jag.mu.Unlock()
	a.jag.audiences[aud] = clientID
}

// DisallowIDJAGAudience takes aud off the allow-list.
func (a *DomainA) DisallowIDJAGAudience(aud string) {
	a.jag.mu.Lock()
	defer a.jag.mu.Unlock()
	delete(a.jag.audiences, aud)
}

// SetIDJAGIssuance switches ID-JAG issuance for chainbroker on (the
// default) or off (DescIDJAGNotAllowed).
func (a *DomainA) SetIDJAGIssuance(enabled bool) {
	a.jag.mu.Lock()
	defer a.jag.mu.Unlock()
	a.jag.off = !enabled
}

// SetIDJAGAllowedScopes sets the scopes chainbroker may ask ID-JAGs for;
// none means any (the default).
func (a *DomainA) SetIDJAGAllowedScopes(scopes ...string) {
	a.jag.mu.Lock()
	defer a.jag.mu.Unlock()
	a.jag.scopes = append([]string(nil), scopes...)
}

// IDToken obtains an ID token for a user with the password grant of
// sandbox-agent and scope openid, as a demo agent would after signing the
// user in.
func (a *DomainA) IDToken(ctx context.Context, username, password string) (string, error) {
	form := url.Values{
		"grant_type": {grantPassword},
		"client_id":  {AgentClientID},
		"username":   {username},
		"password":   {password},
		"scope":      {"openid"},
	}
	return a.passwordTokenField(ctx, form, "id_token")
}

// mintIDToken signs the ID token of a password grant: Keycloak's claims
// (typ ID, azp the client), aud the client and chainbroker.
func (a *DomainA) mintIDToken(u *user, c *client, now, exp time.Time) (string, error) {
	return a.signer.Sign(map[string]any{
		"iss":                a.issuer,
		"sub":                u.sub,
		"aud":                []string{c.id, BrokerClientID},
		"azp":                c.id,
		"typ":                "ID",
		"iat":                now.Unix(),
		"exp":                exp.Unix(),
		"auth_time":          now.Unix(),
		"jti":                newUUID(),
		"preferred_username": u.username,
	}, token.SignOptions{Typ: token.TypeJWT})
}

// userBySub finds a user of domain A by sub.
func (a *DomainA) userBySub(sub string) *user { return userWithSub(a.users, sub) }

// idJAGExchange issues an ID-JAG, checks in Keycloak's order.
func (a *DomainA) idJAGExchange(w http.ResponseWriter, r *http.Request, form url.Values, c *client) {
	a.jag.mu.Lock()
	off, allowedScopes := a.jag.off, a.jag.scopes
	a.jag.mu.Unlock()
	switch {
	case c.public:
		a.writeError(w, newError(http.StatusBadRequest, errInvalidClient, DescIDJAGPublicClient))
		return
	case !c.exchange || off:
		a.writeError(w, newError(http.StatusBadRequest, errUnauthorizedClient, DescIDJAGNotAllowed))
		return
	}
	subject := form.Get("subject_token")
	if subject == "" {
		a.writeError(w, badRequest(DescIDJAGSubjectRequired))
		return
	}
	if form.Get("subject_token_type") != TokenTypeIDToken {
		a.writeError(w, badRequest(DescIDJAGSubjectType))
		return
	}
	audiences := form["audience"]
	switch {
	case len(audiences) == 0:
		a.writeError(w, badRequest(DescIDJAGAudienceRequired))
		return
	case len(audiences) > 1:
		a.writeError(w, badRequest(DescIDJAGOneAudience))
		return
	}
	aud := audiences[0]
	a.jag.mu.Lock()
	clientIDThere, allowed := a.jag.audiences[aud]
	a.jag.mu.Unlock()
	if !allowed {
		a.writeError(w, newError(http.StatusForbidden, errAccessDenied, DescIDJAGAudienceNotAllowed))
		return
	}
	if clientIDThere == "" {
		clientIDThere = c.id
	}
	resources := form["resource"]
	if len(resources) > 1 {
		a.writeError(w, badRequest(DescIDJAGOneResource))
		return
	}
	if t, err := parseJWT(subject); err == nil && t.claims.Iss != "" && t.claims.Iss != a.issuer {
		a.writeError(w, badGrant(DescIDJAGForeignSubject))
		return
	}
	st, u := a.checkOwnToken(r.Context(), subject, "")
	if st == nil {
		a.writeError(w, badGrant(DescIDJAGInvalidSubject))
		return
	}
	if st.claims.Typ != "ID" {
		a.writeError(w, badGrant(DescIDJAGNotIDToken))
		return
	}
	if !containsAny(st.claims.Aud, c.id) {
		a.writeError(w, badGrant(DescIDJAGNotIssuedToClient))
		return
	}
	scope := strings.Join(strings.Fields(form.Get("scope")), " ")
	if len(allowedScopes) > 0 {
		for _, s := range strings.Fields(scope) {
			if !containsAny(allowedScopes, s) {
				a.writeError(w, newError(http.StatusBadRequest, errInvalidScope, DescIDJAGScopeNotAllowed+truncate(s)))
				return
			}
		}
	}
	claims := map[string]any{
		"iss":       a.issuer,
		"sub":       u.sub,
		"aud":       aud,
		"client_id": clientIDThere,
		"jti":       newUUID(),
	}
	if len(resources) == 1 {
		claims["resource"] = resources[0]
	}
	if scope != "" {
		claims["scope"] = scope
	}
	// Sandbox: with a DPoP proof on the exchange (the draft's
	// sender-constrained grants), the ID-JAG carries cnf.jkt; the target
	// then wants a proof of the same key.
	if p := dpopProof(r); p != nil {
		claims["cnf"] = map[string]any{"jkt": p.Thumbprint}
	}
	out, err := a.mintIDJAG(claims, scope)
	issuedType := TokenTypeIDJAG
	if m := a.misbehaviour(); m.IssuedTokenType != "" {
		issuedType = m.IssuedTokenType
	}
	a.writeExchanged(w, "ID-JAG exchange", out, err, "N_A", issuedType)
}

// mintIDJAG signs an ID-JAG (typ oauth-id-jag+jwt, 300 s) with the
// token-level misbehaviour applied.
func (a *DomainA) mintIDJAG(claims map[string]any, scope string) (*issued, error) {
	m := a.misbehaviour()
	if m.ReuseAssertion {
		a.jag.mu.Lock()
		last := a.jag.last
		a.jag.mu.Unlock()
		if last != nil {
			return last, nil
		}
	}
	now := time.Now()
	iat, exp := m.times(now, IDJAGLifetime)
	claims["iat"], claims["exp"] = iat.Unix(), exp.Unix()
	if m.ExtraAudience != "" {
		claims["aud"] = []any{claims["aud"], m.ExtraAudience}
	}
	m.applyClaims(claims, now)
	if m.Typ == "" {
		m.Typ = token.TypeIDJAG
	}
	tok, err := a.signMisbehaving(claims, m)
	if err != nil {
		return nil, err
	}
	out := &issued{token: tok, expiresIn: max(exp.Unix()-now.Unix(), 0), scope: scope}
	a.jag.mu.Lock()
	a.jag.last = out
	a.jag.mu.Unlock()
	return out, nil
}

// passwordTokenField posts a password grant form and returns one string
// member of the answer.
func (a *DomainA) passwordTokenField(ctx context.Context, form url.Values, field string) (string, error) {
	body, err := a.postForm(ctx, form)
	if err != nil {
		return "", err
	}
	v, _ := body[field].(string)
	if v == "" {
		return "", fmt.Errorf("sandbox: password grant: no %s in the answer", field)
	}
	return v, nil
}

// postForm posts a form to A's token endpoint and decodes a 200 answer.
func (a *DomainA) postForm(ctx context.Context, form url.Values) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.TokenEndpoint(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", form.Get("grant_type"), err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBodyBytes)).Decode(&body); err != nil {
		return nil, fmt.Errorf("sandbox: %s: HTTP %d: %w", form.Get("grant_type"), resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sandbox: %s: HTTP %d: %v: %v", form.Get("grant_type"), resp.StatusCode, body["error"], body["error_description"])
	}
	return body, nil
}
