package broker

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// idJAGTyp accepts the ID-JAG profile's typ besides the defaults.
var idJAGTyp = append(append([]string(nil), DefaultAllowedTyp...), token.TypeIDJAG)

func TestCheckClaims(t *testing.T) {
	now := time.Now()
	src := &Domain{Name: "domain-a", Issuer: "https://a.example/realms/a"}
	tgt := &Domain{Name: "domain-b", Issuer: "https://b.example/realms/b",
		Creds: oauth.ClientCredentials{ClientID: "chainbroker"},
		Assertion: AssertionPolicy{
			Audience:    []string{"https://b.example/realms/b", "https://b.example/realms/b/protocol/openid-connect/token"},
			AllowedAlgs: token.DefaultAllowedAlgs,
			MaxLifetime: 300 * time.Second,
		}}
	good := func() *token.Token {
		return &token.Token{
			Header: token.Header{Alg: "RS256", Kid: "k1", Typ: "JWT"},
			Claims: token.Claims{
				Issuer: src.Issuer, Subject: "alice", Audience: []string{tgt.Issuer},
				IssuedAt: now.Add(-time.Second), Expiry: now.Add(299 * time.Second), JTI: "j1",
			},
			Verified: true,
		}
	}
	tests := []struct {
		name   string
		mutate func(*token.Token, *AssertionPolicy)
		want   Reason // "" = valid
	}{
		{"valid", func(*token.Token, *AssertionPolicy) {}, ""},
		{"aud is the token endpoint", func(tk *token.Token, _ *AssertionPolicy) {
			tk.Claims.Audience = []string{"https://b.example/realms/b/protocol/openid-connect/token"}
		}, ""},
		{"no typ", func(tk *token.Token, _ *AssertionPolicy) { tk.Header.Typ = "" }, ""},
		{"alg not allowed by target", func(tk *token.Token, p *AssertionPolicy) { p.AllowedAlgs = []string{"ES256"} }, ReasonAssertionAlgNotAllowed},
		{"typ at+jwt (RFC 9068, Keycloak's \"Use at+jwt\")", func(tk *token.Token, _ *AssertionPolicy) { tk.Header.Typ = "at+jwt" }, ""},
		{"typ AT+JWT, case-insensitive", func(tk *token.Token, _ *AssertionPolicy) { tk.Header.Typ = "AT+JWT" }, ""},
		{"typ other", func(tk *token.Token, _ *AssertionPolicy) { tk.Header.Typ = "secevent+jwt" }, ReasonAssertionTypeInvalid},
		{"typ id-jag not accepted by default", func(tk *token.Token, _ *AssertionPolicy) {
			tk.Header.Typ = token.TypeIDJAG
			tk.Claims.ClientID = "chainbroker"
		}, ReasonAssertionTypeInvalid},
		{"allowed_typ without none refuses a grant without typ", func(tk *token.Token, p *AssertionPolicy) {
			tk.Header.Typ = ""
			p.AllowedTyp = []string{"JWT"}
		}, ReasonAssertionTypeInvalid},
		{"allowed_typ JWT only refuses at+jwt", func(tk *token.Token, p *AssertionPolicy) {
			tk.Header.Typ = "at+jwt"
			p.AllowedTyp = []string{"JWT"}
		}, ReasonAssertionTypeInvalid},
		{"wrong issuer", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Issuer = "https://evil.example" }, ReasonAssertionIssuerUntrusted},
		{"issuer with trailing slash", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Issuer = src.Issuer + "/" }, ReasonAssertionIssuerUntrusted},
		{"two audiences", func(tk *token.Token, _ *AssertionPolicy) {
			tk.Claims.Audience = []string{tgt.Issuer, "account"}
		}, ReasonAssertionAudienceMultiple},
		{"no audience", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Audience = nil }, ReasonAssertionAudienceInvalid},
		{"other audience", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Audience = []string{"account"} }, ReasonAssertionAudienceInvalid},
		{"no exp", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Expiry = time.Time{} }, ReasonAssertionExpirationMissing},
		{"expired", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Expiry = now.Add(-time.Second) }, ReasonAssertionExpired},
		{"expired within skew", func(tk *token.Token, p *AssertionPolicy) {
			tk.Claims.Expiry = now.Add(-time.Second)
			p.ClockSkew = 5 * time.Second
		}, ""},
		{"nbf in future", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.NotBefore = now.Add(time.Minute) }, ReasonAssertionNotYetValid},
		{"iat in future", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.IssuedAt = now.Add(time.Minute) }, ReasonAssertionNotYetValid},
		{"lifetime above max", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Expiry = now.Add(time.Hour) }, ReasonAssertionLifetimeTooLong},
		{"no iat, exp too far", func(tk *token.Token, _ *AssertionPolicy) {
			tk.Claims.IssuedAt = time.Time{}
			tk.Claims.Expiry = now.Add(301 * time.Second)
		}, ReasonAssertionLifetimeTooLong},
		{"age rule: a long-lived grant used at once", func(tk *token.Token, p *AssertionPolicy) {
			tk.Claims.Expiry = now.Add(time.Hour)
			p.AgeRule = true
		}, ""},
		{"age rule: issued more than the maximum ago", func(tk *token.Token, p *AssertionPolicy) {
			tk.Claims.IssuedAt = now.Add(-301 * time.Second)
			tk.Claims.Expiry = now.Add(time.Hour)
			p.AgeRule = true
		}, ReasonAssertionExpired},
		{"age rule: issued exactly the maximum ago", func(tk *token.Token, p *AssertionPolicy) {
			tk.Claims.IssuedAt = now.Add(-300 * time.Second)
			p.AgeRule = true
		}, ""},
		{"age rule: no iat, exp too far", func(tk *token.Token, p *AssertionPolicy) {
			tk.Claims.IssuedAt = time.Time{}
			tk.Claims.Expiry = now.Add(301 * time.Second)
			p.AgeRule = true
		}, ReasonAssertionLifetimeTooLong},
		{"no jti", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.JTI = "" }, ReasonAssertionJTIMissing},
		{"no jti, reuse allowed", func(tk *token.Token, p *AssertionPolicy) {
			tk.Claims.JTI = ""
			p.AllowReuse = true
		}, ""},
		{"no sub", func(tk *token.Token, _ *AssertionPolicy) { tk.Claims.Subject = "" }, ReasonAssertionSubjectMissing},
		{"id-jag ok", func(tk *token.Token, p *AssertionPolicy) {
			tk.Header.Typ = token.TypeIDJAG
			p.AllowedTyp = idJAGTyp
			tk.Claims.ClientID = "chainbroker"
		}, ""},
		{"id-jag without iat", func(tk *token.Token, p *AssertionPolicy) {
			tk.Header.Typ = token.TypeIDJAG
			p.AllowedTyp = idJAGTyp
			tk.Claims.ClientID = "chainbroker"
			tk.Claims.IssuedAt = time.Time{}
		}, ReasonAssertionIssuedAtMissing},
		{"id-jag other client", func(tk *token.Token, p *AssertionPolicy) {
			tk.Header.Typ = token.TypeIDJAG
			p.AllowedTyp = idJAGTyp
			tk.Claims.ClientID = "someone-else"
		}, ReasonAssertionClientIDMismatch},
		{"id-jag needs jti even with reuse", func(tk *token.Token, p *AssertionPolicy) {
			tk.Header.Typ = token.TypeIDJAG
			p.AllowedTyp = idJAGTyp
			tk.Claims.ClientID = "chainbroker"
			tk.Claims.JTI = ""
			p.AllowReuse = true
		}, ReasonAssertionJTIMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := good()
			target := *tgt
			tt.mutate(tk, &target.Assertion)
			err := checkClaims(tk, src, &target, now)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("want %s, got valid", tt.want)
			case tt.want != "" && err.Reason != tt.want:
				t.Fatalf("want %s, got %s (%s)", tt.want, err.Reason, err.Message)
			}
		})
	}
}

func TestScopeAndURIRules(t *testing.T) {
	for _, tt := range []struct {
		s     string
		scope bool
		uri   bool
	}{
		{"openid", true, false},
		{"read:all", true, true}, // syntactically a URI with scheme "read"
		{"has space", false, false},
		{`quote"`, false, false},
		{"https://api.example/x", true, true},
		{"urn:example:thing", true, true},
		{"https://api.example/x#frag", true, false},
		{"1http://x", true, false},
		{"", true, false},
	} {
		if got := validScopeToken(tt.s); got != tt.scope {
			t.Errorf("validScopeToken(%q) = %v, want %v", tt.s, got, tt.scope)
		}
		if got := absoluteURI(tt.s); got != tt.uri {
			t.Errorf("absoluteURI(%q) = %v, want %v", tt.s, got, tt.uri)
		}
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	for _, s := range []string{strings.Repeat("é", 100), "x" + strings.Repeat("é", 80), "bad \xff byte", strings.Repeat("a", 200)} {
		got := truncate(s)
		if !utf8.ValidString(got) || len(got) > 128+len("…") {
			t.Errorf("truncate(%.20q...) = %q: invalid UTF-8 or too long", s, got)
		}
	}
}

// An unknown kid while the source's JWKS cannot be refetched yet is a
// transient condition (a key rotation the cached copy predates), answered
// with a retry delay and the kid named; a kid missing from a freshly
// fetched JWKS is the configuration disagreement ASSERTION_KEY_UNKNOWN.
func TestVerifyErrorKeyUnknown(t *testing.T) {
	src := &Domain{Name: "domain-a"}
	tests := []struct {
		name      string
		err       error
		reason    Reason
		retry     time.Duration
		msgHasKid bool
	}{
		{"refetch pending", &token.KeyUnknownError{Kid: "k2", Alg: "RS256", RefreshIn: 11500 * time.Millisecond}, ReasonKeysRefreshing, 12 * time.Second, true},
		{"just fetched", &token.KeyUnknownError{Kid: "k2", Alg: "RS256"}, ReasonAssertionKeyUnknown, 0, true},
		{"keys unavailable", token.ErrKeysUnavailable, ReasonKeysUnavailable, 0, false},
	}
	for _, tt := range tests {
		e := verifyError(src, tt.err)
		if e.Reason != tt.reason || e.RetryAfter != tt.retry || strings.Contains(e.Message, `"k2"`) != tt.msgHasKid {
			t.Errorf("%s: got %s, retry %v, message %q", tt.name, e.Reason, e.RetryAfter, e.Message)
		}
	}
}
