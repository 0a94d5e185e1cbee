package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// user is a realm user.
type user struct {
	username, password, sub string
	// disabled and requiredActions (e.g. "UPDATE_PASSWORD") are domain B's
	// checks of a linked user (SetUserEnabled, SetRequiredActions).
	disabled        bool
	requiredActions []string
}

// DomainA is realm domain-a: users alice and bob, the public client
// sandbox-agent (password grant) and the confidential client chainbroker
// (standard token exchange, RFC 8693).
//
// Subject tokens (password grant) carry aud ["chainbroker", "account"]: in
// Keycloak an audience mapper on sandbox-agent puts the exchanging client in
// the aud, which standard token exchange requires. A password grant may ask
// for other audiences instead (see SubjectTokenWithAudience), and token
// exchange can be switched off (SetTokenExchange): together they imitate a
// source such as Auth0, whose access tokens carry two audiences and which
// has no RFC 8693 token exchange.
type DomainA struct {
	*Realm

	users map[string]*user // by username
	self  *token.Verifier  // A's own key, for subject tokens

	exchanges atomic.Int64
	passwords atomic.Int64

	exchangeOff atomic.Bool // SetStandardTokenExchange(false)

	amu       sync.Mutex
	audiences map[string]bool           // audiences chainbroker may request
	audState  map[string]AudienceClient // audience clients missing or disabled
	last      *issued                   // the previous exchange's answer, for ReuseAssertion
	rogue     map[string]*token.Signer  // unpublished signers by alg, for misbehaviour

	jag idJAGIssuer // ID-JAG issuance (domain_a_idjag.go)
}

// issued is one token answer.
type issued struct {
	token     string
	expiresIn int64
	scope     string
}

func newDomainA(ln net.Listener, addr string, lifetime time.Duration, log *slog.Logger) (*DomainA, error) {
	rl, err := newRealm(DomainAName, ln, addr, lifetime, log)
	if err != nil {
		return nil, err
	}
	self, err := token.NewStaticVerifier(rl.jwks, []string{"RS256"})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", DomainAName, err)
	}
	a := &DomainA{
		Realm: rl,
		users: map[string]*user{
			Alice: {username: Alice, password: AlicePassword, sub: AliceSubA},
			Bob:   {username: Bob, password: BobPassword, sub: BobSubA},
		},
		self:      self,
		audiences: map[string]bool{},
		audState:  map[string]AudienceClient{},
		rogue:     map[string]*token.Signer{},
	}
	rl.clients[AgentClientID] = &client{id: AgentClientID, public: true, directAccess: true}
	rl.clients[BrokerClientID] = &client{id: BrokerClientID, secret: BrokerSecretA, exchange: true}
	rl.grants[grantPassword] = a.passwordGrant
	rl.grants[grantTokenExchange] = a.tokenExchange
	a.initIDJAG()
	if err := rl.serveUserinfo(a.userBySub); err != nil {
		return nil, err
	}
	rl.discoGrants = []string{grantPassword, grantTokenExchange}
	rl.faultGrant = grantTokenExchange
	rl.countGrant = func(gt string) {
		switch gt {
		case grantTokenExchange:
			a.exchanges.Add(1)
		case grantPassword:
			a.passwords.Add(1)
		}
	}
	return a, nil
}

// AllowAudience lets chainbroker request aud as a token exchange audience
// (domain B's issuer is allowed from the start).
func (a *DomainA) AllowAudience(aud string) {
	a.SetAudienceClient(aud, AudienceAvailable)
}

// AudienceClient is the state of the client of realm A whose Client ID is
// a token exchange audience (SetAudienceClient).
type AudienceClient int

// Audience client states, each with Keycloak's answer to an exchange that
// names it.
const (
	// AudienceAvailable: the client exists, is enabled, and its audience
	// is available to chainbroker (domain B's issuer from the start).
	AudienceAvailable AudienceClient = iota
	// AudienceNotAvailable: the client exists but chainbroker's token cannot
	// carry it (no audience mapper / scope): 400 invalid_request
	// DescAudienceNotAvailable + the audience. Any audience never set.
	AudienceNotAvailable
	// AudienceClientMissing: no client has that Client ID: 400
	// invalid_client DescAudienceNotFound.
	AudienceClientMissing
	// AudienceClientDisabled: the client is disabled: 400 invalid_client
	// DescClientDisabled.
	AudienceClientDisabled
)

// SetAudienceClient sets the state of the audience client aud.
func (a *DomainA) SetAudienceClient(aud string, st AudienceClient) {
	a.amu.Lock()
	defer a.amu.Unlock()
	delete(a.audState, aud)
	delete(a.audiences, aud)
	switch st {
	case AudienceAvailable:
		a.audiences[aud] = true
	case AudienceClientMissing, AudienceClientDisabled:
		a.audState[aud] = st
	}
}

// SetStandardTokenExchange switches "Standard Token Exchange" of the client
// chainbroker on (the default) or off; off, its exchanges get 400
// invalid_request DescExchangeNotEnabled.
func (a *DomainA) SetStandardTokenExchange(enabled bool) { a.exchangeOff.Store(!enabled) }

// SetTokenExchange switches token exchange on (the default) or off. Off,
// domain A is a source without RFC 8693: a token exchange request is
// answered 400 unsupported_grant_type (DescUnsupportedGrantType) after
// client authentication, as an unknown grant type, and discovery no longer
// lists the grant. Requests are still counted by ExchangeCount.
func (a *DomainA) SetTokenExchange(enabled bool) {
	a.setGrantEnabled(grantTokenExchange, enabled)
}

// ExchangeCount returns the number of token exchange requests received
// (whatever their outcome, misbehaving answers included).
func (a *DomainA) ExchangeCount() int64 { return a.exchanges.Load() }

// PasswordGrantCount returns the number of password grant requests received.
func (a *DomainA) PasswordGrantCount() int64 { return a.passwords.Load() }

// SubjectToken obtains an access token for a user with the password grant
// over HTTP, as a demo caller (client sandbox-agent) would; scope is
// optional. It is a convenience for tests, benchmarks and the demo.
func (a *DomainA) SubjectToken(ctx context.Context, username, password, scope string) (string, error) {
	form := url.Values{
		"grant_type": {grantPassword},
		"client_id":  {AgentClientID},
		"username":   {username},
		"password":   {password},
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	return a.passwordToken(ctx, form)
}

// SubjectTokenWithAudience is SubjectToken with the audience parameter:
// the token's aud is exactly aud (a JSON string for one value, an array for
// more), instead of ["chainbroker", "account"]. With two values, e.g. an API
// identifier and ".../userinfo", it is the Auth0 case: an access token with
// two audiences, which Keycloak would refuse as an assertion. Note that
// token exchange at A requires "chainbroker" among them.
func (a *DomainA) SubjectTokenWithAudience(ctx context.Context, username, password string, aud []string) (string, error) {
	if len(aud) == 0 {
		return "", fmt.Errorf("sandbox: SubjectTokenWithAudience: no audience")
	}
	form := url.Values{
		"grant_type": {grantPassword},
		"client_id":  {AgentClientID},
		"username":   {username},
		"password":   {password},
		"audience":   aud,
	}
	return a.passwordToken(ctx, form)
}

// passwordToken posts a password grant form and returns the access token.
func (a *DomainA) passwordToken(ctx context.Context, form url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.TokenEndpoint(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return "", fmt.Errorf("sandbox: password grant: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		return "", fmt.Errorf("sandbox: password grant: %w", err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("sandbox: password grant: HTTP %d: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return "", fmt.Errorf("sandbox: password grant: HTTP %d: %s: %s", resp.StatusCode, tr.Error, tr.Description)
	}
	return tr.AccessToken, nil
}

// maxPasswordAudiences bounds the audience parameters of a password grant.
const maxPasswordAudiences = 8

// passwordGrant is the resource owner password credentials grant (RFC 6749
// §4.3), allowed to sandbox-agent only.
//
// Sandbox extension: "audience" parameters (at most 8, each a non-empty
// string of at most 256 bytes) set the token's aud to exactly those values,
// as Auth0's password grant does; Keycloak ignores the parameter.
func (a *DomainA) passwordGrant(w http.ResponseWriter, r *http.Request, form url.Values, c *client) {
	if !c.directAccess {
		a.writeError(w, newError(http.StatusBadRequest, errUnauthorizedClient, DescDirectGrantNotAllowed))
		return
	}
	u, ok := a.users[form.Get("username")]
	if !ok || subtle.ConstantTimeCompare([]byte(form.Get("password")), []byte(u.password)) != 1 {
		a.writeError(w, newError(http.StatusUnauthorized, errInvalidGrant, DescInvalidUserCredentials))
		return
	}
	scope, oerr := grantScope(form.Get("scope"))
	if oerr != nil {
		a.writeError(w, oerr)
		return
	}
	var aud any = []string{BrokerClientID, "account"}
	if auds, ok := form["audience"]; ok {
		if len(auds) > maxPasswordAudiences {
			a.writeError(w, badRequest(DescTooManyAudiences))
			return
		}
		for _, v := range auds {
			if v == "" || len(v) > 256 {
				a.writeError(w, badRequest(DescInvalidAudienceParam))
				return
			}
		}
		aud = auds
		if len(auds) == 1 {
			aud = auds[0]
		}
	}
	now := time.Now()
	exp := now.Add(a.lifetime)
	tok, err := a.signer.Sign(a.accessClaims(u, aud, c.id, scope, now, exp), token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		a.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
		return
	}
	resp := tokenResponse{AccessToken: tok, ExpiresIn: exp.Unix() - now.Unix(), TokenType: "Bearer", Scope: scope}
	if slices.Contains(strings.Fields(scope), "openid") {
		if resp.IDToken, err = a.mintIDToken(u, c, now, exp); err != nil {
			a.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// tokenExchange is Keycloak's standard token exchange (RFC 8693), checks in
// Keycloak's order. It issues an access token (a JWT) for the subject with
// the requested audience, the assertion for domain B.
func (a *DomainA) tokenExchange(w http.ResponseWriter, r *http.Request, form url.Values, c *client) {
	if form.Get("requested_token_type") == TokenTypeIDJAG {
		a.idJAGExchange(w, r, form, c) // Keycloak's ID-JAG provider takes these
		return
	}
	if !c.exchange || (c.id == BrokerClientID && a.exchangeOff.Load()) {
		a.writeError(w, badRequest(DescExchangeNotEnabled))
		return
	}
	subject, ok := form["subject_token"]
	if !ok {
		a.writeError(w, badRequest(DescSubjectTokenRequired))
		return
	}
	if _, ok := form["subject_token_type"]; !ok {
		a.writeError(w, badRequest(DescSubjectTokenTypeRequired))
		return
	}
	if form.Get("subject_token_type") != tokenTypeAccess {
		a.writeError(w, badRequest(DescAccessTokensOnly))
		return
	}
	if rt := form.Get("requested_token_type"); rt != "" && rt != tokenTypeAccess {
		a.writeError(w, badRequest(DescRequestedTokenTypeUnsupported))
		return
	}
	st, u := a.checkOwnToken(r.Context(), subject[0], "Bearer")
	if st == nil {
		a.writeError(w, badRequest(DescInvalidToken))
		return
	}
	audiences := form["audience"]
	if len(audiences) == 0 {
		a.writeError(w, badRequest(DescAudienceRequired))
		return
	}
	// Keycloak resolves each audience to a client, checks that the clients
	// are enabled, then that chainbroker is in the subject token's aud.
	a.amu.Lock()
	var notFound, disabled bool
	for _, aud := range audiences {
		notFound = notFound || a.audState[aud] == AudienceClientMissing
		disabled = disabled || a.audState[aud] == AudienceClientDisabled
	}
	a.amu.Unlock()
	if notFound {
		a.writeError(w, newError(http.StatusBadRequest, errInvalidClient, DescAudienceNotFound))
		return
	}
	if disabled {
		a.writeError(w, newError(http.StatusBadRequest, errInvalidClient, DescClientDisabled))
		return
	}
	if !containsAny(st.claims.Aud, c.id) {
		a.writeError(w, newError(http.StatusForbidden, errAccessDenied, DescClientNotInAudience))
		return
	}
	var missing []string
	a.amu.Lock()
	for _, aud := range audiences {
		if !a.audiences[aud] {
			missing = append(missing, truncate(aud))
		}
	}
	a.amu.Unlock()
	if len(missing) > 0 {
		a.writeError(w, badRequest(DescAudienceNotAvailable+strings.Join(missing, ", ")))
		return
	}
	scope, oerr := grantScope(form.Get("scope"))
	if oerr != nil {
		a.writeError(w, oerr)
		return
	}
	out, err := a.mintAssertion(u, audiences, scope, c)
	a.writeExchanged(w, "token exchange", out, err, "Bearer", tokenTypeAccess)
}

// writeExchanged answers a token exchange (what, for the log) with the
// token out, of token_type tokenType and issued_token_type issuedType, or
// with 500 server_error when signing it failed (err).
func (a *DomainA) writeExchanged(w http.ResponseWriter, what string, out *issued, err error, tokenType, issuedType string) {
	if err != nil {
		a.log.Error(what+": signing failed", "err", err)
		a.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: out.token, ExpiresIn: out.expiresIn, TokenType: tokenType, Scope: out.scope,
		IssuedTokenType: issuedType,
	})
}

// checkOwnToken accepts an unexpired token signed by A's key with A's
// issuer, the typ claim typ ("" for any) and a known user; nil otherwise.
// The standard exchange wants an access token (typ Bearer); the ID-JAG
// exchange checks its ID token's typ itself, after this.
func (a *DomainA) checkOwnToken(ctx context.Context, raw, typ string) (*jwt, *user) {
	if _, err := a.self.Verify(ctx, raw); err != nil {
		return nil, nil
	}
	t, err := parseJWT(raw)
	if err != nil {
		return nil, nil
	}
	c := &t.claims
	if c.Iss != a.issuer || c.Exp == nil || time.Now().Unix() > *c.Exp || (typ != "" && c.Typ != typ) {
		return nil, nil
	}
	u := a.userBySub(c.Sub)
	if u == nil {
		return nil, nil
	}
	return t, u
}

// mintAssertion issues the exchanged token, applying the token-level
// misbehaviour.
func (a *DomainA) mintAssertion(u *user, audiences []string, scope string, c *client) (*issued, error) {
	m := a.misbehaviour()
	if m.ReuseAssertion {
		a.amu.Lock()
		last := a.last
		a.amu.Unlock()
		if last != nil {
			return last, nil
		}
	}
	now := time.Now()
	iat, exp := m.times(now, a.lifetime)
	var aud any = audiences
	if len(audiences) == 1 {
		aud = audiences[0]
	}
	if m.ExtraAudience != "" {
		aud = append(append([]string(nil), audiences...), m.ExtraAudience)
	}
	claims := a.accessClaims(u, aud, c.id, scope, iat, exp)
	m.applyClaims(claims, now)
	tok, err := a.signMisbehaving(claims, m)
	if err != nil {
		return nil, err
	}
	out := &issued{token: tok, expiresIn: max(exp.Unix()-now.Unix(), 0), scope: scope}
	a.amu.Lock()
	a.last = out
	a.amu.Unlock()
	return out, nil
}

// signMisbehaving signs with the published key, or as the misbehaviour asks.
func (a *DomainA) signMisbehaving(claims map[string]any, m Misbehaviour) (string, error) {
	typ := m.Typ
	if typ == "" {
		typ = token.TypeJWT
	}
	switch {
	case m.Alg == "none":
		return unsecuredJWT(claims, typ)
	case m.Alg != "":
		s, err := a.rogueSigner(m.Alg)
		if err != nil {
			return "", err
		}
		return s.Sign(claims, token.SignOptions{Typ: typ, Kid: a.signer.KeyID()})
	case m.UnknownKid:
		s, err := a.rogueSigner("RS256")
		if err != nil {
			return "", err
		}
		return s.Sign(claims, token.SignOptions{Typ: typ, Kid: "unpublished-" + s.KeyID()})
	case m.BadSignature:
		s, err := a.rogueSigner("RS256")
		if err != nil {
			return "", err
		}
		return s.Sign(claims, token.SignOptions{Typ: typ, Kid: a.signer.KeyID()})
	}
	return a.signer.Sign(claims, token.SignOptions{Typ: typ})
}

// rogueSigner returns an unpublished signer for alg, made on first use.
func (a *DomainA) rogueSigner(alg string) (*token.Signer, error) {
	a.amu.Lock()
	defer a.amu.Unlock()
	if s, ok := a.rogue[alg]; ok {
		return s, nil
	}
	var s *token.Signer
	var err error
	if strings.HasPrefix(alg, "HS") {
		secret := make([]byte, 64)
		_, _ = rand.Read(secret)
		s, err = token.NewHMACSigner(secret, alg, "rogue-"+strings.ToLower(alg))
	} else {
		s, err = token.GenerateSigner(alg)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: misbehaviour alg %q: %w", alg, err)
	}
	a.rogue[alg] = s
	return s, nil
}

// unsecuredJWT hand-crafts an "alg":"none" JWT (RFC 7519 §6): header,
// payload and an empty signature.
func unsecuredJWT(claims map[string]any, typ string) (string, error) {
	h, err := json.Marshal(map[string]string{"alg": "none", "typ": typ})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return b64url.EncodeToString(h) + "." + b64url.EncodeToString(p) + ".", nil
}
