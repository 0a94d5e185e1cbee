package broker

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// The ID-JAG profile (Chain.Profile ProfileIDJAG): the Identity Assertion
// JWT Authorization Grant of draft-ietf-oauth-identity-assertion-authz-grant,
// which Okta and Auth0 ship as Cross App Access, Keycloak 26.7 receives
// (feature identity-assertion-jwt) and MCP's Enterprise-Managed
// Authorization uses (docs/id-jag.md).
//
//   - Hop 1 (token exchange mode) asks the source for requested_token_type
//     urn:ietf:params:oauth:token-type:id-jag, audience the target's issuer,
//     the resources and the scopes wanted at the target (idJAGExchange).
//   - The grant is checked as the target's ID-JAG receiver will check it
//     (validate.go with idJAGTarget, then checkIDJAGAsked): typ exactly
//     oauth-id-jag+jwt, a single aud equal to the target's issuer, client_id
//     the broker's client at the target, iss, sub, jti, exp and iat present,
//     the target's lifetime bound, the response's issued_token_type id-jag,
//     and no scope or resource beyond what hop 1 asked for.
//   - Hop 2 is the JWT bearer grant with the broker's client authentication
//     (New refuses an id_jag chain whose target client is public).
//   - In issue mode the broker signs the ID-JAG itself (idJAGClaims).

// idJAGExchange adjusts hop 1 for an ID-JAG: the requested token type, the
// subject token type (the request's; else the source's when configured to
// something else than the access token default; else the ID token type,
// the draft's), and the scopes wanted at the target.
func idJAGExchange(te *oauth.TokenExchange, req *Request, src *Domain, chain *Chain) {
	te.RequestedTokenType = oauth.TokenTypeIDJAG
	if req.SubjectTokenType == "" && src.SubjectTokenType == oauth.TokenTypeAccessToken {
		te.SubjectTokenType = oauth.TokenTypeIDToken
	}
	te.Scope = idJAGScopes(req, chain)
}

// idJAGScopes are the scopes hop 1 of an ID-JAG chain asks for: those
// wanted at the target (the request's, else the chain's defaults) and the
// chain's exchange scopes.
func idJAGScopes(req *Request, chain *Chain) []string {
	out := slices.Clone(scopes(req.Scopes, chain.DefaultScopes))
	for _, s := range chain.ExchangeScopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// askedResources are the resources hop 1 asks for (chain's and request's).
func askedResources(req *Request, chain *Chain) []string {
	return append(slices.Clone(chain.Resource), req.Resources...)
}

// idJAGTarget is the target's policy as it applies to an ID-JAG: the aud
// must be its issuer (the draft's rule; not its token endpoint), the typ
// oauth-id-jag+jwt, and a jti always required.
func idJAGTarget(tgt *Domain) *Domain {
	t := *tgt
	t.Assertion.Audience = []string{tgt.Issuer}
	t.Assertion.AllowedTyp = []string{token.TypeIDJAG}
	t.Assertion.AllowReuse = false
	return &t
}

// checkIDJAGType is the profile's first rule: the receiver picks its
// validator by the exact typ (Keycloak: the provider id
// oauth-id-jag+jwt), so another spelling is not an ID-JAG.
func checkIDJAGType(tok *token.Token, tgt *Domain) *Error {
	if tok.Header.Typ != token.TypeIDJAG {
		return &Error{Reason: ReasonAssertionTypeInvalid, Hop: HopTokenExchange,
			Message: "the grant's typ " + quote(tok.Header.Typ) + " is not " + token.TypeIDJAG + ": " + tgt.Name + " takes ID-JAGs (profile id_jag)"}
	}
	return nil
}

// checkIDJAGAsked: the grant's scope and resource claims hold nothing hop 1
// did not ask for (the source may narrow them, never widen them).
func checkIDJAGAsked(tok *token.Token, askedScopes, askedRes []string) *Error {
	for _, s := range strings.Fields(tok.Claims.Scope) {
		if !slices.Contains(askedScopes, s) {
			return &Error{Reason: ReasonAssertionScopeWider, Hop: HopTokenExchange,
				Message: "the grant's scope holds " + quote(s) + ", which was not asked for (asked: " + quote(strings.Join(askedScopes, " ")) + ")"}
		}
	}
	res, ok := stringOrList(tok, "resource")
	if !ok {
		return &Error{Reason: ReasonAssertionMalformed, Hop: HopTokenExchange,
			Message: "the grant's resource is neither a string nor an array of strings"}
	}
	for _, v := range res {
		if !slices.Contains(askedRes, v) {
			return &Error{Reason: ReasonAssertionResourceWider, Hop: HopTokenExchange,
				Message: "the grant's resource names " + quote(v) + ", which was not asked for"}
		}
	}
	return nil
}

// stringOrList reads a claim that is a string or an array of strings;
// absent is an empty list.
func stringOrList(tok *token.Token, name string) ([]string, bool) {
	raw, ok := tok.Claim(name)
	if !ok || string(raw) == "null" {
		return nil, true
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list, true
	}
	return nil, false
}

// idJAGClaims turns the claims of a grant the broker signs (issue mode) into
// an ID-JAG's: aud the target's issuer, client_id the broker's client there,
// resource (one value as a string), act naming the calling agent, and
// cnf.jkt when the caller sent a DPoP proof. It returns the names added.
func (r *chainRun) idJAGClaims(claims map[string]any, tgt *Domain, chain *Chain) []string {
	claims["aud"] = tgt.Issuer
	claims["client_id"] = tgt.Creds.ClientID
	added := []string{"client_id"}
	switch res := askedResources(&r.req, chain); len(res) {
	case 0:
	case 1:
		claims["resource"] = res[0]
		added = append(added, "resource")
	default:
		claims["resource"] = res
		added = append(added, "resource")
	}
	if _, ok := claims["act"]; !ok {
		claims["act"] = map[string]string{"sub": r.req.Caller}
		added = append(added, "act")
		r.ev.Actor = truncate(r.req.Caller)
	}
	if r.dpop != nil {
		claims["cnf"] = map[string]string{"jkt": r.dpop.Thumbprint}
		added = append(added, "cnf")
	}
	return added
}
