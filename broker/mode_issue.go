package broker

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/token"
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
		in := &conditionInput{req: &r.req, source: src.Name, target: tgt.Name, profile: string(ModeIssue), now: now,
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
	typ := token.TypeJWT
	if chain.Profile == ProfileIDJAG {
		copied = append(copied, r.idJAGClaims(claims, tgt, chain)...)
		aud, typ = tgt.Issuer, token.TypeIDJAG
	}
	assertion, err := r.b.issuer.Keys.Signer().Sign(claims, token.SignOptions{Typ: typ})
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
