package app_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/sandbox"
)

// keycloakRow is one Keycloak refusal (docs/keycloak.md, "Pitfalls"): the
// misconfiguration that causes it in the sandbox and what the caller sees.
type keycloakRow struct {
	name   string
	mutate func(*config.File)                    // the broker's configuration, before it starts
	setup  func(*testing.T, *apptest.Env)        // the realms' misconfiguration
	status int                                   // HTTP status of POST /v1/chain
	reason string                                // ErrorInfo reason
	hop    string                                // ErrorInfo metadata hop
	cause  string                                // metadata upstream_cause ("" = none)
	oauth  string                                // metadata error: Keycloak's code ("" = the broker refused before the call)
	text   string                                // metadata error_description: Keycloak's text, exactly
	subj   func(*testing.T, *apptest.Env) string // subject token; nil: alice's
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func keycloakRows() []keycloakRow {
	const elsewhere = "https://elsewhere.example/realms/x"
	return []keycloakRow{
		{name: "exchange switch off", setup: func(t *testing.T, e *apptest.Env) { e.Sandbox.A.SetStandardTokenExchange(false) },
			status: 400, reason: "TOKEN_EXCHANGE_REJECTED", hop: "token_exchange", cause: "source_client_exchange_disabled",
			oauth: "invalid_request", text: sandbox.DescExchangeNotEnabled},
		{name: "audience not available", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.A.SetAudienceClient(e.Sandbox.B.Issuer(), sandbox.AudienceNotAvailable)
		}, status: 400, reason: "TOKEN_EXCHANGE_REJECTED", hop: "token_exchange", cause: "source_audience_not_available",
			oauth: "invalid_request", text: sandbox.DescAudienceNotAvailable + "{B}"},
		{name: "audience client missing", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.A.SetAudienceClient(e.Sandbox.B.Issuer(), sandbox.AudienceClientMissing)
		}, status: 400, reason: "TOKEN_EXCHANGE_REJECTED", hop: "token_exchange", cause: "source_audience_client_missing",
			oauth: "invalid_client", text: sandbox.DescAudienceNotFound},
		{name: "audience client disabled", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.A.SetAudienceClient(e.Sandbox.B.Issuer(), sandbox.AudienceClientDisabled)
		}, status: 400, reason: "TOKEN_EXCHANGE_REJECTED", hop: "token_exchange", cause: "source_audience_client_disabled",
			oauth: "invalid_client", text: sandbox.DescClientDisabled},
		{name: "broker not in the subject token's audience", subj: func(t *testing.T, e *apptest.Env) string {
			tok, err := e.Sandbox.A.SubjectTokenWithAudience(ctxT(t), sandbox.Alice, sandbox.AlicePassword, []string{"account"})
			must(t, err)
			return tok
		}, status: 403, reason: "TOKEN_EXCHANGE_REJECTED", hop: "token_exchange", cause: "subject_token_audience",
			oauth: "access_denied", text: sandbox.DescClientNotInAudience},

		{name: "grant off on the client", setup: func(t *testing.T, e *apptest.Env) { e.Sandbox.B.SetJWTAuthorizationGrant(false) },
			status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_client_grant_disabled",
			oauth: "invalid_grant", text: sandbox.DescJWTGrantDisabled},
		{name: "provider not allowed for the client", setup: func(t *testing.T, e *apptest.Env) { e.Sandbox.B.SetAllowedIdentityProviders() },
			status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_client_idp_not_allowed",
			oauth: "invalid_grant", text: sandbox.DescIdPNotAllowed},
		{name: "provider disabled", setup: func(t *testing.T, e *apptest.Env) {
			must(t, e.Sandbox.B.SetIdentityProviderEnabled(sandbox.IdentityProviderAlias, false))
		}, status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_idp_issuer",
			oauth: "invalid_grant", text: sandbox.DescUnknownIssuer},
		{name: "two providers with one issuer", setup: func(t *testing.T, e *apptest.Env) {
			must(t, e.Sandbox.B.AddIdentityProviderTwin(sandbox.IdentityProviderAlias, "domain-a-copy"))
		}, status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_idp_ambiguous",
			oauth: "invalid_grant", text: sandbox.DescMultipleIdPs + "[domain-a, domain-a-copy]"},
		{name: "user not linked", setup: func(t *testing.T, e *apptest.Env) { e.Sandbox.B.Unlink(sandbox.AliceSubA) },
			status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_user_unlinked",
			oauth: "invalid_grant", text: sandbox.DescUserNotFound},
		{name: "user disabled", setup: func(t *testing.T, e *apptest.Env) { must(t, e.Sandbox.B.SetUserEnabled(sandbox.Alice, false)) },
			status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_user_disabled",
			oauth: "invalid_grant", text: sandbox.DescUserDisabled},
		{name: "user with a required action", setup: func(t *testing.T, e *apptest.Env) {
			must(t, e.Sandbox.B.SetRequiredActions(sandbox.Alice, "UPDATE_PASSWORD"))
		}, status: 403, reason: "JWT_BEARER_REJECTED", hop: "jwt_bearer", cause: "target_user_required_action",
			oauth: "invalid_grant", text: sandbox.DescAccountNotSetUp},

		{name: "jti already used at the target", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{FixedJTI: "seen-elsewhere"})
			e.Sandbox.B.RememberJTI(e.Sandbox.A.Issuer(), "seen-elsewhere", time.Now().Add(time.Hour))
		}, status: 403, reason: "ASSERTION_REPLAYED", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescTokenReuse},
		{name: "audience the target does not take", mutate: func(f *config.File) {
			f.Domains[1].Assertion.Audience = append(f.Domains[1].Assertion.Audience, elsewhere)
			f.Chains[0].Audience = elsewhere
		}, setup: func(t *testing.T, e *apptest.Env) { e.Sandbox.A.AllowAudience(elsewhere) },
			status: 400, reason: "ASSERTION_AUDIENCE_INVALID", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescInvalidAudience},
		{name: "no jti while the target forbids reuse", mutate: func(f *config.File) { f.Domains[1].Assertion.AllowReuse = true },
			setup:  func(t *testing.T, e *apptest.Env) { e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{OmitJTI: true}) },
			status: 400, reason: "ASSERTION_JTI_MISSING", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescJTIRequired},
		{name: "expired for the target's clock skew", mutate: func(f *config.File) { f.Domains[1].Assertion.ClockSkew = config.Duration(2 * time.Minute) },
			setup:  func(t *testing.T, e *apptest.Env) { e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Expired: true}) },
			status: 400, reason: "ASSERTION_EXPIRED", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescNotActive},
		{name: "issued in the future for the target's clock skew", mutate: func(f *config.File) { f.Domains[1].Assertion.ClockSkew = config.Duration(2 * time.Minute) },
			setup: func(t *testing.T, e *apptest.Env) {
				e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{IssuedAtFuture: true})
			},
			status: 400, reason: "ASSERTION_NOT_YET_VALID", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescIssuedInFuture},
		{name: "older than the provider's maximum age", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.B.SetTrust(sandbox.Trust{MaxAssertionAge: time.Minute})
			e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{IssuedAtAge: 2 * time.Minute, Lifetime: 5 * time.Minute})
		}, status: 400, reason: "ASSERTION_EXPIRED", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescIssuedTooLongAgo},
		{name: "far exp without iat", mutate: func(f *config.File) { f.Domains[1].Assertion.MaxLifetime = config.Duration(15 * time.Minute) },
			setup: func(t *testing.T, e *apptest.Env) {
				e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Lifetime: 10 * time.Minute, ExtraClaims: map[string]any{"iat": nil}})
			}, status: 400, reason: "ASSERTION_LIFETIME_TOO_LONG", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescNoIssuedAtTooLong},
		{name: "provider's JWKS URL is not realm A's", setup: func(t *testing.T, e *apptest.Env) {
			must(t, e.Sandbox.B.TrustIdentityProvider(sandbox.IdentityProviderAlias, e.Sandbox.A.Issuer(), e.Sandbox.B.JWKSURI(), sandbox.DefaultTrust()))
		}, status: 400, reason: "ASSERTION_SIGNATURE_INVALID", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescInvalidSignature},
		{name: "provider pins another algorithm", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.B.SetTrust(sandbox.Trust{AllowedAlgs: []string{"ES256"}})
		}, status: 400, reason: "ASSERTION_ALG_NOT_ALLOWED", hop: "jwt_bearer", oauth: "invalid_grant", text: sandbox.DescInvalidSignatureAlg},
		{name: "two audiences: the broker refuses before realm B", setup: func(t *testing.T, e *apptest.Env) {
			e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraAudience: "account"})
		}, status: 400, reason: "ASSERTION_AUDIENCE_MULTIPLE", hop: "token_exchange"},
	}
}

// Each Keycloak refusal of docs/keycloak.md's pitfalls, caused in the
// sandbox by its misconfiguration: the caller sees its own reason and
// status, Keycloak's code and text verbatim, and the setting at fault.
func TestKeycloakRefusals(t *testing.T) {
	for _, row := range keycloakRows() {
		t.Run(row.name, func(t *testing.T) {
			e := apptest.Start(t, row.mutate)
			if row.setup != nil {
				row.setup(t, e)
			}
			subject := e.SubjectToken(t, sandbox.Alice)
			if row.subj != nil {
				subject = row.subj(t, e)
			}
			status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": "domain-b"})
			var resp struct {
				Details []struct {
					Reason   string            `json:"reason"`
					Metadata map[string]string `json:"metadata"`
				} `json:"details"`
			}
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Details) == 0 {
				t.Fatalf("HTTP %d %s: %v", status, body, err)
			}
			info := resp.Details[0]
			text := strings.ReplaceAll(row.text, "{B}", e.Sandbox.B.Issuer())
			md := info.Metadata
			if status != row.status || info.Reason != row.reason || md["hop"] != row.hop || md["upstream_cause"] != row.cause ||
				md["error"] != row.oauth || md["error_description"] != text {
				t.Errorf("got HTTP %d %s %v\nwant HTTP %d %s hop=%s upstream_cause=%q error=%q error_description=%q",
					status, info.Reason, md, row.status, row.reason, row.hop, row.cause, row.oauth, text)
			}
			if row.oauth == "" && e.Sandbox.B.JWTBearerCount() != 0 {
				t.Errorf("realm B was called %d times; the broker should have refused first", e.Sandbox.B.JWTBearerCount())
			}
		})
	}
}

// A realm A client with "Use at+jwt" (RFC 9068) issues grants typed
// at+jwt, which Keycloak takes: so does the broker. ID-JAG is refused unless
// the target lists it in assertion.allowed_typ.
func TestKeycloakGrantTyp(t *testing.T) {
	for _, tt := range []struct {
		name    string
		typ     string
		allowed []string
		reason  string
	}{
		{"at+jwt", "at+jwt", nil, ""},
		{"ID-JAG not by default", "oauth-id-jag+jwt", nil, "ASSERTION_TYPE_INVALID"},
		{"at+jwt when the target lists JWT only", "at+jwt", []string{"JWT"}, "ASSERTION_TYPE_INVALID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := apptest.Start(t, func(f *config.File) { f.Domains[1].Assertion.AllowedTyp = tt.allowed })
			e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Typ: tt.typ})
			status, body := e.Post(t, "/v1/chain", map[string]any{
				"subject_token": e.SubjectToken(t, sandbox.Alice), "target_domain": "domain-b"})
			switch {
			case tt.reason == "" && status != http.StatusOK:
				t.Fatalf("HTTP %d %s", status, body)
			case tt.reason != "" && (status != http.StatusBadRequest || !strings.Contains(string(body), `"`+tt.reason+`"`)):
				t.Fatalf("HTTP %d %s, want 400 %s", status, body, tt.reason)
			}
		})
	}
}

// pitfall is one row of docs/keycloak.md's pitfalls table.
type pitfall struct {
	hop, code, text, reason, cause string
	status                         int
}

var pitfallRow = regexp.MustCompile("^\\| realm ([AB]) `([a-z_]+)` \"(.+)\" \\| `([A-Z_]+)`(?: `upstream_cause=([a-z_]+)`)? \\| (\\d{3}) \\| .+ \\|$")

func readPitfalls(t *testing.T) []pitfall {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "keycloak.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "## 6. Pitfalls")
	if i < 0 {
		t.Fatal("docs/keycloak.md has no section 6. Pitfalls")
	}
	sec := doc[i+3:]
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	var out []pitfall
	for line := range strings.SplitSeq(sec, "\n") {
		if !strings.HasPrefix(line, "| realm ") {
			continue
		}
		m := pitfallRow.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("pitfalls row not in the expected form (| realm X `code` \"text\" | `REASON` [`upstream_cause=...`] | status | fix |): %s", line)
			continue
		}
		hop := broker.HopTokenExchange
		if m[1] == "B" {
			hop = broker.HopJWTBearer
		}
		status, _ := strconv.Atoi(m[6])
		out = append(out, pitfall{hop: hop, code: m[2], text: m[3], reason: m[4], cause: m[5], status: status})
	}
	if len(out) < 20 {
		t.Fatalf("docs/keycloak.md lists %d pitfalls, want at least 20", len(out))
	}
	return out
}

// placeholder is a <value> in a documented text (Keycloak appends it).
var placeholder = regexp.MustCompile(`<[^>]*>`)

// docs/keycloak.md's pitfalls table says what the code does: each text maps
// to the listed reason and cause through the broker's mapping, each reason
// exists, and each row is one TestKeycloakRefusals causes with the listed
// HTTP status (and each refusal that test causes is documented).
func TestKeycloakPitfallsDocumented(t *testing.T) {
	rows := keycloakRows()
	documented := map[string]bool{}
	for _, p := range readPitfalls(t) {
		sample := placeholder.ReplaceAllString(p.text, "x")
		reason, cause := broker.UpstreamReason(p.hop, &oauth.Error{Code: p.code, Description: sample})
		if string(reason) != p.reason || cause != p.cause {
			t.Errorf("%q: the broker maps it to %s upstream_cause=%q; the page says %s upstream_cause=%q", p.text, reason, cause, p.reason, p.cause)
		}
		if !slices.Contains(broker.Reasons(), broker.Reason(p.reason)) {
			t.Errorf("%q: %s is not a reason", p.text, p.reason)
		}
		re := regexp.MustCompile("^" + placeholder.ReplaceAllString(regexp.QuoteMeta(p.text), ".+") + "$")
		found := false
		for _, r := range rows {
			text := strings.ReplaceAll(r.text, "{B}", "http://127.0.0.1:1/realms/domain-b")
			local := r.oauth == "" && r.reason == p.reason // the broker refuses before realm B
			if (r.oauth != "" && re.MatchString(text) && r.oauth == p.code) || local {
				found = true
				documented[r.name] = true
				if r.reason != p.reason || r.status != p.status || r.cause != p.cause {
					t.Errorf("%q: the page says %s %d upstream_cause=%q; TestKeycloakRefusals sees %s %d upstream_cause=%q",
						p.text, p.reason, p.status, p.cause, r.reason, r.status, r.cause)
				}
			}
		}
		if !found {
			t.Errorf("%q: no row of TestKeycloakRefusals causes it", p.text)
		}
	}
	for _, r := range rows {
		if !documented[r.name] {
			t.Errorf("TestKeycloakRefusals row %q (%s) is not in docs/keycloak.md's pitfalls", r.name, r.text)
		}
	}
}

// Keycloak bounds a grant's age (now - iat), not exp - iat. By default the
// broker is stricter and refuses a grant living longer than max_lifetime
// before realm B sees it; lifetime_rule: age mirrors Keycloak, which takes
// such a grant presented at once.
func TestKeycloakLifetimeRule(t *testing.T) {
	for _, tt := range []struct {
		rule   string
		status int
		reason string
	}{
		{"", http.StatusBadRequest, "ASSERTION_LIFETIME_TOO_LONG"},
		{"strict", http.StatusBadRequest, "ASSERTION_LIFETIME_TOO_LONG"},
		{"age", http.StatusOK, ""},
	} {
		t.Run("rule "+tt.rule, func(t *testing.T) {
			e := apptest.Start(t, func(f *config.File) { f.Domains[1].Assertion.LifetimeRule = tt.rule })
			e.Sandbox.B.SetTrust(sandbox.Trust{AgeOnly: true}) // Keycloak's checks only
			e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Lifetime: 10 * time.Minute})
			status, body := e.Post(t, "/v1/chain", map[string]any{
				"subject_token": e.SubjectToken(t, sandbox.Alice), "target_domain": "domain-b"})
			if status != tt.status || (tt.reason != "" && !strings.Contains(string(body), `"`+tt.reason+`"`)) {
				t.Fatalf("HTTP %d %s, want %d %s", status, body, tt.status, tt.reason)
			}
			if tt.reason != "" && e.Sandbox.B.JWTBearerCount() != 0 {
				t.Errorf("realm B was called; the broker should refuse first")
			}
		})
	}
	f := &config.File{Domains: []config.Domain{{Name: "x", Assertion: config.AssertionPolicy{LifetimeRule: "loose"}}}}
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "assertion.lifetime_rule") {
		t.Errorf("lifetime_rule loose: %v", err)
	}
}
