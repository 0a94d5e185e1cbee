package broker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// validate checks the JWT authorization grant from hop 1 as the target domain
// would (docs/design.md §2), so that a grant the target would refuse is reported with
// a precise reason instead of being sent. Signature first, with the source's
// configured keys: no claim of an unverified token is trusted.
func (r *chainRun) validate(ctx context.Context, src, tgt *Domain, assertion string) (*token.Token, error) {
	skip := r.skipSignature(src, tgt)
	var tok *token.Token
	var err error
	if skip {
		tok, err = token.ParseUnverified(assertion)
	} else {
		tok, err = verifyKeys(ctx, src, assertion)
	}
	if err != nil {
		return nil, verifyError(src, err)
	}
	c := &tok.Claims
	if skip {
		r.ev.UnverifiedSubject = truncate(c.Subject) // authentic (the broker's own call), yet unsigned-checked
	} else {
		r.verifiedSubject(c.Subject)
	}
	r.ev.AssertionIssuer = c.Issuer
	r.ev.AssertionAudience = c.Audience
	if c.JTI != "" {
		r.ev.AssertionJTIHash = Hash(c.JTI)
		if n := len(r.ev.Hops); n > 0 { // none when the grant is the subject token (ModeSubjectToken)
			r.ev.Hops[n-1].AssertionJTIHash = r.ev.AssertionJTIHash
		}
	}
	idJAG := r.chain != nil && r.chain.Profile == ProfileIDJAG
	policy := tgt
	if idJAG {
		if err := checkIDJAGType(tok, tgt); err != nil {
			return nil, err
		}
		policy = idJAGTarget(tgt)
	}
	if err := checkClaims(tok, src, policy, r.b.now()); err != nil {
		return nil, err
	}
	if idJAG {
		if err := checkIDJAGAsked(tok, idJAGScopes(&r.req, r.chain), askedResources(&r.req, r.chain)); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// skipSignature reports whether the grant's signature goes unchecked: the
// target says so (AssertionPolicy.SkipSignature, for sources that sign with
// keys they do not publish), and only for a grant the broker received
// itself, over its authenticated call to the source (token exchange mode,
// a confidential client there). New warns about such targets.
func (r *chainRun) skipSignature(src, tgt *Domain) bool {
	return tgt.Assertion.SkipSignature && r.chain != nil && r.chain.Mode == ModeTokenExchange && src.Creds.Method != oauth.AuthNone
}

// verifyKeys verifies compact with src's keys. A kid the cached JWKS lacks
// while it may not be refetched yet is most likely a key rotation at the
// source: when the refetch is close (waitForKeys), it waits and verifies
// again (for a grant, a failed chain would cost the caller another token
// exchange).
func verifyKeys(ctx context.Context, src *Domain, compact string) (*token.Token, error) {
	tok, err := src.Keys.Verify(ctx, compact)
	var ku *token.KeyUnknownError
	if errors.As(err, &ku) && ku.RefreshIn > 0 && waitForKeys(ctx, ku.RefreshIn) {
		tok, err = src.Keys.Verify(ctx, compact)
	}
	return tok, err
}

// keysRefreshing is SOURCE_KEYS_REFRESHING when err is a kid missing from
// src's cached JWKS while it may not be refetched yet, naming the kid and
// when to retry; nil otherwise. what names the token ("the grant from A").
func keysRefreshing(src *Domain, what, hop string, err error) *Error {
	var ku *token.KeyUnknownError
	if !errors.As(err, &ku) || ku.RefreshIn <= 0 {
		return nil
	}
	// Not the token's fault, nor a configuration disagreement: the cached
	// copy of the source's JWKS may predate a key rotation.
	retry := ku.RefreshIn.Truncate(time.Second) + time.Second
	return &Error{Reason: ReasonKeysRefreshing, Hop: hop, RetryAfter: retry, Err: err,
		Message: what + " is signed with key " + quote(ku.Kid) + ", which is not in " + src.Name +
			"'s JWKS as last fetched (a key rotation?); the JWKS may be fetched again in " + retry.String() + ": retry then"}
}

// maxKeysWait bounds how long a chain waits for its source's JWKS to be
// refetchable (domains[].jwks_min_refresh); longer waits are answered with
// SOURCE_KEYS_REFRESHING and a retry delay instead.
const maxKeysWait = 2 * time.Second

// waitForKeys waits d if d <= maxKeysWait and the caller's deadline leaves
// minAttemptBudget after it; it reports whether it waited.
func waitForKeys(ctx context.Context, d time.Duration) bool {
	return d <= maxKeysWait && sleepWithin(ctx, d)
}

func verifyError(src *Domain, err error) *Error {
	r := ReasonAssertionMalformed
	msg := "the grant from " + src.Name + " is not a well-formed JWS"
	if e := keysRefreshing(src, "the grant from "+src.Name, HopTokenExchange, err); e != nil {
		return e
	}
	var ku *token.KeyUnknownError
	switch {
	case errors.As(err, &ku):
		r, msg = ReasonAssertionKeyUnknown, "the grant from "+src.Name+" names a key (kid "+quote(ku.Kid)+") that is not in its JWKS"
	case errors.Is(err, token.ErrAlgNotAllowed):
		r, msg = ReasonAssertionAlgNotAllowed, "the grant from "+src.Name+" is signed with an algorithm that is not allowed"
	case errors.Is(err, token.ErrKeyUnknown):
		r, msg = ReasonAssertionKeyUnknown, "the grant from "+src.Name+" names a key (kid) that is not in its JWKS"
	case errors.Is(err, token.ErrSignature):
		r, msg = ReasonAssertionSignatureInvalid, "the grant's signature does not verify with "+src.Name+"'s keys"
	case errors.Is(err, token.ErrKeysUnavailable):
		r, msg = ReasonKeysUnavailable, "the keys of "+src.Name+" could not be fetched"
	case errors.Is(err, token.ErrTooLarge):
		msg = "the grant from " + src.Name + " is too large"
	}
	return &Error{Reason: r, Hop: HopTokenExchange, Message: msg, Err: err}
}

// DefaultAllowedTyp are the JOSE typ values of grants Keycloak's JWT
// Authorization Grant takes with its default validator: none, JWT, and
// at+jwt (RFC 9068 access tokens, a realm A client with "Use at+jwt").
// oauth-id-jag+jwt (ID-JAG) must be listed explicitly.
var DefaultAllowedTyp = []string{"", token.TypeJWT, "at+jwt"}

// checkClaims applies the target's policy to a verified grant. Each rule has
// its own reason; the order follows Keycloak's so the first problem reported
// is the one the target would have reported.
func checkClaims(tok *token.Token, src, tgt *Domain, now time.Time) *Error {
	c, p := &tok.Claims, &tgt.Assertion
	bad := func(r Reason, msg string) *Error { return &Error{Reason: r, Hop: HopTokenExchange, Message: msg} }
	idJAG := strings.EqualFold(tok.Header.Typ, token.TypeIDJAG)
	if e := kindChecks(tok, src, tgt); e != nil { // a cloud's own rules first (kind_cloud.go)
		return e
	}

	if !contains(p.AllowedAlgs, tok.Header.Alg) {
		return bad(ReasonAssertionAlgNotAllowed, "alg "+truncate(tok.Header.Alg)+" is not allowed by "+tgt.Name)
	}
	allowedTyp := p.AllowedTyp
	if len(allowedTyp) == 0 {
		allowedTyp = DefaultAllowedTyp
	}
	if t := tok.Header.Typ; !slices.ContainsFunc(allowedTyp, func(a string) bool { return strings.EqualFold(a, t) }) {
		return bad(ReasonAssertionTypeInvalid, "typ "+quote(t)+" is not accepted by "+tgt.Name+" (assertion.allowed_typ)")
	}
	if c.Issuer != src.Issuer {
		return bad(ReasonAssertionIssuerUntrusted, "iss "+quote(c.Issuer)+" is not "+src.Name+"'s issuer "+quote(src.Issuer))
	}
	switch {
	case tgt.Kind.isCloud(): // the audience rules are the cloud's (kindChecks)
	case len(c.Audience) > 1:
		return bad(ReasonAssertionAudienceMultiple, tgt.Name+" accepts a single aud; the grant has "+itoa(len(c.Audience)))
	case len(c.Audience) == 0:
		return bad(ReasonAssertionAudienceInvalid, "the grant has no aud")
	case !contains(p.Audience, c.Audience[0]):
		return bad(ReasonAssertionAudienceInvalid, "aud "+quote(c.Audience[0])+" is not what "+tgt.Name+" expects ("+strings.Join(p.Audience, ", ")+")")
	}
	skew := p.ClockSkew
	switch {
	case c.Expiry.IsZero():
		return bad(ReasonAssertionExpirationMissing, "the grant has no exp")
	case !now.Before(c.Expiry.Add(skew)):
		return bad(ReasonAssertionExpired, "the grant expired at "+c.Expiry.UTC().Format(time.RFC3339))
	case !c.NotBefore.IsZero() && c.NotBefore.After(now.Add(skew)):
		return bad(ReasonAssertionNotYetValid, "the grant's nbf is in the future")
	case !c.IssuedAt.IsZero() && c.IssuedAt.After(now.Add(skew)):
		return bad(ReasonAssertionNotYetValid, "the grant's iat is in the future")
	}
	issued := c.IssuedAt
	if issued.IsZero() {
		issued = now
	}
	if p.AgeRule && !c.IssuedAt.IsZero() {
		// Keycloak's rule: now > iat + max, whatever exp - iat (no skew).
		if now.Unix() > c.IssuedAt.Unix()+int64(p.MaxLifetime/time.Second) {
			return bad(ReasonAssertionExpired, "the grant was issued more than "+tgt.Name+"'s maximum age "+p.MaxLifetime.String()+" ago")
		}
	} else if life := c.Expiry.Sub(issued); life > p.MaxLifetime+skew {
		return bad(ReasonAssertionLifetimeTooLong, "the grant lives "+life.Round(time.Second).String()+", more than "+tgt.Name+"'s maximum "+p.MaxLifetime.String())
	}
	if c.JTI == "" && (!p.AllowReuse || idJAG) {
		return bad(ReasonAssertionJTIMissing, "the grant has no jti and "+tgt.Name+" forbids assertion reuse")
	}
	if c.Subject == "" {
		return bad(ReasonAssertionSubjectMissing, "the grant has no sub")
	}
	if idJAG {
		if c.IssuedAt.IsZero() {
			return bad(ReasonAssertionIssuedAtMissing, "an ID-JAG must carry iat")
		}
		if c.ClientID != tgt.Creds.ClientID {
			return bad(ReasonAssertionClientIDMismatch, "the ID-JAG's client_id "+quote(c.ClientID)+" is not the broker's client at "+tgt.Name)
		}
	}
	return nil
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return "many"
}

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

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
