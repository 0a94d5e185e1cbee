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
	spec := receiverSpec{
		name: DomainCName, secret: BrokerSecretC, aliceSub: AliceSubC, bobSub: BobSubC,
		// Keycloak's ID-JAG validator, without the default one.
		rules: grantRules{client: idJAGRefusal, provider: issuedAtRefusal, bound: grantKeyRefusal, scope: idJAGScope},
	}
	rc, err := newReceiver(spec, ln, addr, lifetime, keyRefresh, log, a)
	if err != nil {
		return nil, err
	}
	// A public client, to show that public clients are refused.
	rc.clients[AgentClientID] = &client{id: AgentClientID, public: true}
	return &DomainC{receiver: rc}, nil
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

// issuedAtRefusal is C's check, after the identity provider's, that the
// ID-JAG has an iat.
func issuedAtRefusal(t *jwt) string {
	if t.claims.Iat == nil {
		return DescIssuedAtRequired
	}
	return ""
}

// grantKeyRefusal is C's check, after the signature, of a sender-constrained
// ID-JAG: with cnf.jkt, the grant needs a DPoP proof of that key.
func grantKeyRefusal(r *http.Request, raw string, _ *jwt, _ *client) string {
	jkt, err := cnfJKT(raw)
	if err != nil {
		return DescAssertionNotJWT
	}
	if p := dpopProof(r); jkt != "" && (p == nil || p.Thumbprint != jkt) {
		return DescGrantKeyMismatch
	}
	return ""
}

// idJAGScope is the scope C grants: the request's, else the ID-JAG's, and
// none beyond the ID-JAG's (invalid_scope) when it has one.
func idJAGScope(form url.Values, t *jwt) (string, *oauthError) {
	requested, granted := form.Get("scope"), t.claims.Scope
	if granted == "" {
		return requested, nil
	}
	if requested == "" {
		requested = granted
	}
	var wider []string
	for _, s := range strings.Fields(requested) {
		if !containsAny(strings.Fields(granted), s) {
			wider = append(wider, truncate(s))
		}
	}
	if len(wider) > 0 {
		return "", newError(http.StatusBadRequest, errInvalidScope, DescInvalidScope+strings.Join(wider, " "))
	}
	return requested, nil
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
