package sandbox

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	rc, err := newReceiver(receiverSpec{name: DomainBName, secret: BrokerSecretB, aliceSub: AliceSubB, bobSub: BobSubB},
		ln, addr, lifetime, keyRefresh, log, a)
	if err != nil {
		return nil, err
	}
	b := &DomainB{receiver: rc}
	rc.grants[grantJWTBearer] = b.jwtBearer
	return b, nil
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

// jwtBearer is the JWT authorization grant, checks in Keycloak's order
// (see the Desc* constants). Every refusal is 400 invalid_grant.
func (b *DomainB) jwtBearer(w http.ResponseWriter, r *http.Request, form url.Values, c *client) {
	refuse := func(desc string) { b.writeError(w, badGrant(desc)) }
	raw, t, desc := b.openGrant(form, c)
	if desc != "" {
		refuse(desc)
		return
	}
	cl := &t.claims
	if desc := issuerSubjectRefusal(cl); desc != "" {
		refuse(desc)
		return
	}
	idp, trust, idpAllowed, twins := b.providerFor(cl.Iss)
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
	reuseAllowed := trust.AllowReuse && !idJAG
	if desc := trust.refusal(t, now, reuseAllowed); desc != "" {
		refuse(desc)
		return
	}
	if t.typ != "" && !strings.EqualFold(t.typ, token.TypeJWT) && !strings.EqualFold(t.typ, TypeAccessTokenJWT) && !idJAG {
		refuse(DescInvalidTokenType)
		return
	}
	if desc := b.audienceSignatureRefusal(r.Context(), idp, raw, cl.Aud); desc != "" {
		refuse(desc)
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
	if !reuseAllowed && !b.markJTI(cl, trust, now) {
		refuse(DescTokenReuse)
		return
	}
	u, desc := b.linkedUser(idp, cl.Sub)
	if desc != "" {
		refuse(desc)
		return
	}
	b.issue(w, r, c, u, form.Get("scope"), raw, now)
}
