package sandbox

import "time"

// Misbehaviour makes a domain misbehave, for tests. The zero value is normal
// behaviour; fields combine.
//
// Response-level fields (Delay, Status, Error, ErrorDescription, Body) apply
// to domain A's token exchange requests and to domain B's JWT bearer
// requests, before client authentication; the request is still counted.
// Token-level fields apply only to the tokens domain A issues by token
// exchange (the assertions for B, and ID-JAGs), not to subject tokens.
type Misbehaviour struct {
	// Delay waits before answering (cut short when the client gives up or
	// the sandbox closes).
	Delay time.Duration
	// Status, Error and ErrorDescription answer with an OAuth error
	// instead: Status 0 means 400; Error "" means invalid_request, or
	// server_error for a 5xx Status.
	Status           int
	Error            string
	ErrorDescription string
	// Body answers with this raw body (Content-Type application/json) and
	// Status (0 means 200): a malformed or unexpected response.
	Body string

	// Issuer overrides iss.
	Issuer string
	// ExtraAudience makes aud an array: the requested audience and this.
	ExtraAudience string
	// Expired puts exp 60 s in the past (iat one lifetime before).
	Expired bool
	// Lifetime sets exp - iat (e.g. 1h, above B's maximum of 300 s).
	Lifetime time.Duration
	// IssuedAtAge puts iat this far in the past (exp = iat + lifetime):
	// with a long Lifetime, an assertion "issued too far in the past".
	IssuedAtAge time.Duration
	// IssuedAtFuture puts iat 60 s in the future.
	IssuedAtFuture bool
	// NotBeforeFuture adds nbf 60 s in the future.
	NotBeforeFuture bool
	// OmitJTI, OmitSub and OmitExp leave the claim out.
	OmitJTI, OmitSub, OmitExp bool
	// FixedJTI uses this jti for every token (replay of the jti).
	FixedJTI string
	// ReuseAssertion answers with the token issued by the previous
	// exchange, byte for byte (replay of the whole assertion); the first
	// exchange issues normally.
	ReuseAssertion bool
	// ExtraClaims are set last, overriding the others; a nil value removes
	// the claim (e.g. "iss": nil).
	ExtraClaims map[string]any

	// BadSignature signs with a key that is not published, under the
	// published key's kid: the signature does not verify.
	BadSignature bool
	// UnknownKid signs with an unpublished key under a kid not in the JWKS.
	UnknownKid bool
	// Alg signs with another algorithm under the published kid: "HS256"
	// (HS384, HS512) with a random shared secret, "none" with no signature
	// at all, or an asymmetric alg ("ES256", "PS256"...) with a fresh
	// unpublished key.
	Alg string
	// Typ sets the JOSE typ header (default "JWT"; oauth-id-jag+jwt for
	// ID-JAGs).
	Typ string

	// IssuedTokenType overrides the issued_token_type of domain A's ID-JAG
	// answers (token exchange with requested_token_type id-jag).
	IssuedTokenType string

	// IgnoreDPoP and DPoPWithoutBinding apply to the access tokens domains
	// B and C issue with a valid DPoP proof: IgnoreDPoP issues an unbound
	// Bearer token, DPoPWithoutBinding answers token_type DPoP with a token
	// that has no cnf.jkt (a target that ignores the binding).
	IgnoreDPoP, DPoPWithoutBinding bool
}

// times returns the iat and exp of a token of lifetime life issued now,
// with Lifetime, IssuedAtFuture, IssuedAtAge and Expired applied.
func (m Misbehaviour) times(now time.Time, life time.Duration) (iat, exp time.Time) {
	if m.Lifetime > 0 {
		life = m.Lifetime
	}
	iat = now
	switch {
	case m.IssuedAtFuture:
		iat = now.Add(60 * time.Second)
	case m.IssuedAtAge > 0:
		iat = now.Add(-m.IssuedAtAge)
	}
	exp = iat.Add(life)
	if m.Expired {
		exp = now.Add(-60 * time.Second)
		iat = exp.Add(-life)
	}
	return iat, exp
}

// applyClaims applies the claim-level fields to the claims of a token
// issued now: Issuer, FixedJTI, OmitJTI, OmitSub, OmitExp, NotBeforeFuture
// and, last, ExtraClaims.
func (m Misbehaviour) applyClaims(claims map[string]any, now time.Time) {
	if m.Issuer != "" {
		claims["iss"] = m.Issuer
	}
	if m.FixedJTI != "" {
		claims["jti"] = m.FixedJTI
	}
	for name, omit := range map[string]bool{"jti": m.OmitJTI, "sub": m.OmitSub, "exp": m.OmitExp} {
		if omit {
			delete(claims, name)
		}
	}
	if m.NotBeforeFuture {
		claims["nbf"] = now.Add(60 * time.Second).Unix()
	}
	for k, v := range m.ExtraClaims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
}
