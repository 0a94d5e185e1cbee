package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// Chain modes: how hop 1 obtains the JWT authorization grant.
const (
	// ModeTokenExchange asks the source domain (RFC 8693).
	ModeTokenExchange = "token_exchange"
	// ModeIssue has the broker sign the grant itself, after verifying the
	// subject token with the source's keys: for sources without token
	// exchange (Auth0, custom identity providers).
	ModeIssue = "issue"
)

// Transcription says what of the subject token reaches the grant
// (identity chaining draft §2.5).
type Transcription struct {
	// SubjectClaim names the subject token claim that identifies the user
	// in the target (default "sub"; e.g. "email", "preferred_username").
	SubjectClaim string
	// SubjectMap, when set, maps that claim's value to the target's sub;
	// a value absent from it is refused (SUBJECT_UNMAPPED).
	SubjectMap map[string]string
	// Claims are copied from the subject token when present.
	Claims []string
	// Act adds an `act` claim naming the calling agent (RFC 8693 §4.1); in
	// token exchange mode the broker sends a signed actor_token instead.
	Act bool
	// Compute (issue mode) adds claims computed by CEL expressions over
	// the condition variables (cel.go), by claim name; never a claim the
	// broker sets (ReservedClaims). A value that fails to evaluate, is not
	// JSON or is over MaxComputedClaimBytes is left out.
	Compute map[string]string

	computed []computedClaim // Compute, compiled by New, in name order
}

// ReservedClaims are set by the broker and never copied by transcription.
var ReservedClaims = []string{"iss", "sub", "aud", "jti", "iat", "exp", "nbf", "act", "scope", "cnf", "client_id", "may_act"}

// Issuer is the broker's own identity as a token issuer.
type Issuer struct {
	URL  string // `iss` of the grants and actor tokens it signs
	Keys SigningKeys
}

// SigningKeys gives the active signing key (keyset.Set).
type SigningKeys interface {
	Signer() *token.Signer
}

const (
	actorTokenLifetime = 60 * time.Second
)

// newJTI is 144 random bits, base64url.
func newJTI() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// issue signs the grant for the target (hop 1 in ModeIssue): subject mapped
// by the chain's transcription, a single aud (what the target expects), a
// fresh jti, and a lifetime bounded by the chain's, the target's maximum and
// the subject token's own exp.
func (r *chainRun) issue(ctx context.Context, src, tgt *Domain, chain *Chain) (string, error) {
	subj, tr := r.subject, &chain.Transcription
	claimName := tr.SubjectClaim
	if claimName == "" {
		claimName = "sub"
	}
	value, ok := subj.StringClaim(claimName)
	if !ok || value == "" {
		return "", fail(ReasonSubjectUnmapped, "the subject token has no %s to map to a user of %s", claimName, tgt.Name)
	}
	mapped := value
	if tr.SubjectMap != nil {
		if mapped, ok = tr.SubjectMap[value]; !ok {
			return "", fail(ReasonSubjectUnmapped, "%s %s has no user in %s's mapping", claimName, quote(value), tgt.Name)
		}
	}
	now := r.b.now()
	exp := now.Add(min(chain.AssertionLifetime, tgt.Assertion.MaxLifetime))
	if !subj.Claims.Expiry.IsZero() && subj.Claims.Expiry.Before(exp) {
		exp = subj.Claims.Expiry
	}
	jti, aud := newJTI(), tgt.Assertion.Audience[0]
	claims := map[string]any{
		"iss": r.b.issuer.URL, "sub": mapped, "aud": aud, "jti": jti,
		"iat": now.Unix(), "exp": exp.Unix(),
	}
	var copied []string
	for _, name := range tr.Claims {
		if v, ok := subj.Claim(name); ok {
			claims[name] = v
			copied = append(copied, name)
		}
	}
	if sc := scopes(r.req.Scopes, chain.DefaultScopes); len(sc) > 0 {
		claims["scope"] = strings.Join(sc, " ")
	}
	if len(tr.computed) > 0 {
		in := &conditionInput{req: &r.req, source: src.Name, target: tgt.Name, profile: ModeIssue, now: now,
			subject: &claimsMap{tok: subj, raw: r.req.SubjectToken}}
		for i := range tr.computed {
			c := &tr.computed[i]
			v, err := c.eval(ctx, in)
			if err != nil {
				r.b.log.DebugContext(ctx, "computed claim did not evaluate: left out", "request_id", r.req.RequestID, "claim", c.name)
				continue
			}
			claims[c.name] = v
			copied = append(copied, c.name)
		}
	}
	if tr.Act {
		claims["act"] = map[string]string{"sub": r.req.Caller}
		copied = append(copied, "act")
		r.ev.Actor = truncate(r.req.Caller)
	}
	assertion, err := r.b.issuer.Keys.Signer().Sign(claims, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		return "", &Error{Reason: ReasonInternal, Message: "signing the grant failed", Err: err}
	}
	r.ev.MappedSubject = mapped
	r.ev.TranscribedClaims = copied
	r.ev.AssertionIssuer = r.b.issuer.URL
	r.ev.AssertionAudience = []string{aud}
	r.ev.AssertionJTIHash = Hash(jti)
	return assertion, nil
}

// actorToken is the broker-signed RFC 8693 actor_token naming the caller,
// sent in token exchange mode when the chain transcribes `act`.
func (r *chainRun) actorToken(src *Domain) (string, error) {
	now := r.b.now()
	return r.b.issuer.Keys.Signer().Sign(map[string]any{
		"iss": r.b.issuer.URL, "sub": r.req.Caller, "aud": src.Issuer, "jti": newJTI(),
		"iat": now.Unix(), "exp": now.Add(actorTokenLifetime).Unix(),
	}, token.SignOptions{Typ: token.TypeJWT})
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
