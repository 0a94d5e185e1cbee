package broker

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// verifySubject checks the subject token before hop 1 with the source's
// configured keys: signature, issuer and expiry. No URL is taken from the
// token: an unknown kid only refreshes the configured JWKS.
func (r *chainRun) verifySubject(ctx context.Context, src *Domain) (*token.Token, error) {
	tok, err := verifyKeys(ctx, src, r.req.SubjectToken) // waits for a close JWKS refetch (validate.go)
	if err != nil {
		if e := keysRefreshing(src, "subject_token", "", err); e != nil { // a key rotation at the source
			return nil, e
		}
		if errors.Is(err, token.ErrKeysUnavailable) {
			return nil, &Error{Reason: ReasonKeysUnavailable, Message: "the keys of " + src.Name + " could not be fetched", Err: err}
		}
		return nil, &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: does not verify with " + src.Name + "'s keys", Err: err}
	}
	c := &tok.Claims
	switch {
	case c.Issuer != src.Issuer:
		return nil, &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: iss " + quote(c.Issuer) + " is not " + src.Name + "'s issuer"}
	case c.Expiry.IsZero() || !r.b.now().Before(c.Expiry.Add(src.Assertion.ClockSkew)):
		return nil, &Error{Reason: ReasonSubjectTokenExpired, Field: "subject_token",
			Message: "subject_token: expired or without exp"}
	case !c.NotBefore.IsZero() && c.NotBefore.After(r.b.now().Add(src.Assertion.ClockSkew)):
		return nil, &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: not valid yet (nbf)"}
	}
	r.verifiedSubject(c.Subject)
	return tok, nil
}

// verifiedSubject records sub, read from a token whose signature verified,
// as the event's subject. Only such a subject is in Event.Subject, the field
// audit filters match: a forged token names its subject in
// Event.UnverifiedSubject only.
func (r *chainRun) verifiedSubject(sub string) {
	r.ev.Subject = sub
	r.ev.SubjectVerified = sub != ""
	r.ev.UnverifiedSubject = ""
}

// DefaultSubjectTokenTyp are the JOSE typ header values an issue mode chain
// accepts in subject tokens unless it names its own (Chain.SubjectTokenTyp):
// RFC 9068's at+jwt, and JWT or none, which Keycloak, Auth0 and most others
// put in access tokens. Compared case-insensitively, without "application/".
var DefaultSubjectTokenTyp = []string{"at+jwt", "jwt", ""}

// idTokenClaims are claims only OpenID Connect ID tokens carry (Core §2,
// §3.1.3.6, §3.3.2.11).
var idTokenClaims = []string{"nonce", "at_hash", "c_hash"}

// normTyp is a JOSE typ as compared (RFC 7515 §4.1.9: case-insensitive,
// "application/" may be omitted).
func normTyp(typ string) string {
	typ = strings.ToLower(typ)
	return strings.TrimPrefix(typ, "application/")
}

// checkSubjectType: in issue mode the subject token is the caller's
// credential for a grant the broker signs, so it must be an access token of
// the source, not another token the source signed (explicit typing, RFC 8725
// §3.11): its typ header is one the chain accepts and, unless the source's
// subject tokens are declared ID tokens, it is not recognisably an ID token
// (Keycloak's typ claim "ID", or an OpenID Connect ID token claim).
func checkSubjectType(tok *token.Token, src *Domain, chain *Chain) error {
	allowed := chain.SubjectTokenTyp
	if len(allowed) == 0 {
		allowed = DefaultSubjectTokenTyp
	}
	if typ := normTyp(tok.Header.Typ); !slices.Contains(allowed, typ) {
		return &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: JOSE typ " + quote(tok.Header.Typ) + " is not a type this chain accepts (" + strings.Join(allowed, ", ") + ")"}
	}
	if src.SubjectTokenType == oauth.TokenTypeIDToken {
		return nil
	}
	if typ, ok := tok.StringClaim("typ"); ok && strings.EqualFold(typ, "ID") {
		return &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: is an ID token (typ claim \"ID\"), not an access token of " + src.Name}
	}
	for _, name := range idTokenClaims {
		if _, ok := tok.Claim(name); ok {
			return &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
				Message: "subject_token: is an ID token (it has " + name + "), not an access token of " + src.Name}
		}
	}
	return nil
}

// checkSubjectAudience: in issue mode the subject token must be meant for
// the broker: one of its audiences is one the chain expects (a token with
// several, as Auth0 issues, is fine).
func checkSubjectAudience(tok *token.Token, chain *Chain) error {
	for _, a := range tok.Claims.Audience {
		if slices.Contains(chain.SubjectAudience, a) {
			return nil
		}
	}
	return &Error{Reason: ReasonSubjectTokenAudience, Field: "subject_token",
		Message: "subject_token: aud is none of " + strings.Join(chain.SubjectAudience, ", ")}
}
