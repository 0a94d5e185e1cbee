package broker

import (
	"context"
	"errors"

	"github.com/chainbroker/chainbroker/oauth"
)

// Token types accepted as the issued_token_type of hop 1: the grant must be a JWT.
var assertionTokenTypes = []string{"", oauth.TokenTypeAccessToken, oauth.TokenTypeJWT, oauth.TokenTypeIDJAG}

// exchange performs hop 1: RFC 8693 token exchange at the source domain for a
// JWT authorization grant addressed to the target.
func (r *chainRun) exchange(ctx context.Context, src *Domain, chain *Chain) (string, error) {
	req := &r.req
	te := oauth.TokenExchange{
		SubjectToken:       req.SubjectToken,
		SubjectTokenType:   req.SubjectTokenType,
		ActorToken:         req.ActorToken,
		ActorTokenType:     req.ActorTokenType,
		RequestedTokenType: src.RequestedTokenType,
		Audience:           []string{chain.Audience},
		Resource:           append(append([]string(nil), chain.Resource...), req.Resources...),
		Scope:              chain.ExchangeScopes,
	}
	if te.SubjectTokenType == "" {
		te.SubjectTokenType = src.SubjectTokenType
	}
	if chain.Transcription.Act && te.ActorToken == "" {
		// The source writes `act` into the grant from an actor token the
		// broker signs for the calling agent (RFC 8693 §2.1, §4.1).
		actor, err := r.actorToken(src)
		if err != nil {
			return "", &Error{Reason: ReasonInternal, Message: "signing the actor token failed", Err: err}
		}
		te.ActorToken, te.ActorTokenType = actor, oauth.TokenTypeJWT
		r.ev.ActorTokenHash = Hash(actor)
		r.ev.Actor = truncate(r.req.Caller) // unless the grant names another (recordActor)
	}
	if req.Audience != "" {
		te.Audience = []string{req.Audience}
	}
	if chain.Profile == ProfileIDJAG {
		idJAGExchange(&te, req, src, chain)
	}
	form := te.Form()
	var resp *oauth.TokenResponse
	var err error
	// Token exchange is safe to retry: a lost answer only costs domain A a
	// token it issued for nobody.
	for attempt := 1; ; attempt++ {
		resp, err = r.call(ctx, src, HopTokenExchange, oauth.GrantTypeTokenExchange, form, dpopHeader(req.SourceDPoPProof))
		if err == nil || !retryable(err) || attempt >= src.Resilience.MaxAttempts || !backoff(ctx, attempt, errors.Unwrap(err)) {
			break
		}
	}
	if err != nil {
		return "", err
	}
	if chain.Profile == ProfileIDJAG && resp.IssuedTokenType != oauth.TokenTypeIDJAG {
		return "", &Error{Reason: ReasonAssertionIssuedTokenType, Hop: HopTokenExchange,
			Message: "token exchange at " + src.Name + " issued " + quote(resp.IssuedTokenType) + ", not an ID-JAG (" + oauth.TokenTypeIDJAG + ")"}
	}
	if !contains(assertionTokenTypes, resp.IssuedTokenType) {
		return "", &Error{Reason: ReasonUpstreamBadResponse, Hop: HopTokenExchange,
			Message: "token exchange at " + src.Name + " issued a " + truncate(resp.IssuedTokenType) + ", not a JWT authorization grant"}
	}
	return resp.AccessToken, nil
}
