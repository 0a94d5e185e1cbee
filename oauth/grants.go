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
	f := newForm(7 + len(t.Audience) + len(t.Resource))
	f.add("grant_type", GrantTypeTokenExchange)
	f.add("subject_token", t.SubjectToken)
	f.add("subject_token_type", orDefault(t.SubjectTokenType, TokenTypeAccessToken))
	if t.RequestedTokenType != "" {
		f.add("requested_token_type", t.RequestedTokenType)
	}
	if t.ActorToken != "" {
		f.add("actor_token", t.ActorToken)
		f.add("actor_token_type", orDefault(t.ActorTokenType, TokenTypeAccessToken))
	}
	for _, a := range t.Audience {
		if a != "" {
			f.add("audience", a)
		}
	}
	for _, r := range t.Resource {
		if r != "" {
			f.add("resource", r)
		}
	}
	f.setScope(t.Scope)
	return f.values
}

// JWTBearer is an RFC 7523 §2.1 authorization grant.
type JWTBearer struct {
	Assertion string
	Scope     []string
}

// Form renders the grant as token request parameters (grant_type included).
func (j JWTBearer) Form() url.Values {
	f := newForm(3)
	f.add("grant_type", GrantTypeJWTBearer)
	f.add("assertion", j.Assertion)
	f.setScope(j.Scope)
	return f.values
}

// form builds url.Values whose single values share one backing array
// (each slice capped: an Add by the caller copies it), instead of one
// allocation per parameter.
type form struct {
	values url.Values
	vals   []string
}

// newForm makes room for n values; the map's hint is at most 8, the
// most a map holds in its first allocation.
func newForm(n int) form {
	return form{values: make(url.Values, min(n, 8)), vals: make([]string, 0, n)}
}

// add is url.Values.Add.
func (f *form) add(k, v string) {
	if _, ok := f.values[k]; ok || len(f.vals) == cap(f.vals) {
		f.values.Add(k, v)
		return
	}
	f.vals = append(f.vals, v)
	n := len(f.vals)
	f.values[k] = f.vals[n-1 : n : n]
}

// setScope sets scope to the non-blank scopes, trimmed, joined with spaces;
// nothing when there are none.
func (f *form) setScope(scopes []string) {
	n, count := 0, 0
	for _, s := range scopes {
		if s = strings.TrimSpace(s); s != "" {
			n += len(s)
			count++
		}
	}
	delete(f.values, "scope")
	switch count {
	case 0:
		return
	case 1: // the scope itself, as strings.Join returns it
		for _, s := range scopes {
			if s = strings.TrimSpace(s); s != "" {
				f.add("scope", s)
			}
		}
		return
	}
	var b strings.Builder
	b.Grow(n + count - 1)
	for _, s := range scopes {
		if s = strings.TrimSpace(s); s != "" {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(s)
		}
	}
	f.add("scope", b.String())
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
