package sandbox

import (
	"context"
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

// Trust is a receiver's (domain B's or C's) configuration of one identity
// provider for the JWT authorization grant. DefaultTrust gives Keycloak's
// defaults.
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

// timePolicy is how the trust judges an assertion's times.
func (t Trust) timePolicy() timePolicy {
	return timePolicy{
		skew:        int64(t.ClockSkew / time.Second),
		maxExp:      int64(t.MaxAssertionAge / time.Second),
		maxLifetime: !t.AgeOnly,
	}
}

// refusal judges an assertion by the trust, in Keycloak's order: its times,
// its jti (required unless reuseAllowed), its signature algorithm. It
// returns the refusal description, or "" when the assertion passes.
func (t Trust) refusal(a *jwt, now time.Time, reuseAllowed bool) string {
	if d := checkTimes(&a.claims, now.Unix(), t.timePolicy()); d != "" {
		return d
	}
	if a.claims.JTI == "" && !reuseAllowed {
		return DescJTIRequired
	}
	algs := t.AllowedAlgs
	if algs == nil {
		algs = token.DefaultAllowedAlgs
	}
	if !allowedAlg(a.alg, algs) || !allowedAlg(a.alg, token.DefaultAllowedAlgs) {
		return DescInvalidSignatureAlg
	}
	return ""
}

// DefaultKeyRefreshInterval is the minimum time between two fetches of an
// identity provider's JWKS triggered by an unknown kid: Keycloak's default
// (the public key storage's minTimeBetweenRequests, 10 s).
const DefaultKeyRefreshInterval = 10 * time.Second

// provider is an identity provider a receiver trusts for the JWT
// authorization grant: Keycloak's identity provider of type "JWT
// Authorization Grant" (issuer, JWKS URL, and the settings in Trust).
// alias, issuer and keys are fixed; trust and links are guarded by
// receiver.rmu.
type provider struct {
	alias   string
	issuer  string
	jwksURI string
	keys    *token.Verifier
	trust   Trust
	links   map[string]string // the provider's sub -> the receiver's username
	// disabled hides the provider from the lookup by issuer
	// (SetIdentityProviderEnabled); twins are other providers' aliases
	// given the same issuer (DomainB.AddIdentityProviderTwin).
	disabled bool
	twins    []string
}

// receiver is what domains B and C share: a Keycloak realm that takes the
// JWT authorization grant (RFC 7523) from its confidential client
// chainbroker, with assertions of the identity providers it trusts (picked
// by iss, each with its own keys, Trust and links to the realm's users
// alice and bob). It holds the providers, the users and their switches,
// the grant's counters and jti memory, and the grant itself with the
// Keycloak checks both realms make; DomainB and DomainC embed it, each with
// its own checks (grantRules) between the shared ones.
type receiver struct {
	*Realm

	keyRefresh time.Duration // JWKS refresh rate limit for every provider

	grantOff atomic.Bool // SetJWTAuthorizationGrant(false)

	count    atomic.Int64
	accepted atomic.Int64
	seen     seenSet
	jtis     replayMemory

	rmu          sync.Mutex
	providers    map[string]*provider // by alias
	byIssuer     map[string]*provider
	allowedIdP   map[string]bool  // for client chainbroker
	users        map[string]*user // by username
	lastAccepted []byte           // claims (JSON) of the last accepted assertion

	rules grantRules // the realm's own checks; fixed
}

// receiverSpec is what sets one receiver apart from the other at start.
type receiverSpec struct {
	name             string // the realm's name
	secret           string // chainbroker's client secret
	aliceSub, bobSub string // alice's and bob's sub in the realm
	rules            grantRules
}

// grantRules are a receiver's own checks of the JWT authorization grant,
// run between the shared ones (see receiver.jwtBearer), as Keycloak plugs a
// validator (the default one, or the ID-JAG one) into the grant. Each
// returns a refusal description, or ""; a nil rule passes.
type grantRules struct {
	// client follows the client checks (the ID-JAG's typ and client_id).
	client func(t *jwt, c *client) string
	// provider follows the lookup of the identity provider (iat required).
	provider func(t *jwt) string
	// reuse tells whether the trust lets this assertion's jti be absent
	// and reused; nil: never.
	reuse func(t *jwt, trust Trust) bool
	// token follows the algorithm check (the JOSE typ).
	token func(t *jwt) string
	// bound follows the signature check (ID-JAG claims, cnf.jkt).
	bound func(r *http.Request, raw string, t *jwt, c *client) string
	// scope is the scope to ask grantScope for, or an error; nil: the
	// request's scope parameter.
	scope func(form url.Values, t *jwt) (string, *oauthError)
}

// newReceiver makes the realm spec.name with its users alice and bob, the
// identity provider "domain-a" (A's issuer and JWKS, A's alice and bob
// linked to the realm's), the client chainbroker, the JWT authorization
// grant with spec.rules, and userinfo.
func newReceiver(spec receiverSpec, ln net.Listener, addr string, lifetime, keyRefresh time.Duration, log *slog.Logger, a *DomainA) (*receiver, error) {
	rl, err := newRealm(spec.name, ln, addr, lifetime, log)
	if err != nil {
		return nil, err
	}
	if keyRefresh <= 0 {
		keyRefresh = DefaultKeyRefreshInterval
	}
	rc := &receiver{
		Realm:      rl,
		keyRefresh: keyRefresh,
		providers:  map[string]*provider{},
		byIssuer:   map[string]*provider{},
		allowedIdP: map[string]bool{},
		users: map[string]*user{
			Alice: {username: Alice, password: AlicePassword, sub: spec.aliceSub},
			Bob:   {username: Bob, password: BobPassword, sub: spec.bobSub},
		},
		rules: spec.rules,
	}
	if err := rc.TrustIdentityProvider(IdentityProviderAlias, a.Issuer(), a.JWKSURI(), DefaultTrust()); err != nil {
		return nil, err
	}
	rc.providers[IdentityProviderAlias].links = map[string]string{AliceSubA: Alice, BobSubA: Bob}
	rl.clients[BrokerClientID] = &client{id: BrokerClientID, secret: spec.secret, jwtGrant: true}
	rl.grants[grantJWTBearer] = rc.jwtBearer
	if err := rl.serveUserinfo(rc.userBySub); err != nil {
		return nil, err
	}
	rl.discoGrants = []string{grantJWTBearer}
	rl.faultGrant = grantJWTBearer
	rl.countGrant = func(gt string) {
		if gt == grantJWTBearer {
			rc.count.Add(1)
		}
	}
	return rc, nil
}

// TrustIdentityProvider makes the realm trust an identity provider for the
// JWT authorization grant, as Keycloak's identity provider of type "JWT
// Authorization Grant": assertions whose iss equals issuer are verified
// with the keys at jwksURI (fetched over HTTP when first needed, and again
// when an assertion names an unknown kid, at most once per
// Options.KeyRefreshInterval) and judged by trust; their sub is mapped to
// one of the realm's users by LinkFor(alias, ...). The provider is allowed
// for the chainbroker client.
//
// Called again with a known alias, it replaces that provider's issuer, keys
// and trust and keeps its links (SetTrust changes the trust alone). The
// issuer must not belong to another provider: Keycloak picks the provider
// by iss.
func (rc *receiver) TrustIdentityProvider(alias, issuer, jwksURI string, trust Trust) error {
	if alias == "" || issuer == "" {
		return fmt.Errorf("sandbox: %s: identity provider alias and issuer are required", rc.name)
	}
	u, err := url.Parse(jwksURI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("sandbox: %s: identity provider %q: JWKS URL %q is not an http(s) URL", rc.name, alias, jwksURI)
	}
	p := &provider{
		alias:   alias,
		issuer:  issuer,
		jwksURI: jwksURI,
		// Every asymmetric alg is accepted by the verifier; Trust.AllowedAlgs
		// is checked before it, so it can change at run time.
		keys: token.NewRemoteVerifier(token.RemoteKeys{
			URL:                jwksURI,
			HTTPClient:         rc.httpClient(),
			MinRefreshInterval: rc.keyRefresh,
		}, nil),
		trust: trust.normalized(),
		links: map[string]string{},
	}
	rc.rmu.Lock()
	defer rc.rmu.Unlock()
	if other, ok := rc.byIssuer[issuer]; ok && other.alias != alias {
		return fmt.Errorf("sandbox: %s: issuer %q already belongs to identity provider %q", rc.name, issuer, other.alias)
	}
	if old, ok := rc.providers[alias]; ok {
		delete(rc.byIssuer, old.issuer)
		p.links = old.links
		if old.jwksURI == jwksURI {
			p.keys = old.keys // keep the cached keys
		}
	}
	rc.providers[alias] = p
	rc.byIssuer[issuer] = p
	rc.allowedIdP[alias] = true
	return nil
}

// withProvider calls f with the identity provider alias, under rmu.
func (rc *receiver) withProvider(alias string, f func(p *provider) error) error {
	rc.rmu.Lock()
	defer rc.rmu.Unlock()
	p, ok := rc.providers[alias]
	if !ok {
		return fmt.Errorf("sandbox: %s has no identity provider %q", rc.name, alias)
	}
	return f(p)
}

// withUser calls f with the user username, under rmu.
func (rc *receiver) withUser(username string, f func(u *user)) error {
	rc.rmu.Lock()
	defer rc.rmu.Unlock()
	u, ok := rc.users[username]
	if !ok {
		return fmt.Errorf("sandbox: %s has no user %q", rc.name, username)
	}
	f(u)
	return nil
}

// setTrust replaces the settings of the identity provider alias (a zero
// MaxAssertionAge means 300 s).
func (rc *receiver) setTrust(alias string, t Trust) error {
	t = t.normalized()
	return rc.withProvider(alias, func(p *provider) error {
		p.trust = t
		return nil
	})
}

// SetAllowedIdentityProviders sets the identity providers the chainbroker
// client may use (initially "domain-a" and those added by
// TrustIdentityProvider); none gives DescIdPNotAllowed ("Identity Provider
// is not allowed for the client").
func (rc *receiver) SetAllowedIdentityProviders(aliases ...string) {
	m := make(map[string]bool, len(aliases))
	for _, a := range aliases {
		m[a] = true
	}
	rc.rmu.Lock()
	rc.allowedIdP = m
	rc.rmu.Unlock()
}

// SetJWTAuthorizationGrant switches the client chainbroker's "JWT
// Authorization Grant" capability (client attribute
// oauth2.jwt.authorization.grant.enabled) on (the default) or off; off, its
// grants get DescJWTGrantDisabled.
func (rc *receiver) SetJWTAuthorizationGrant(enabled bool) { rc.grantOff.Store(!enabled) }

// SetIdentityProviderEnabled enables (the default) or disables the identity
// provider alias. Keycloak looks providers up among the enabled ones only:
// a disabled provider's assertions get DescUnknownIssuer.
func (rc *receiver) SetIdentityProviderEnabled(alias string, enabled bool) error {
	return rc.withProvider(alias, func(p *provider) error {
		p.disabled = !enabled
		return nil
	})
}

// SetUserEnabled enables (the default) or disables the realm's user
// username: a disabled user's grants get DescUserDisabled (Keycloak 26.5.3
// and later: CVE-2026-1609).
func (rc *receiver) SetUserEnabled(username string, enabled bool) error {
	return rc.withUser(username, func(u *user) { u.disabled = !enabled })
}

// SetRequiredActions sets the realm's user username's pending required
// actions (e.g. "UPDATE_PASSWORD", "VERIFY_EMAIL"); with any, the user's
// grants get DescAccountNotSetUp. None clears them.
func (rc *receiver) SetRequiredActions(username string, actions ...string) error {
	actions = append([]string(nil), actions...)
	return rc.withUser(username, func(u *user) { u.requiredActions = actions })
}

// LinkFor links the subject sub of the identity provider alias to the
// realm's user username (alice or bob). Links are per provider, as
// Keycloak's federated identities: the same sub from another provider is
// another identity.
func (rc *receiver) LinkFor(alias, sub, username string) error {
	return rc.withProvider(alias, func(p *provider) error {
		if _, ok := rc.users[username]; !ok {
			return fmt.Errorf("sandbox: %s has no user %q", rc.name, username)
		}
		p.links[sub] = username
		return nil
	})
}

// UnlinkFor removes the link of the identity provider alias's subject sub:
// its assertions then get DescUserNotFound.
func (rc *receiver) UnlinkFor(alias, sub string) {
	rc.rmu.Lock()
	defer rc.rmu.Unlock()
	if p, ok := rc.providers[alias]; ok {
		delete(p.links, sub)
	}
}

// jtiKey is the replay memory's key of an issuer's jti.
func jtiKey(issuer, jti string) string { return issuer + "\x00" + jti }

// RememberJTI makes the realm remember the jti of issuer as used until the
// given time, as if another client had presented it: an assertion carrying
// it gets DescTokenReuse (with Misbehaviour.FixedJTI, a replay only the
// target can see).
func (rc *receiver) RememberJTI(issuer, jti string, until time.Time) {
	rc.jtis.mark(jtiKey(issuer, jti), until, time.Now())
}

// JWTBearerCount returns the number of JWT bearer grant requests received
// (whatever their outcome).
func (rc *receiver) JWTBearerCount() int64 { return rc.count.Load() }

// AcceptedCount returns the number of assertions the realm accepted
// (answered with an access token).
func (rc *receiver) AcceptedCount() int64 { return rc.accepted.Load() }

// LastAccepted returns the claims of the last assertion the realm accepted,
// decoded from JSON afresh on each call (numbers are float64, aud a string
// or a []any as sent), or nil when none was accepted yet: a test can check
// the sub, the aud, an act claim... of what the broker presented.
func (rc *receiver) LastAccepted() map[string]any {
	rc.rmu.Lock()
	raw := rc.lastAccepted
	rc.rmu.Unlock()
	if raw == nil {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	return m
}

// Saw reports whether the realm received an assertion carrying this jti
// (among the last 65536 received), whether or not it was accepted: a test
// can prove that an assertion never reached it.
func (rc *receiver) Saw(jti string) bool { return rc.seen.has(jti) }

// userBySub finds a user of the realm by sub.
func (rc *receiver) userBySub(sub string) *user {
	rc.rmu.Lock()
	defer rc.rmu.Unlock()
	return userWithSub(rc.users, sub)
}

// openGrant makes the grant's first checks, in Keycloak's order: an
// assertion parameter that is a JWT (its jti noted for Saw), from a client
// that may use the grant: not public, with the "JWT Authorization Grant"
// capability (see SetJWTAuthorizationGrant). desc is the refusal, or "".
func (rc *receiver) openGrant(form url.Values, c *client) (raw string, t *jwt, desc string) {
	vals, ok := form["assertion"]
	if !ok {
		return "", nil, DescMissingAssertion
	}
	raw = vals[0]
	t, err := parseJWT(raw)
	if err != nil {
		return "", nil, DescAssertionNotJWT
	}
	if t.claims.JTI != "" {
		rc.seen.add(t.claims.JTI)
	}
	switch {
	case c.public:
		return "", nil, DescPublicClient
	case !c.jwtGrant || rc.grantOff.Load():
		return "", nil, DescJWTGrantDisabled
	}
	return raw, t, ""
}

// jwtBearer is the JWT authorization grant: the checks both receivers
// make, in Keycloak's order, with the realm's own rules between them:
// assertion, JWT, client (public, grant enabled), rules.client, iss, sub,
// identity provider (known and enabled, one with that issuer, allowed),
// rules.provider, times (Trust), jti, algorithm, rules.token, audience,
// signature, rules.bound, replay, user (linked, enabled, set up), scope
// (rules.scope). Every refusal is 400 invalid_grant, but for the scope's.
func (rc *receiver) jwtBearer(w http.ResponseWriter, r *http.Request, form url.Values, c *client) {
	refuse := func(desc string) { rc.writeError(w, badGrant(desc)) }
	raw, t, desc := rc.openGrant(form, c)
	if desc == "" && rc.rules.client != nil {
		desc = rc.rules.client(t, c)
	}
	if desc != "" {
		refuse(desc)
		return
	}
	cl := &t.claims
	idp, trust, desc := rc.identityProvider(cl)
	if desc == "" && rc.rules.provider != nil {
		desc = rc.rules.provider(t)
	}
	if desc != "" {
		refuse(desc)
		return
	}
	now := time.Now()
	reuseAllowed := rc.rules.reuse != nil && rc.rules.reuse(t, trust)
	desc = trust.refusal(t, now, reuseAllowed)
	if desc == "" && rc.rules.token != nil {
		desc = rc.rules.token(t)
	}
	if desc == "" {
		desc = rc.audienceSignatureRefusal(r.Context(), idp, raw, cl.Aud)
	}
	if desc == "" && rc.rules.bound != nil {
		desc = rc.rules.bound(r, raw, t, c)
	}
	// The jti is remembered only once the assertion is known to be genuine
	// and addressed to the realm (Keycloak records it earlier, before the
	// signature check, so that forged tokens can burn jtis).
	if desc == "" && !reuseAllowed && !rc.markJTI(cl, trust, now) {
		desc = DescTokenReuse
	}
	var u *user
	if desc == "" {
		u, desc = rc.linkedUser(idp, cl.Sub)
	}
	if desc != "" {
		refuse(desc)
		return
	}
	requested := form.Get("scope")
	if rc.rules.scope != nil {
		var oerr *oauthError
		if requested, oerr = rc.rules.scope(form, t); oerr != nil {
			rc.writeError(w, oerr)
			return
		}
	}
	rc.issue(w, r, c, u, requested, raw, now)
}

// identityProvider finds the assertion's identity provider, in Keycloak's
// order: the assertion names its issuer and subject, the issuer is an
// enabled provider's, of one provider only, allowed for chainbroker. desc
// is the refusal, or "".
func (rc *receiver) identityProvider(cl *jwtClaims) (idp *provider, trust Trust, desc string) {
	switch {
	case cl.Iss == "":
		return nil, Trust{}, DescMissingIssuer
	case cl.Sub == "":
		return nil, Trust{}, DescMissingSubject
	}
	rc.rmu.Lock()
	idp = rc.byIssuer[cl.Iss]
	if idp != nil && idp.disabled {
		idp = nil
	}
	var allowed bool
	var twins []string
	if idp != nil {
		trust, allowed, twins = idp.trust, rc.allowedIdP[idp.alias], idp.twins
	}
	rc.rmu.Unlock()
	switch {
	case idp == nil:
		return nil, Trust{}, DescUnknownIssuer
	case len(twins) > 0:
		return nil, Trust{}, DescMultipleIdPs + "[" + strings.Join(append([]string{idp.alias}, twins...), ", ") + "]"
	case !allowed:
		return nil, Trust{}, DescIdPNotAllowed
	}
	return idp, trust, ""
}

// audienceSignatureRefusal is Keycloak's check, in its order, that the
// assertion is addressed to this realm alone (its issuer or token
// endpoint) and signed with the provider's keys.
func (rc *receiver) audienceSignatureRefusal(ctx context.Context, idp *provider, raw string, aud []string) string {
	if !containsAny(aud, rc.issuer, rc.TokenEndpoint()) {
		return DescInvalidAudience
	}
	if len(aud) > 1 {
		return DescMultipleAudiences
	}
	if _, err := idp.keys.Verify(ctx, raw); err != nil {
		return DescInvalidSignature
	}
	return ""
}

// markJTI remembers the assertion's jti until its exp (plus the trust's
// clock skew); false when it was used already. The assertion's exp is
// known to be set (Trust.refusal).
func (rc *receiver) markJTI(cl *jwtClaims, trust Trust, now time.Time) bool {
	until := time.Unix(*cl.Exp+trust.timePolicy().skew+1, 0)
	return rc.jtis.mark(jtiKey(cl.Iss, cl.JTI), until, now)
}

// linkedUser finds the user the identity provider's subject sub is linked
// to; desc is the refusal when there is none or the user may not sign in
// (disabled, required actions pending).
func (rc *receiver) linkedUser(idp *provider, sub string) (u *user, desc string) {
	rc.rmu.Lock()
	var disabled, notSetUp bool
	if name, ok := idp.links[sub]; ok {
		u = rc.users[name]
		disabled, notSetUp = u.disabled, len(u.requiredActions) > 0
	}
	rc.rmu.Unlock()
	switch {
	case u == nil:
		return nil, DescUserNotFound
	case disabled:
		return nil, DescUserDisabled
	case notSetUp:
		return nil, DescAccountNotSetUp
	}
	return u, ""
}

// issue answers an accepted assertion raw of client c for user u with an
// access token of the realm (the user's sub there, aud account, the requested
// scope), bound to the request's DPoP proof if any, as Keycloak does.
func (rc *receiver) issue(w http.ResponseWriter, r *http.Request, c *client, u *user, requested, raw string, now time.Time) {
	scope, oerr := grantScope(requested)
	if oerr != nil {
		rc.writeError(w, oerr)
		return
	}
	exp := now.Add(rc.lifetime)
	claims := rc.accessClaims(u, "account", c.id, scope, now, exp)
	tokenType := rc.bindDPoP(r, claims) // DPoP (RFC 9449), as Keycloak
	tok, err := rc.signer.Sign(claims, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		rc.log.Error("jwt bearer: signing failed", "err", err)
		rc.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
		return
	}
	rc.recordAccepted(raw)
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok, ExpiresIn: exp.Unix() - now.Unix(), TokenType: tokenType, Scope: scope,
	})
}

// recordAccepted keeps the claims of an accepted assertion for LastAccepted.
func (rc *receiver) recordAccepted(raw string) {
	rc.accepted.Add(1)
	parts := strings.SplitN(raw, ".", 3)
	claims, err := b64url.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return // parseJWT decoded it already
	}
	rc.rmu.Lock()
	rc.lastAccepted = claims
	rc.rmu.Unlock()
}
