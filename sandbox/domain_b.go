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

// Trust is domain B's configuration of one identity provider for the JWT
// authorization grant. DefaultTrust gives Keycloak's defaults.
type Trust struct {
	// MaxAssertionAge is Keycloak's "maximum allowed assertion
	// expiration": how long after iat an assertion may be used (and how far
	// exp may be without iat). The sandbox also refuses exp - iat above it.
	MaxAssertionAge time.Duration
	// ClockSkew is the allowed clock skew.
	ClockSkew time.Duration
	// AllowReuse accepts assertions without jti and does not remember the
	// jtis seen (Keycloak's "Allow assertion reuse"). An ID-JAG still needs
	// a jti.
	AllowReuse bool
	// AgeOnly drops the sandbox's bound on exp - iat: only Keycloak's
	// checks of the age (now - iat) and, without iat, of exp - now apply.
	AgeOnly bool
	// AllowedAlgs are the accepted signature algorithms; nil means
	// token.DefaultAllowedAlgs (asymmetric only, as Keycloak).
	AllowedAlgs []string
}

// DefaultTrust returns Keycloak's defaults: 300 s maximum assertion age, no
// clock skew, reuse forbidden, asymmetric algorithms.
func DefaultTrust() Trust {
	return Trust{MaxAssertionAge: 300 * time.Second}
}

// normalized fills defaults and copies the slice.
func (t Trust) normalized() Trust {
	if t.MaxAssertionAge <= 0 {
		t.MaxAssertionAge = DefaultTrust().MaxAssertionAge
	}
	if t.AllowedAlgs != nil {
		t.AllowedAlgs = append([]string(nil), t.AllowedAlgs...)
	}
	return t
}

// DefaultKeyRefreshInterval is the minimum time between two fetches of an
// identity provider's JWKS triggered by an unknown kid: Keycloak's default
// (the public key storage's minTimeBetweenRequests, 10 s).
const DefaultKeyRefreshInterval = 10 * time.Second

// provider is an identity provider B trusts for the JWT authorization
// grant: Keycloak's identity provider of type "JWT Authorization Grant"
// (issuer, JWKS URL, and the settings in Trust). alias, issuer and keys are
// fixed; trust and links are guarded by DomainB.bmu.
type provider struct {
	alias   string
	issuer  string
	jwksURI string
	keys    *token.Verifier
	trust   Trust
	links   map[string]string // the provider's sub -> B's username
	// disabled hides the provider from the lookup by issuer
	// (SetIdentityProviderEnabled); twins are other providers' aliases
	// given the same issuer (AddIdentityProviderTwin).
	disabled bool
	twins    []string
}

// DomainB is realm domain-b: it trusts domain A as the identity provider
// "domain-a" (issuer and JWKS URI of domain A, keys fetched over HTTP),
// has users alice and bob linked to A's alice and bob, and a confidential
// client chainbroker allowed to use the JWT authorization grant (RFC 7523)
// with that identity provider. More identity providers can be trusted at
// run time (TrustIdentityProvider), each with its own keys, settings and
// user links; an assertion's iss picks the provider. Its tokens carry B's
// own sub; it issues no refresh token.
type DomainB struct {
	*Realm

	keyRefresh time.Duration // JWKS refresh rate limit for every provider

	grantOff atomic.Bool // SetJWTAuthorizationGrant(false)

	count    atomic.Int64
	accepted atomic.Int64
	seen     seenSet
	jtis     replayMemory

	bmu          sync.Mutex
	providers    map[string]*provider // by alias
	byIssuer     map[string]*provider
	allowedIdP   map[string]bool  // for client chainbroker
	users        map[string]*user // by username
	lastAccepted []byte           // claims (JSON) of the last accepted assertion
}

func newDomainB(ln net.Listener, addr string, lifetime, keyRefresh time.Duration, log *slog.Logger, a *DomainA) (*DomainB, error) {
	rl, err := newRealm(DomainBName, ln, addr, lifetime, log)
	if err != nil {
		return nil, err
	}
	if keyRefresh <= 0 {
		keyRefresh = DefaultKeyRefreshInterval
	}
	b := &DomainB{
		Realm:      rl,
		keyRefresh: keyRefresh,
		providers:  map[string]*provider{},
		byIssuer:   map[string]*provider{},
		allowedIdP: map[string]bool{},
		users: map[string]*user{
			Alice: {username: Alice, password: AlicePassword, sub: AliceSubB},
			Bob:   {username: Bob, password: BobPassword, sub: BobSubB},
		},
	}
	if err := b.TrustIdentityProvider(IdentityProviderAlias, a.Issuer(), a.JWKSURI(), DefaultTrust()); err != nil {
		return nil, err
	}
	b.providers[IdentityProviderAlias].links = map[string]string{AliceSubA: Alice, BobSubA: Bob}
	rl.clients[BrokerClientID] = &client{id: BrokerClientID, secret: BrokerSecretB, jwtGrant: true}
	rl.grants[grantJWTBearer] = b.jwtBearer
	if err := rl.serveUserinfo(b.userBySub); err != nil {
		return nil, err
	}
	rl.discoGrants = []string{grantJWTBearer}
	rl.faultGrant = grantJWTBearer
	rl.countGrant = func(gt string) {
		if gt == grantJWTBearer {
			b.count.Add(1)
		}
	}
	return b, nil
}

// TrustIdentityProvider makes B trust an identity provider for the JWT
// authorization grant, as Keycloak's identity provider of type "JWT
// Authorization Grant": assertions whose iss equals issuer are verified
// with the keys at jwksURI (fetched over HTTP when first needed, and again
// when an assertion names an unknown kid, at most once per
// Options.KeyRefreshInterval) and judged by trust; their sub is mapped to a
// B user by LinkFor(alias, ...). The provider is allowed for the
// chainbroker client.
//
// Called again with a known alias, it replaces that provider's issuer, keys
// and trust and keeps its links (for IdentityProviderAlias, the domain-a
// provider, SetTrust changes the trust alone). The issuer must not belong to
// another provider: Keycloak picks the provider by iss.
func (b *DomainB) TrustIdentityProvider(alias, issuer, jwksURI string, trust Trust) error {
	if alias == "" || issuer == "" {
		return fmt.Errorf("sandbox: %s: identity provider alias and issuer are required", DomainBName)
	}
	u, err := url.Parse(jwksURI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("sandbox: %s: identity provider %q: JWKS URL %q is not an http(s) URL", DomainBName, alias, jwksURI)
	}
	p := &provider{
		alias:   alias,
		issuer:  issuer,
		jwksURI: jwksURI,
		// Every asymmetric alg is accepted by the verifier; Trust.AllowedAlgs
		// is checked before it, so it can change at run time.
		keys: token.NewRemoteVerifier(token.RemoteKeys{
			URL:                jwksURI,
			HTTPClient:         b.httpClient(),
			MinRefreshInterval: b.keyRefresh,
		}, nil),
		trust: trust.normalized(),
		links: map[string]string{},
	}
	b.bmu.Lock()
	defer b.bmu.Unlock()
	if other, ok := b.byIssuer[issuer]; ok && other.alias != alias {
		return fmt.Errorf("sandbox: %s: issuer %q already belongs to identity provider %q", DomainBName, issuer, other.alias)
	}
	if old, ok := b.providers[alias]; ok {
		delete(b.byIssuer, old.issuer)
		p.links = old.links
		if old.jwksURI == jwksURI {
			p.keys = old.keys // keep the cached keys
		}
	}
	b.providers[alias] = p
	b.byIssuer[issuer] = p
	b.allowedIdP[alias] = true
	return nil
}

// Trust returns the settings of the domain-a identity provider.
func (b *DomainB) Trust() Trust {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	t := b.providers[IdentityProviderAlias].trust
	t.AllowedAlgs = append([]string(nil), t.AllowedAlgs...)
	return t
}

// SetTrust replaces the settings of the domain-a identity provider (a zero
// MaxAssertionAge means 300 s).
func (b *DomainB) SetTrust(t Trust) {
	t = t.normalized()
	b.bmu.Lock()
	b.providers[IdentityProviderAlias].trust = t
	b.bmu.Unlock()
}

// SetAllowedIdentityProviders sets the identity providers the chainbroker
// client may use (initially "domain-a" and those added by
// TrustIdentityProvider); none gives "Identity Provider is not allowed for
// the client".
func (b *DomainB) SetAllowedIdentityProviders(aliases ...string) {
	m := make(map[string]bool, len(aliases))
	for _, a := range aliases {
		m[a] = true
	}
	b.bmu.Lock()
	b.allowedIdP = m
	b.bmu.Unlock()
}

// SetJWTAuthorizationGrant switches the client chainbroker's "JWT
// Authorization Grant" capability (client attribute
// oauth2.jwt.authorization.grant.enabled) on (the default) or off; off, its
// grants get DescJWTGrantDisabled.
func (b *DomainB) SetJWTAuthorizationGrant(enabled bool) { b.grantOff.Store(!enabled) }

// SetIdentityProviderEnabled enables (the default) or disables the identity
// provider alias. Keycloak looks providers up among the enabled ones only:
// a disabled provider's assertions get DescUnknownIssuer.
func (b *DomainB) SetIdentityProviderEnabled(alias string, enabled bool) error {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	p, ok := b.providers[alias]
	if !ok {
		return fmt.Errorf("sandbox: %s has no identity provider %q", DomainBName, alias)
	}
	p.disabled = !enabled
	return nil
}

// AddIdentityProviderTwin adds a second enabled identity provider, twin,
// with the issuer of the provider alias (Keycloak lets an administrator do
// so): assertions of that issuer get DescMultipleIdPs + "[alias, twin]".
func (b *DomainB) AddIdentityProviderTwin(alias, twin string) error {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	p, ok := b.providers[alias]
	if !ok || twin == "" || b.providers[twin] != nil {
		return fmt.Errorf("sandbox: %s: no identity provider %q, or %q is taken", DomainBName, alias, twin)
	}
	p.twins = append(p.twins, twin)
	return nil
}

// SetUserEnabled enables (the default) or disables B's user username: a
// disabled user's grants get DescUserDisabled (Keycloak 26.5.3 and later:
// CVE-2026-1609).
func (b *DomainB) SetUserEnabled(username string, enabled bool) error {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	u, ok := b.users[username]
	if !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainBName, username)
	}
	u.disabled = !enabled
	return nil
}

// SetRequiredActions sets B's user username's pending required actions
// (e.g. "UPDATE_PASSWORD", "VERIFY_EMAIL"); with any, the user's grants get
// DescAccountNotSetUp. None clears them.
func (b *DomainB) SetRequiredActions(username string, actions ...string) error {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	u, ok := b.users[username]
	if !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainBName, username)
	}
	u.requiredActions = append([]string(nil), actions...)
	return nil
}

// RememberJTI makes B remember the jti of issuer as used until the given
// time, as if another client had presented it: an assertion carrying it
// gets DescTokenReuse (with Misbehaviour.FixedJTI, a replay only the target
// can see).
func (b *DomainB) RememberJTI(issuer, jti string, until time.Time) {
	b.jtis.mark(issuer+"\x00"+jti, until, time.Now())
}

// Link links domain A's subject subA to B's user username (alice or bob):
// LinkFor(IdentityProviderAlias, subA, username).
func (b *DomainB) Link(subA, username string) error {
	return b.LinkFor(IdentityProviderAlias, subA, username)
}

// LinkFor links the subject sub of the identity provider alias to B's user
// username (alice or bob). Links are per provider, as Keycloak's federated
// identities: the same sub from another provider is another identity.
func (b *DomainB) LinkFor(alias, sub, username string) error {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	p, ok := b.providers[alias]
	if !ok {
		return fmt.Errorf("sandbox: %s has no identity provider %q", DomainBName, alias)
	}
	if _, ok := b.users[username]; !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainBName, username)
	}
	p.links[sub] = username
	return nil
}

// Unlink removes the link of domain A's subject subA: its assertions then
// get "User not found".
func (b *DomainB) Unlink(subA string) { b.UnlinkFor(IdentityProviderAlias, subA) }

// UnlinkFor removes the link of the identity provider alias's subject sub.
func (b *DomainB) UnlinkFor(alias, sub string) {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	if p, ok := b.providers[alias]; ok {
		delete(p.links, sub)
	}
}

// JWTBearerCount returns the number of JWT bearer grant requests received
// (whatever their outcome).
func (b *DomainB) JWTBearerCount() int64 { return b.count.Load() }

// AcceptedCount returns the number of assertions B accepted (answered with
// an access token).
func (b *DomainB) AcceptedCount() int64 { return b.accepted.Load() }

// LastAccepted returns the claims of the last assertion B accepted, decoded
// from JSON afresh on each call (numbers are float64, aud a string or a
// []any as sent), or nil when none was accepted yet: a test can check the
// sub, the aud, an act claim... of what the broker presented.
func (b *DomainB) LastAccepted() map[string]any {
	b.bmu.Lock()
	raw := b.lastAccepted
	b.bmu.Unlock()
	if raw == nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	return m
}

// Saw reports whether B received an assertion carrying this jti (among
// the last 65536 received), whether or not it was accepted: a test can
// prove that an assertion never reached B.
func (b *DomainB) Saw(jti string) bool { return b.seen.has(jti) }

// jwtBearer is the JWT authorization grant, checks in Keycloak's order
// (see the Desc* constants). Every refusal is 400 invalid_grant.
func (b *DomainB) jwtBearer(w http.ResponseWriter, r *http.Request, form url.Values, c *client) {
	refuse := func(desc string) { b.writeError(w, badGrant(desc)) }
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
	cl := &t.claims
	if cl.JTI != "" {
		b.seen.add(cl.JTI)
	}
	switch {
	case c.public:
		refuse(DescPublicClient)
		return
	case !c.jwtGrant || b.grantOff.Load():
		refuse(DescJWTGrantDisabled)
		return
	case cl.Iss == "":
		refuse(DescMissingIssuer)
		return
	case cl.Sub == "":
		refuse(DescMissingSubject)
		return
	}
	b.bmu.Lock()
	idp := b.byIssuer[cl.Iss]
	if idp != nil && idp.disabled {
		idp = nil
	}
	var trust Trust
	var idpAllowed bool
	var twins []string
	if idp != nil {
		trust, idpAllowed, twins = idp.trust, b.allowedIdP[idp.alias], idp.twins
	}
	b.bmu.Unlock()
	if idp == nil {
		refuse(DescUnknownIssuer)
		return
	}
	if len(twins) > 0 {
		refuse(DescMultipleIdPs + "[" + strings.Join(append([]string{idp.alias}, twins...), ", ") + "]")
		return
	}
	if !idpAllowed {
		refuse(DescIdPNotAllowed)
		return
	}
	idJAG := strings.EqualFold(t.typ, token.TypeIDJAG)
	now := time.Now()
	policy := timePolicy{
		skew:        int64(trust.ClockSkew / time.Second),
		maxExp:      int64(trust.MaxAssertionAge / time.Second),
		maxLifetime: !trust.AgeOnly,
	}
	if d := checkTimes(cl, now.Unix(), policy); d != "" {
		refuse(d)
		return
	}
	reuseAllowed := trust.AllowReuse && !idJAG
	if cl.JTI == "" && !reuseAllowed {
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
	if t.typ != "" && !strings.EqualFold(t.typ, token.TypeJWT) && !strings.EqualFold(t.typ, TypeAccessTokenJWT) && !idJAG {
		refuse(DescInvalidTokenType)
		return
	}
	if !containsAny(cl.Aud, b.issuer, b.TokenEndpoint()) {
		refuse(DescInvalidAudience)
		return
	}
	if len(cl.Aud) > 1 {
		refuse(DescMultipleAudiences)
		return
	}
	if _, err := idp.keys.Verify(r.Context(), raw); err != nil {
		refuse(DescInvalidSignature)
		return
	}
	if idJAG {
		if cl.Iat == nil {
			refuse(DescIssuedAtRequired)
			return
		}
		if cl.ClientID != c.id {
			refuse(DescClientIDMismatch)
			return
		}
	}
	// The jti is remembered only once the assertion is known to be genuine
	// and addressed to B (Keycloak records it earlier, before the signature
	// check, so that forged tokens can burn jtis).
	if !reuseAllowed {
		until := time.Unix(*cl.Exp+policy.skew+1, 0)
		if !b.jtis.mark(cl.Iss+"\x00"+cl.JTI, until, now) {
			refuse(DescTokenReuse)
			return
		}
	}
	b.bmu.Lock()
	var u *user
	var disabled, notSetUp bool
	if name, ok := idp.links[cl.Sub]; ok {
		u = b.users[name]
		disabled, notSetUp = u.disabled, len(u.requiredActions) > 0
	}
	b.bmu.Unlock()
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
	scope, oerr := grantScope(form.Get("scope"))
	if oerr != nil {
		b.writeError(w, oerr)
		return
	}
	exp := now.Add(b.lifetime)
	claims := map[string]any{
		"iss":                b.issuer,
		"sub":                u.sub,
		"aud":                "account",
		"azp":                c.id,
		"typ":                "Bearer",
		"iat":                now.Unix(),
		"exp":                exp.Unix(),
		"jti":                newUUID(),
		"scope":              scope,
		"preferred_username": u.username,
	}
	tokenType := b.bindDPoP(r, claims) // DPoP (RFC 9449), as Keycloak
	tok, err := b.signer.Sign(claims, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		b.log.Error("jwt bearer: signing failed", "err", err)
		b.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
		return
	}
	b.recordAccepted(raw)
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok, ExpiresIn: exp.Unix() - now.Unix(), TokenType: tokenType, Scope: scope,
	})
}

// recordAccepted keeps the claims of an accepted assertion for LastAccepted.
func (b *DomainB) recordAccepted(raw string) {
	b.accepted.Add(1)
	parts := strings.SplitN(raw, ".", 3)
	claims, err := b64url.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return // parseJWT decoded it already
	}
	b.bmu.Lock()
	b.lastAccepted = claims
	b.bmu.Unlock()
}
