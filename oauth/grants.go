package oauth

import (
	"net/url"
	"strings"
)

// TokenExchange is an RFC 8693 request.
type TokenExchange struct {
	SubjectToken       string
	SubjectTokenType   string // "" means TokenTypeAccessToken
	ActorToken         string
	ActorTokenType     string // "" with an ActorToken means TokenTypeAccessToken
	RequestedTokenType string // "" means not sent
	Audience           []string
	Resource           []string
	Scope              []string
}

// Form renders the exchange as token request parameters (grant_type included).
// audience and resource are repeated, one parameter per value (RFC 8693
// §2.1); scope values are joined with spaces; empty values are skipped.
func (t TokenExchange) Form() url.Values {
	f := url.Values{}
	f.Set("grant_type", GrantTypeTokenExchange)
	f.Set("subject_token", t.SubjectToken)
	f.Set("subject_token_type", orDefault(t.SubjectTokenType, TokenTypeAccessToken))
	if t.RequestedTokenType != "" {
		f.Set("requested_token_type", t.RequestedTokenType)
	}
	if t.ActorToken != "" {
		f.Set("actor_token", t.ActorToken)
		f.Set("actor_token_type", orDefault(t.ActorTokenType, TokenTypeAccessToken))
	}
	for _, a := range t.Audience {
		if a != "" {
			f.Add("audience", a)
		}
	}
	for _, r := range t.Resource {
		if r != "" {
			f.Add("resource", r)
		}
	}
	setScope(f, t.Scope)
	return f
}

// JWTBearer is an RFC 7523 §2.1 authorization grant.
type JWTBearer struct {
	Assertion string
	Scope     []string
}

// Form renders the grant as token request parameters (grant_type included).
func (j JWTBearer) Form() url.Values {
	f := url.Values{}
	f.Set("grant_type", GrantTypeJWTBearer)
	f.Set("assertion", j.Assertion)
	setScope(f, j.Scope)
	return f
}

func setScope(f url.Values, scopes []string) {
	kept := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if s = strings.TrimSpace(s); s != "" {
			kept = append(kept, s)
		}
	}
	if len(kept) > 0 {
		f.Set("scope", strings.Join(kept, " "))
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
