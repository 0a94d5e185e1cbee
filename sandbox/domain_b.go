package sandbox

import (
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

// Trust is domain B's configuration of its identity provider domain-a for
// the JWT authorization grant. DefaultTrust gives Keycloak's defaults.
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
	// AllowedAlgs are the accepted signature algorithms; nil means
	// token.DefaultAllowedAlgs (asymmetric only, as Keycloak).
	AllowedAlgs []string
}

// DefaultTrust returns Keycloak's defaults: 300 s maximum assertion age, no
// clock skew, reuse forbidden, asymmetric algorithms.
func DefaultTrust() Trust {
	return Trust{MaxAssertionAge: 300 * time.Second}
}

// DomainB is realm domain-b: it trusts domain A as the identity provider
// "domain-a" (issuer and JWKS URI of domain A, keys fetched over HTTP),
// has users alice and bob linked to A's alice and bob, and a confidential
// client chainbroker allowed to use the JWT authorization grant (RFC 7523)
// with that identity provider. Its tokens carry B's own sub; it issues no
// refresh token.
type DomainB struct {
	*Realm

	idpIssuer string
	idpKeys   *token.Verifier

	count atomic.Int64
	seen  seenSet
	jtis  replayMemory

	bmu        sync.Mutex
	trust      Trust
	allowedIdP map[string]bool  // for client chainbroker
	users      map[string]*user // by username
	links      map[string]string
}

func newDomainB(ln net.Listener, addr string, lifetime time.Duration, log *slog.Logger, a *DomainA) (*DomainB, error) {
	rl, err := newRealm(DomainBName, ln, addr, lifetime, log)
	if err != nil {
		return nil, err
	}
	b := &DomainB{
		Realm:     rl,
		idpIssuer: a.Issuer(),
		// Every asymmetric alg is accepted by the verifier; Trust.AllowedAlgs
		// is checked before it, so it can change at run time.
		idpKeys: token.NewRemoteVerifier(token.RemoteKeys{
			URL:        a.JWKSURI(),
			HTTPClient: rl.httpClient(),
		}, nil),
		trust:      DefaultTrust(),
		allowedIdP: map[string]bool{IdentityProviderAlias: true},
		users: map[string]*user{
			Alice: {username: Alice, password: AlicePassword, sub: AliceSubB},
			Bob:   {username: Bob, password: BobPassword, sub: BobSubB},
		},
		links: map[string]string{AliceSubA: Alice, BobSubA: Bob},
	}
	rl.clients[BrokerClientID] = &client{id: BrokerClientID, secret: BrokerSecretB, jwtGrant: true}
	rl.grants[grantJWTBearer] = b.jwtBearer
	rl.discoGrants = []string{grantJWTBearer}
	rl.faultGrant = grantJWTBearer
	rl.countGrant = func(gt string) {
		if gt == grantJWTBearer {
			b.count.Add(1)
		}
	}
	return b, nil
}

// Trust returns the current identity provider settings.
func (b *DomainB) Trust() Trust {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	t := b.trust
	t.AllowedAlgs = append([]string(nil), t.AllowedAlgs...)
	return t
}

// SetTrust replaces the identity provider settings (a zero MaxAssertionAge
// means 300 s).
func (b *DomainB) SetTrust(t Trust) {
	if t.MaxAssertionAge <= 0 {
		t.MaxAssertionAge = DefaultTrust().MaxAssertionAge
	}
	t.AllowedAlgs = append([]string(nil), t.AllowedAlgs...)
	b.bmu.Lock()
	b.trust = t
	b.bmu.Unlock()
}

// SetAllowedIdentityProviders sets the identity providers the chainbroker
// client may use (initially just "domain-a"); none gives "Identity
// Provider is not allowed for the client".
func (b *DomainB) SetAllowedIdentityProviders(aliases ...string) {
	m := make(map[string]bool, len(aliases))
	for _, a := range aliases {
		m[a] = true
	}
	b.bmu.Lock()
	b.allowedIdP = m
	b.bmu.Unlock()
}

// Link links domain A's subject subA to B's user username (alice or bob).
func (b *DomainB) Link(subA, username string) error {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	if _, ok := b.users[username]; !ok {
		return fmt.Errorf("sandbox: %s has no user %q", DomainBName, username)
	}
	b.links[subA] = username
	return nil
}

// Unlink removes the link of domain A's subject subA: its assertions then
// get "User not found".
func (b *DomainB) Unlink(subA string) {
	b.bmu.Lock()
	delete(b.links, subA)
	b.bmu.Unlock()
}

// JWTBearerCount returns the number of JWT bearer grant requests received
// (whatever their outcome).
func (b *DomainB) JWTBearerCount() int64 { return b.count.Load() }

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
	case !c.jwtGrant:
		refuse(DescJWTGrantDisabled)
		return
	case cl.Iss == "":
		refuse(DescMissingIssuer)
		return
	case cl.Sub == "":
		refuse(DescMissingSubject)
		return
	case cl.Iss != b.idpIssuer:
		refuse(DescUnknownIssuer)
		return
	}
	b.bmu.Lock()
	trust, idpAllowed := b.trust, b.allowedIdP[IdentityProviderAlias]
	b.bmu.Unlock()
	if !idpAllowed {
		refuse(DescIdPNotAllowed)
		return
	}
	idJAG := strings.EqualFold(t.typ, token.TypeIDJAG)
	now := time.Now()
	policy := timePolicy{
		skew:        int64(trust.ClockSkew / time.Second),
		maxExp:      int64(trust.MaxAssertionAge / time.Second),
		maxLifetime: true,
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
	if t.typ != "" && !strings.EqualFold(t.typ, token.TypeJWT) && !idJAG {
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
	if _, err := b.idpKeys.Verify(r.Context(), raw); err != nil {
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
	if name, ok := b.links[cl.Sub]; ok {
		u = b.users[name]
	}
	b.bmu.Unlock()
	if u == nil {
		refuse(DescUserNotFound)
		return
	}
	scope, oerr := grantScope(form.Get("scope"))
	if oerr != nil {
		b.writeError(w, oerr)
		return
	}
	exp := now.Add(b.lifetime)
	tok, err := b.signer.Sign(map[string]any{
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
	}, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		b.log.Error("jwt bearer: signing failed", "err", err)
		b.writeError(w, newError(http.StatusInternalServerError, errServerError, "signing failed"))
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok, ExpiresIn: exp.Unix() - now.Unix(), TokenType: "Bearer", Scope: scope,
	})
}
