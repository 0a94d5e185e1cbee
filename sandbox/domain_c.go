package sandbox

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// Domain C: a Keycloak 26.7 realm with the ID-JAG receiver
// (--features=identity-assertion-jwt), on 127.0.0.1:8383.
const (
	DefaultCAddr = "127.0.0.1:8383"
	DomainCName  = "domain-c"
	// BrokerSecretC is the broker's client secret at domain C.
	BrokerSecretC = "chainbroker-secret-c"
	// BrokerIdentityProviderAlias is the alias under which domain C may
	// trust the broker's own issuer (TrustBroker).
	BrokerIdentityProviderAlias = "chainbroker"
	// AliceSubC and BobSubC are alice's and bob's sub in domain C.
	AliceSubC = "e5f6a7b8-c9d0-4eb1-8a21-334455667788"
	BobSubC   = "f6a7b8c9-d0e1-4fc2-9b32-445566778899"
)

// Domain C, JWT authorization grant with an ID-JAG: 400 invalid_grant, in
// Keycloak's order (see DomainC).
const (
	// DescIDJAGClientID is Keycloak's refusal of an ID-JAG whose client_id
	// is not the authenticated client:
	// fmt.Sprintf(DescIDJAGClientID, claim, client), the claim "null" when
	// absent.
	DescIDJAGClientID = "client id in assertion : %s and client id in request header/body : %s"
	// DescIDJAGOnly (sandbox): a grant whose JOSE typ is not
	// oauth-id-jag+jwt. A Keycloak realm takes other grants with its default
	// validator; domain C plays a resource authorization server that takes
	// ID-JAGs only.
	DescIDJAGOnly = "Invalid token type: only oauth-id-jag+jwt grants are accepted"
	// DescGrantKeyMismatch (sandbox): an ID-JAG with cnf.jkt presented
	// without a DPoP proof of that key.
	DescGrantKeyMismatch = "DPoP proof key does not match the grant's cnf.jkt"
)

// DomainC is realm domain-c, a resource authorization server that trusts
// domain A (identity provider "domain-a", keys fetched from A's JWKS) and,
// once TrustBroker is called, the broker's own issuer (identity provider
// "chainbroker"), and accepts only ID-JAGs: the JWT authorization grant
// (RFC 7523) with typ oauth-id-jag+jwt, from the confidential client
// chainbroker (secret BrokerSecretC). Its users alice and bob are linked to
// A's alice and bob under both providers. It binds its access tokens to a
// DPoP proof sent with the grant, and serves userinfo, which takes a bound
// token only with a proof of the same key.
//
// The grant's checks, in Keycloak's order (JWTAuthorizationGrantType with
// the IDJWTAuthorizationGrantValidator): assertion, JWT, client (public,
// grant enabled, typ, client_id), iss, sub, identity provider (known,
// enabled, allowed), iat, times (Trust), jti, algorithm, audience,
// signature, cnf.jkt, replay, user, scope.
type DomainC struct {
	*Realm

	keyRefresh time.Duration

	grantOff atomic.Bool
	count    atomic.Int64
	accepted atomic.Int64
	seen     seenSet
	jtis     replayMemory

	cmu          sync.Mutex
	providers    map[string]*provider
	byIssuer     map[string]*provider
	allowedIdP   map[string]bool
	users        map[string]*user
	lastAccepted []byte
}

func newDomainC(ln net.Listener, addr string, lifetime, keyRefresh time.Duration, log *slog.Logger, a *DomainA) (*DomainC, error) {
	rl, err := newRealm(DomainCName, ln, addr, lifetime, log)
	if err != nil {
		return nil, err
	}
	if keyRefresh <= 0 {
		keyRefresh = DefaultKeyRefreshInterval
	}
	c := &DomainC{
		Realm:      rl,
		keyRefresh: keyRefresh,
		providers:  map[string]*provider{},
		byIssuer:   map[string]*provider{},
		allowedIdP: map[string]bool{},
		users: map[string]*user{
			Alice: {username: Alice, password: AlicePassword, sub: AliceSubC},
			Bob:   {username: Bob, password: BobPassword, sub: BobSubC},
		},
	}
	if err := c.TrustIdentityProvider(IdentityProviderAlias, a.Issuer(), a.JWKSURI(), DefaultTrust()); err != nil {
		return nil, err
	}
	c.providers[IdentityProviderAlias].links = map[string]string{AliceSubA: Alice, BobSubA: Bob}
	rl.clients[BrokerClientID] = &client{id: BrokerClientID, secret: BrokerSecretC, jwtGrant: true}
	// A public client, to show that public clients are refused.
	rl.clients[AgentClientID] = &client{id: AgentClientID, public: true}
	rl.grants[grantJWTBearer] = c.jwtBearer
	rl.discoGrants = []string{grantJWTBearer}
	rl.faultGrant = grantJWTBearer
	rl.countGrant = func(gt string) {
		if gt == grantJWTBearer {
			c.count.Add(1)
		}
	}
	if err := rl.serveUserinfo(c.userBySub); err != nil {
		return nil, err
	}
	return c, nil
}

// TrustIdentityProvider makes C trust an identity provider of type "JWT
// Authorization Grant" (as DomainB.TrustIdentityProvider): ID-JAGs whose iss
// equals issuer are verified with the keys at jwksURI and judged by trust
// (AllowReuse is ignored: an ID-JAG always needs a fresh jti). The provider
// is allowed for chainbroker; called again with a known alias, it keeps the
// provider's links.
func (c *DomainC) TrustIdentityProvider(alias, issuer, jwksURI string, trust Trust) error {
	if alias == "" || issuer == "" {
		return fmt.Errorf("sandbox: %s: identity provider alias and issuer are required", DomainCName)
	}
	u, err := url.Parse(jwksURI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("sandbox: %s: identity provider %q: JWKS URL %q is not an http(s) URL", DomainCName, alias, jwksURI)
	}
	p := &provider{
		alias:   alias,
		issuer:  issuer,
		jwksURI: jwksURI,
		keys: token.NewRemoteVerifier(token.RemoteKeys{
			URL:                jwksURI,
			HTTPClient:         c.httpClient(),
			MinRefreshInterval: c.keyRefresh,
		}, nil),
		trust: trust.normalized(),
		links: map[string]string{},
	}
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if other, ok := c.byIssuer[issuer]; ok && other.alias != alias {
		return fmt.Errorf("sandbox: %s: issuer %q already belongs to identity provider %q", DomainCName, issuer, other.alias)
	}
	if old, ok := c.providers[alias]; ok {
		delete(c.byIssuer, old.issuer)
		p.links = old.links
		if old.jwksURI == jwksURI {
			p.keys = old.keys
		}
	}
	c.providers[alias] = p
	c.byIssuer[issuer] = p
	c.allowedIdP[alias] = true
	return nil
}

// TrustBroker trusts the broker's issuer (issue mode: the broker signs the
// ID-JAGs, its keys at <issuer>/.well-known/jwks.json) as the identity
// provider "chainbroker", with Keycloak's defaults, and links A's alice and
// bob (the subjects the broker transcribes) to C's.
func (c *DomainC) TrustBroker(issuer string) error {
	if err := c.TrustIdentityProvider(BrokerIdentityProviderAlias, issuer,
		strings.TrimSuffix(issuer, "/")+"/.well-known/jwks.json", DefaultTrust()); err != nil {
		return err
	}
	c.cmu.Lock()
	defer c.cmu.Unlock()
	links := c.providers[BrokerIdentityProviderAlias].links
	links[AliceSubA], links[BobSubA] = Alice, Bob
	return nil
}

// SetTrust replaces the settings of the identity provider alias.
func (c *DomainC) SetTrust(alias string, t Trust) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	p, ok := c.providers[alias]
	if !ok {
		return fmt.Errorf("sandbox: %s has no identity provider %q", DomainCName, alias)
	}
	p.trust = t.normalized()
	return nil
}

// SetAllowedIdentityProviders sets the identity providers chainbroker may
// use; none gives DescIdPNotAllowed.
func (c *DomainC) SetAllowedIdentityProviders(aliases ...string) {
	m := make(map[string]bool, len(aliases))
	for _, a := range aliases {
		m[a] = true
	}
	c.cmu.Lock()
	c.allowedIdP = m
	c.cmu.Unlock()
}

// SetIdentityProviderEnabled enables (the default) or disables the identity
// provider alias (disabled: DescUnknownIssuer).
func (c *DomainC) SetIdentityProviderEnabled(alias string, enabled bool) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	p, ok := c.providers[alias]
	if !ok {
		return fmt.Errorf("sandbox: %s has no identity provider %q", DomainCName, alias)
	}
	p.disabled = !enabled
	return nil
}

// SetJWTAuthorizationGrant switches chainbroker's JWT authorization grant on
// (the default) or off (DescJWTGrantDisabled).
func (c *DomainC) SetJWTAuthorizationGrant(enabled bool) { c.grantOff.Store(!enabled) }

// SetUserEnabled enables (the default) or disables C's user username.
func (c *DomainC) SetUserEnabled(username string, enabled bool) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	u, ok := c.users[username]
	if !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainCName, username)
	}
	u.disabled = !enabled
	return nil
}

// SetRequiredActions sets C's user username's pending required actions.
func (c *DomainC) SetRequiredActions(username string, actions ...string) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	u, ok := c.users[username]
	if !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainCName, username)
	}
	u.requiredActions = append([]string(nil), actions...)
	return nil
}

// LinkFor links the subject sub of the identity provider alias to C's user
// username.
func (c *DomainC) LinkFor(alias, sub, username string) error {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	p, ok := c.providers[alias]
	if !ok {
		return fmt.Errorf("sandbox: %s has no identity provider %q", DomainCName, alias)
	}
	if _, ok := c.users[username]; !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainCName, username)
	}
	p.links[sub] = username
	return nil
}

// UnlinkFor removes the link of the identity provider alias's subject sub.
func (c *DomainC) UnlinkFor(alias, sub string) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if p, ok := c.providers[alias]; ok {
		delete(p.links, sub)
	}
}

// RememberJTI makes C remember the jti of issuer as used until the given
// time: an ID-JAG carrying it gets DescTokenReuse.
func (c *DomainC) RememberJTI(issuer, jti string, until time.Time) {
	c.jtis.mark(issuer+"\x00"+jti, until, time.Now())
}

// JWTBearerCount returns the number of JWT bearer grant requests received.
func (c *DomainC) JWTBearerCount() int64 { return c.count.Load() }

// AcceptedCount returns the number of ID-JAGs C accepted.
func (c *DomainC) AcceptedCount() int64 { return c.accepted.Load() }

// Saw reports whether C received a grant carrying this jti (among the last
// 65536), accepted or not.
func (c *DomainC) Saw(jti string) bool { return c.seen.has(jti) }

// LastAccepted returns the claims of the last ID-JAG C accepted, decoded
// afresh, or nil.
func (c *DomainC) LastAccepted() map[string]any {
	c.cmu.Lock()
	raw := c.lastAccepted
	c.cmu.Unlock()
	if raw == nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	return m
}

// userBySub finds a user of domain C by sub.
func (c *DomainC) userBySub(sub string) *user {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	for _, u := range c.users {
		if u.sub == sub {
			return u
		}
	}
	return nil
}

// jwtBearer is the JWT authorization grant with an ID-JAG; every refusal is
// 400 invalid_grant (invalid_scope for a scope beyond the grant's).
func (c *DomainC) jwtBearer(w http.ResponseWriter, r *http.Request, form url.Values, cl *client) {
	refuse := func(desc string) { c.writeError(w, badGrant(desc)) }
	vals, ok := form["assertion"]
	if !ok {
		refuse(DescMissingAssertion)
		return
	}
	raw := vals[0]
	t, err := parseJWT(raw)
	if err != nil {
		refuse(DescAssertionNotJWT)
		return
	}
	claims := &t.claims
	if claims.JTI != "" {
		c.seen.add(claims.JTI)
	}
	switch {
	case cl.public:
		refuse(DescPublicClient)
		return
	case !cl.jwtGrant || c.grantOff.Load():
		refuse(DescJWTGrantDisabled)
		return
	case t.typ != token.TypeIDJAG:
		refuse(DescIDJAGOnly)
		return
	case claims.ClientID != cl.id:
		inToken := truncate(claims.ClientID)
		if claims.ClientID == "" {
			inToken = "null"
		}
		refuse(fmt.Sprintf(DescIDJAGClientID, inToken, cl.id))
		return
	case claims.Iss == "":
		refuse(DescMissingIssuer)
		return
	case claims.Sub == "":
		refuse(DescMissingSubject)
		return
	}
	c.cmu.Lock()
	idp := c.byIssuer[claims.Iss]
	if idp != nil && idp.disabled {
		idp = nil
	}
	var trust Trust
	var idpAllowed bool
	if idp != nil {
		trust, idpAllowed = idp.trust, c.allowedIdP[idp.alias]
	}
	c.cmu.Unlock()
	switch {
	case idp == nil:
		refuse(DescUnknownIssuer)
		return
	case !idpAllowed:
		refuse(DescIdPNotAllowed)
		return
	case claims.Iat == nil:
		refuse(DescIssuedAtRequired)
		return
	}
	now := time.Now()
	policy := timePolicy{
		skew:        int64(trust.ClockSkew / time.Second),
		maxExp:      int64(trust.MaxAssertionAge / time.Second),
		maxLifetime: !trust.AgeOnly,
	}
	if d := checkTimes(claims, now.Unix(), policy); d != "" {
		refuse(d)
		return
	}
	if claims.JTI == "" {
		refuse(DescJTIRequired)
		return
	}
	algs := trust.AllowedAlgs
	if algs == nil {
		algs = token.DefaultAllowedAlgs
	}
	if !allowedAlg(t.alg, algs) || !allowedAlg(t.alg, token.DefaultAllowedAlgs) {
		refuse(DescInvalidSignatureAlg)
		return
	}
	if !containsAny(claims.Aud, c.issuer, c.TokenEndpoint()) {
		refuse(DescInvalidAudience)
		return
	}
	if len(claims.Aud) > 1 {
		refuse(DescMultipleAudiences)
		return
	}
	if _, err := idp.keys.Verify(r.Context(), raw); err != nil {
		refuse(DescInvalidSignature)
		return
	}
	jkt, err := cnfJKT(raw)
	if err != nil {
		refuse(DescAssertionNotJWT)
		return
	}
	if p := dpopProof(r); jkt != "" && (p == nil || p.Thumbprint != jkt) {
		refuse(DescGrantKeyMismatch)
		return
	}
	until := time.Unix(*claims.Exp+policy.skew+1, 0)
	if !c.jtis.mark(claims.Iss+"\x00"+claims.JTI, until, now) {
		refuse(DescTokenReuse)
		return
	}
	c.cmu.Lock()
	var u *user
	var disabled, notSetUp bool
	if name, ok := idp.links[claims.Sub]; ok {
		u = c.users[name]
		disabled, notSetUp = u.disabled, len(u.requiredActions) > 0
	}
	c.cmu.Unlock()
	switch {
	case u == nil:
		refuse(DescUserNotFound)
		return
	case disabled:
		refuse(DescUserDisabled)
		return
	case notSetUp:
		refuse(DescAccountNotSetUp)
		return
	}
	requested := form.Get("scope")
	if claims.Scope != "" {
		if requested == "" {
			requested = claims.Scope
		}
		var wider []string
		for _, s := range strings.Fields(requested) {
			if !containsAny(strings.Fields(claims.Scope), s) {
				wider = append(wider, truncate(s))
			}
		}
		if len(wider) > 0 {
			c.writeError(w, newError(http.StatusBadRequest, errInvalidScope, DescInvalidScope+strings.Join(wider, " ")))
			return
		}
	}
	scope, oerr := grantScope(requested)
	if oerr != nil {
		c.writeError(w, oerr)
		return
	}
	exp := now.Add(c.lifetime)
	out := map[string]any{
		"iss":                c.issuer,
		"sub":                u.sub,
		"aud":                "account",
		"azp":                cl.id,
		"typ":                "Bearer",
		"iat":                now.Unix(),
		"exp":                exp.Unix(),
		"jti":                newUUID(),
		"scope":              scope,
		"preferred_username": u.username,
	}
	tokenType := c.bindDPoP(r, out)
	tok, err := c.signer.Sign(out, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		c.log.Error("jwt bearer: signing failed", "err", err)
		c.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
		return
	}
	c.recordAccepted(raw)
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok, ExpiresIn: exp.Unix() - now.Unix(), TokenType: tokenType, Scope: scope,
	})
}

// recordAccepted keeps the claims of an accepted grant for LastAccepted.
func (c *DomainC) recordAccepted(raw string) {
	c.accepted.Add(1)
	parts := strings.SplitN(raw, ".", 3)
	claims, err := b64url.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return
	}
	c.cmu.Lock()
	c.lastAccepted = claims
	c.cmu.Unlock()
}
