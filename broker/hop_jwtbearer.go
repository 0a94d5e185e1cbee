package broker

import (
	"context"
	"errors"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// markReplay records the grant's jti for the target until the grant expires,
// after its signature and claims have verified (so a forged grant cannot burn
// a genuine jti). A jti already marked means the grant was presented before:
// it is never sent again. The replay store being unavailable fails the chain.
func (r *chainRun) markReplay(ctx context.Context, tgt *Domain, tok *token.Token) error {
	c := &tok.Claims
	if tgt.Assertion.AllowReuse && c.JTI == "" {
		return nil
	}
	key := store.ReplayKey{Target: tgt.Name, Issuer: c.Issuer, JTI: c.JTI}
	err := r.b.replay.Mark(ctx, key, c.Expiry.Add(tgt.Assertion.ClockSkew+time.Second))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrReplayed):
		return &Error{Reason: ReasonAssertionReplayed, Hop: HopTokenExchange,
			Message: "the grant's jti was already presented to " + tgt.Name + "; it is not sent again"}
	default:
		return &Error{Reason: ReasonStoreUnavailable, Message: "the replay store is unavailable; chains fail closed", Err: err}
	}
}

// jwtBearer performs hop 2: the RFC 7523 JWT bearer grant at the target.
func (r *chainRun) jwtBearer(ctx context.Context, tgt *Domain, chain *Chain, assertion string) (*Result, error) {
	grant := oauth.JWTBearer{Assertion: assertion, Scope: scopes(r.req.Scopes, chain.DefaultScopes)}
	resp, err := r.call(ctx, tgt, HopJWTBearer, oauth.GrantTypeJWTBearer, grant.Form())
	if n := len(r.ev.Hops); n > 0 && r.ev.Hops[n-1].GrantType == oauth.GrantTypeJWTBearer {
		r.ev.Hops[n-1].AssertionJTIHash = r.ev.AssertionJTIHash
	}
	if e, ok := AsError(err); ok && e.Hop == HopJWTBearer && e.Upstream != nil && e.Reason != ReasonUpstreamUnavailable {
		// The caller never saw this grant: say whose it is.
		e.Message = tgt.Name + " refused the grant the broker obtained from " + r.ev.SourceDomain + " (hop 2, jwt_bearer): " + upstreamSummary(e.Upstream)
	}
	if err != nil {
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
	}, nil
}
