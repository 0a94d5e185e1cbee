package broker

import (
	"context"

	"github.com/chainbroker/chainbroker/oauth"
)

// jwtBearer performs hop 2: the RFC 7523 JWT bearer grant at the target.
func (r *chainRun) jwtBearer(ctx context.Context, tgt *Domain, chain *Chain, assertion string) (*Result, error) {
	grant := oauth.JWTBearer{Assertion: assertion, Scope: scopes(r.req.Scopes, chain.DefaultScopes)}
	resp, err := r.call(ctx, tgt, HopJWTBearer, oauth.GrantTypeJWTBearer, grant.Form(), dpopHeader(r.req.DPoPProof))
	if n := len(r.ev.Hops); n > 0 && r.ev.Hops[n-1].GrantType == oauth.GrantTypeJWTBearer {
		r.ev.Hops[n-1].AssertionJTIHash = r.ev.AssertionJTIHash
	}
	if e, ok := AsError(err); ok && e.Hop == HopJWTBearer && e.Upstream != nil && e.Reason != ReasonUpstreamUnavailable && e.Reason != ReasonDPoPNonceRequired {
		// The caller never saw this grant: say whose it is.
		e.Message = tgt.Name + " refused the grant the broker obtained from " + r.ev.SourceDomain + " (hop 2, jwt_bearer): " + upstreamSummary(e.Upstream)
	}
	if err != nil {
		return nil, err
	}
	if err := r.checkBinding(tgt, resp); err != nil {
		return nil, err
	}
	issued := resp.IssuedTokenType
	if issued == "" {
		issued = oauth.TokenTypeAccessToken
	}
	return &Result{
		AccessToken:     resp.AccessToken,
		IssuedTokenType: issued,
		TokenType:       resp.TokenType,
		ExpiresIn:       resp.ExpiresIn,
		Scope:           resp.Scope,
		Profile:         chain.Profile,
	}, nil
}
