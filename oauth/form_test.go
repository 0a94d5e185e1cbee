package oauth

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzEncodeForm holds encodeForm, and with it appendQueryEscape and
// escapedLen, to url.Values.Encode for any keys and values: the escaping
// table must agree with url.QueryEscape for every byte.
func FuzzEncodeForm(f *testing.F) {
	f.Add("subject_token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", "scope", "openid profile")
	f.Add("k", "\x00\xff\n %+&=~._-", "ü", "a b")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		form := url.Values{k1: {v1, v2}}
		extra := url.Values{k2: {v2}}
		merged := url.Values{k1: {v1, v2}}
		merged[k2] = extra[k2]
		if got, want := string(encodeForm(form, extra)), merged.Encode(); got != want {
			t.Fatalf("encodeForm = %q, url.Values.Encode = %q", got, want)
		}
		if got, want := escapedLen(v1), len(url.QueryEscape(v1)); got != want {
			t.Fatalf("escapedLen(%q) = %d, len(url.QueryEscape) = %d", v1, got, want)
		}
	})
}

// BenchmarkEncodeForm is a token exchange's form with a Keycloak-sized
// subject token (about 1 KB, nothing to escape) and a scope with a space.
func BenchmarkEncodeForm(b *testing.B) {
	form := url.Values{
		"grant_type":           {GrantTypeTokenExchange},
		"subject_token":        {strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 50)},
		"subject_token_type":   {TokenTypeAccessToken},
		"requested_token_type": {TokenTypeJWT},
		"audience":             {"http://127.0.0.1:8081/realms/domain-b"},
		"scope":                {"openid profile"},
	}
	b.ReportAllocs()
	for b.Loop() {
		encodeForm(form, nil)
	}
}
