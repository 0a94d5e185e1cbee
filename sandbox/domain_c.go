package sandbox

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
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
// signature, cnf.jkt, replay, user, scope. Trust.AllowReuse is ignored: an
// ID-JAG always needs a fresh jti.
type DomainC struct {
	*receiver
}

func newDomainC(ln net.Listener, addr string, lifetime, keyRefresh time.Duration, log *slog.Logger, a *DomainA) (*DomainC, error) {
	rc, err := newReceiver(receiverSpec{name: DomainCName, secret: BrokerSecretC, aliceSub: AliceSubC, bobSub: BobSubC},
		ln, addr, lifetime, keyRefresh, log, a)
	if err != nil {
		return nil, err
	}
	c := &DomainC{receiver: rc}
	// A public client, to show that public clients are refused.
	rc.clients[AgentClientID] = &client{id: AgentClientID, public: true}
	rc.grants[grantJWTBearer] = c.jwtBearer
	return c, nil
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
	c.rmu.Lock()
	defer c.rmu.Unlock()
	links := c.providers[BrokerIdentityProviderAlias].links
	links[AliceSubA], links[BobSubA] = Alice, Bob
	return nil
}

// SetTrust replaces the settings of the identity provider alias (a zero
// MaxAssertionAge means 300 s).
func (c *DomainC) SetTrust(alias string, t Trust) error { return c.setTrust(alias, t) }

// jwtBearer is the JWT authorization grant with an ID-JAG; every refusal is
// 400 invalid_grant (invalid_scope for a scope beyond the grant's).
func (c *DomainC) jwtBearer(w http.ResponseWriter, r *http.Request, form url.Values, cl *client) {
	refuse := func(desc string) { c.writeError(w, badGrant(desc)) }
	raw, t, desc := c.openGrant(form, cl)
	if desc != "" {
		refuse(desc)
		return
	}
	claims := &t.claims
	if desc := cmp.Or(idJAGRefusal(t, cl), issuerSubjectRefusal(claims)); desc != "" {
		refuse(desc)
		return
	}
	idp, trust, idpAllowed, _ := c.providerFor(claims.Iss)
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
	if desc := trust.refusal(t, now, false); desc != "" {
		refuse(desc)
		return
	}
	if desc := c.audienceSignatureRefusal(r.Context(), idp, raw, claims.Aud); desc != "" {
		refuse(desc)
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
	if !c.markJTI(claims, trust, now) {
		refuse(DescTokenReuse)
		return
	}
	u, desc := c.linkedUser(idp, claims.Sub)
	if desc != "" {
		refuse(desc)
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
	c.issue(w, r, cl, u, requested, raw, now)
}

// idJAGRefusal is Keycloak's ID-JAG validator's check of the grant: JOSE
// typ oauth-id-jag+jwt, and client_id the authenticated client.
func idJAGRefusal(t *jwt, cl *client) string {
	switch {
	case t.typ != token.TypeIDJAG:
		return DescIDJAGOnly
	case t.claims.ClientID != cl.id:
		inToken := truncate(t.claims.ClientID)
		if t.claims.ClientID == "" {
			inToken = "null"
		}
		return fmt.Sprintf(DescIDJAGClientID, inToken, cl.id)
	}
	return ""
}
