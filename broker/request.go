package broker

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// Request is one chain request.
type Request struct {
	RequestID        string // correlates the log line; optional
	Caller           string // authenticated caller name, recorded in the audit event
	CallerMethod     string // how the caller authenticated (api_key, mtls, jwt, anonymous), for policy conditions; optional
	SubjectToken     string
	SubjectTokenType string
	SourceDomain     string
	TargetDomain     string
	Scopes           []string
	Resources        []string
	Audience         string
	ActorToken       string
	ActorTokenType   string
	// DPoPProof is a DPoP proof (RFC 9449) the caller made with its own key
	// for the target's token endpoint (POST): checked before hop 1,
	// forwarded with hop 2, and the target's token must be bound to its key.
	DPoPProof string
	// SourceDPoPProof, optional with DPoPProof, is a proof of the same key
	// for the source's token endpoint, forwarded with hop 1, so that the
	// grant itself is bound to the key (cnf.jkt).
	SourceDPoPProof string
}

// Result is a successful chain.
type Result struct {
	// AccessToken is empty for an aws target, whose answer is
	// AWSCredentials.
	AccessToken     string
	IssuedTokenType string
	TokenType       string
	ExpiresIn       int64
	Scope           string
	AuditID         string
	Hops            []store.Hop
	// AWSCredentials: an aws target's answer (KindAWS); ExpiresIn is then
	// the seconds until their Expiration.
	AWSCredentials *AWSCredentials
	// Profile is the chain's profile (jwt_grant or id_jag).
	Profile Profile
}

// parse checks the request and resolves its domains and chain.
func (r *chainRun) parse() (src, tgt *Domain, chain *Chain, err error) {
	req, lim := &r.req, r.b.limits
	var subjectSum [sha256.Size]byte
	var unverified subjectInfo
	known := false
	if req.SubjectToken != "" {
		subjectSum = sha256.Sum256([]byte(req.SubjectToken))
		// A memoised subject token (r.b.subjects) comes with its hash in hex.
		if unverified, known = r.b.subjects.get(subjectSum); known {
			r.ev.SubjectTokenHash = unverified.hash
		} else {
			r.ev.SubjectTokenHash = hexSum(&subjectSum)
		}
	}
	switch {
	case req.SubjectToken == "":
		return nil, nil, nil, invalid("subject_token", "required")
	case len(req.SubjectToken) > lim.MaxTokenBytes:
		return nil, nil, nil, invalid("subject_token", "longer than %d bytes", lim.MaxTokenBytes)
	case req.TargetDomain == "":
		return nil, nil, nil, invalid("target_domain", "required")
	case len(req.ActorToken) > lim.MaxTokenBytes:
		return nil, nil, nil, invalid("actor_token", "longer than %d bytes", lim.MaxTokenBytes)
	case req.ActorToken != "" && req.ActorTokenType == "":
		return nil, nil, nil, invalid("actor_token_type", "required with actor_token")
	case req.ActorToken == "" && req.ActorTokenType != "":
		return nil, nil, nil, invalid("actor_token", "required with actor_token_type")
	case len(req.Scopes) > lim.MaxScopes:
		return nil, nil, nil, invalid("scope", "more than %d scopes", lim.MaxScopes)
	case len(req.Resources) > lim.MaxResources:
		return nil, nil, nil, invalid("resource", "more than %d resources", lim.MaxResources)
	case len(req.DPoPProof) > token.MaxDPoPProofBytes:
		return nil, nil, nil, invalid("dpop_proof", "longer than %d bytes", token.MaxDPoPProofBytes)
	case len(req.SourceDPoPProof) > token.MaxDPoPProofBytes:
		return nil, nil, nil, invalid("source_dpop_proof", "longer than %d bytes", token.MaxDPoPProofBytes)
	case req.SourceDPoPProof != "" && req.DPoPProof == "":
		return nil, nil, nil, invalid("source_dpop_proof", "only with dpop_proof: the grant is bound to the key the target's token will be bound to")
	}
	// An array, not a map: no map is built and walked on every chain (and
	// the first field too long is named in this order).
	for _, f := range [...]struct{ name, v string }{
		{"subject_token_type", req.SubjectTokenType}, {"source_domain", req.SourceDomain},
		{"target_domain", req.TargetDomain}, {"audience", req.Audience}, {"actor_token_type", req.ActorTokenType},
	} {
		if len(f.v) > lim.MaxFieldLength {
			return nil, nil, nil, invalid(f.name, "longer than %d bytes", lim.MaxFieldLength)
		}
	}
	for _, s := range req.Scopes {
		if s == "" || len(s) > lim.MaxFieldLength || !validScopeToken(s) {
			return nil, nil, nil, invalid("scope", "%q is not a valid scope token (RFC 6749 §3.3)", truncate(s))
		}
	}
	for _, res := range req.Resources {
		if !absoluteURI(res) || len(res) > lim.MaxFieldLength {
			return nil, nil, nil, invalid("resource", "%q is not an absolute URI without fragment (RFC 8707)", truncate(res))
		}
	}

	r.ev.Scopes = req.Scopes // checked: at most MaxScopes of at most MaxFieldLength (else see finish)
	if req.ActorToken != "" {
		r.ev.ActorTokenHash = Hash(req.ActorToken) // the caller's own: audited whatever becomes of it
	}

	// Unverified: used only to pick a configured source domain and to name the
	// subject, as unverified, in audit events of chains that fail before a
	// token naming it verifies.
	if !known {
		unverified = parseSubject(req.SubjectToken)
		unverified.hash = r.ev.SubjectTokenHash
		r.b.subjects.put(subjectSum, unverified)
	}
	if unverified.jwt {
		r.ev.UnverifiedSubject = truncate(unverified.subject)
		r.subjectExp = unverified.expiry
	}

	tgt = r.b.domains[req.TargetDomain]
	if tgt == nil {
		return nil, nil, nil, &Error{Reason: ReasonDomainUnknown, Field: "target_domain",
			Message: fmt.Sprintf("target_domain: unknown domain %q", truncate(req.TargetDomain))}
	}
	r.ev.TargetDomain = tgt.Name
	if req.SourceDomain != "" {
		src = r.b.domains[req.SourceDomain]
		if src == nil {
			return nil, nil, nil, &Error{Reason: ReasonDomainUnknown, Field: "source_domain",
				Message: fmt.Sprintf("source_domain: unknown domain %q", truncate(req.SourceDomain))}
		}
	} else {
		if !unverified.jwt {
			return nil, nil, nil, &Error{Reason: ReasonSourceUndetermined, Field: "source_domain",
				Message: "source_domain: required: the subject token is not a JWT, so its issuer cannot name the source"}
		}
		src = r.b.byIssuer[unverified.issuer]
		if src == nil {
			return nil, nil, nil, &Error{Reason: ReasonSourceUndetermined, Field: "source_domain",
				Message: fmt.Sprintf("source_domain: required: no configured domain has the subject token's issuer %q", truncate(unverified.issuer))}
		}
	}
	r.ev.SourceDomain = src.Name
	chain = r.b.chains[[2]string{src.Name, tgt.Name}]
	if chain == nil {
		return nil, nil, nil, fail(ReasonChainNotAllowed, "no chain is configured from %q to %q", src.Name, tgt.Name)
	}
	if len(req.Scopes) == 0 {
		r.ev.Scopes = chain.DefaultScopes
	}
	r.ev.Mode = string(chain.Mode)
	r.ev.Profile = chain.Profile.String()
	return src, tgt, chain, nil
}

// validScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}

func absoluteURI(s string) bool {
	i := strings.Index(s, ":")
	if i <= 0 || strings.ContainsAny(s, "# \t\r\n") {
		return false
	}
	for j, c := range s[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

func scopes(req []string, def []string) []string {
	if len(req) > 0 {
		return req
	}
	return slices.Clone(def)
}
