package sandbox

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// DomainB is realm domain-b: it trusts domain A as the identity provider
// "domain-a" (issuer and JWKS URI of domain A, keys fetched over HTTP),
// has users alice and bob linked to A's alice and bob, and a confidential
// client chainbroker allowed to use the JWT authorization grant (RFC 7523)
// with that identity provider. More identity providers can be trusted at
// run time (TrustIdentityProvider), each with its own keys, settings and
// user links; an assertion's iss picks the provider. Its tokens carry B's
// own sub; it issues no refresh token.
type DomainB struct {
	*receiver
}

func newDomainB(ln net.Listener, addr string, lifetime, keyRefresh time.Duration, log *slog.Logger, a *DomainA) (*DomainB, error) {
	spec := receiverSpec{
		name: DomainBName, secret: BrokerSecretB, aliceSub: AliceSubB, bobSub: BobSubB,
		// Keycloak's default validator, which takes ID-JAGs too.
		rules: grantRules{reuse: reuseUnlessIDJAG, token: tokenTypeRefusal, bound: idJAGClaimsRefusal},
	}
	rc, err := newReceiver(spec, ln, addr, lifetime, keyRefresh, log, a)
	if err != nil {
		return nil, err
	}
	return &DomainB{receiver: rc}, nil
}

// Trust returns the settings of the domain-a identity provider.
func (b *DomainB) Trust() Trust {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	t := b.providers[IdentityProviderAlias].trust
	t.AllowedAlgs = append([]string(nil), t.AllowedAlgs...)
	return t
}

// SetTrust replaces the settings of the domain-a identity provider (a zero
// MaxAssertionAge means 300 s).
func (b *DomainB) SetTrust(t Trust) {
	_ = b.setTrust(IdentityProviderAlias, t) // domain-a is never removed
}

// AddIdentityProviderTwin adds a second enabled identity provider, twin,
// with the issuer of the provider alias (Keycloak lets an administrator do
// so): assertions of that issuer get DescMultipleIdPs + "[alias, twin]".
func (b *DomainB) AddIdentityProviderTwin(alias, twin string) error {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	p, ok := b.providers[alias]
	if !ok || twin == "" || b.providers[twin] != nil {
		return fmt.Errorf("sandbox: %s: no identity provider %q, or %q is taken", DomainBName, alias, twin)
	}
	p.twins = append(p.twins, twin)
	return nil
}

// Link links domain A's subject subA to B's user username (alice or bob):
// LinkFor(IdentityProviderAlias, subA, username).
func (b *DomainB) Link(subA, username string) error {
	return b.LinkFor(IdentityProviderAlias, subA, username)
}

// Unlink removes the link of domain A's subject subA: its assertions then
// get "User not found".
func (b *DomainB) Unlink(subA string) { b.UnlinkFor(IdentityProviderAlias, subA) }

// isIDJAG tells whether the assertion is an ID-JAG (JOSE typ
// oauth-id-jag+jwt, in any case).
func isIDJAG(t *jwt) bool { return strings.EqualFold(t.typ, token.TypeIDJAG) }

// reuseUnlessIDJAG is B's rule for jti reuse: Trust.AllowReuse, but never
// for an ID-JAG.
func reuseUnlessIDJAG(t *jwt, trust Trust) bool { return trust.AllowReuse && !isIDJAG(t) }

// tokenTypeRefusal is B's check of the JOSE typ (after the algorithm): none,
// JWT, at+jwt or oauth-id-jag+jwt.
func tokenTypeRefusal(t *jwt) string {
	if t.typ != "" && !strings.EqualFold(t.typ, token.TypeJWT) && !strings.EqualFold(t.typ, TypeAccessTokenJWT) && !isIDJAG(t) {
		return DescInvalidTokenType
	}
	return ""
}

// idJAGClaimsRefusal is B's check of an ID-JAG's claims (after the
// signature): iat set, client_id the authenticated client.
func idJAGClaimsRefusal(_ *http.Request, _ string, t *jwt, c *client) string {
	switch {
	case !isIDJAG(t):
		return ""
	case t.claims.Iat == nil:
		return DescIssuedAtRequired
	case t.claims.ClientID != c.id:
		return DescClientIDMismatch
	}
	return ""
}
