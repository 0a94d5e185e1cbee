package sandbox

import (
	"net/http"
	"testing"
	"time"
)

// Each configuration switch makes the realm answer as Keycloak does for that
// misconfiguration (HTTP status, OAuth error, text), and switching it back
// restores normal service.
func TestKeycloakSwitches(t *testing.T) {
	tests := []struct {
		name   string
		hop2   bool // the refusal is domain B's
		set    func(*testing.T, *Sandbox)
		unset  func(*testing.T, *Sandbox)
		status int
		code   string
		desc   func(*Sandbox) string
	}{
		{"standard token exchange off", false,
			func(_ *testing.T, sb *Sandbox) { sb.A.SetStandardTokenExchange(false) },
			func(_ *testing.T, sb *Sandbox) { sb.A.SetStandardTokenExchange(true) },
			400, errInvalidRequest, func(*Sandbox) string { return DescExchangeNotEnabled }},
		{"audience not available", false,
			func(_ *testing.T, sb *Sandbox) { sb.A.SetAudienceClient(sb.B.Issuer(), AudienceNotAvailable) },
			func(_ *testing.T, sb *Sandbox) { sb.A.SetAudienceClient(sb.B.Issuer(), AudienceAvailable) },
			400, errInvalidRequest, func(sb *Sandbox) string { return DescAudienceNotAvailable + sb.B.Issuer() }},
		{"audience client missing", false,
			func(_ *testing.T, sb *Sandbox) { sb.A.SetAudienceClient(sb.B.Issuer(), AudienceClientMissing) },
			func(_ *testing.T, sb *Sandbox) { sb.A.AllowAudience(sb.B.Issuer()) },
			400, errInvalidClient, func(*Sandbox) string { return DescAudienceNotFound }},
		{"audience client disabled", false,
			func(_ *testing.T, sb *Sandbox) { sb.A.SetAudienceClient(sb.B.Issuer(), AudienceClientDisabled) },
			func(_ *testing.T, sb *Sandbox) { sb.A.SetAudienceClient(sb.B.Issuer(), AudienceAvailable) },
			400, errInvalidClient, func(*Sandbox) string { return DescClientDisabled }},
		{"grant off on the client", true,
			func(_ *testing.T, sb *Sandbox) { sb.B.SetJWTAuthorizationGrant(false) },
			func(_ *testing.T, sb *Sandbox) { sb.B.SetJWTAuthorizationGrant(true) },
			400, errInvalidGrant, func(*Sandbox) string { return DescJWTGrantDisabled }},
		{"provider disabled", true,
			func(t *testing.T, sb *Sandbox) {
				mustNil(t, sb.B.SetIdentityProviderEnabled(IdentityProviderAlias, false))
			},
			func(t *testing.T, sb *Sandbox) {
				mustNil(t, sb.B.SetIdentityProviderEnabled(IdentityProviderAlias, true))
			},
			400, errInvalidGrant, func(*Sandbox) string { return DescUnknownIssuer }},
		{"two providers with one issuer", true,
			func(t *testing.T, sb *Sandbox) {
				mustNil(t, sb.B.AddIdentityProviderTwin(IdentityProviderAlias, "twin"))
			},
			nil,
			400, errInvalidGrant, func(*Sandbox) string { return DescMultipleIdPs + "[domain-a, twin]" }},
		{"user disabled", true,
			func(t *testing.T, sb *Sandbox) { mustNil(t, sb.B.SetUserEnabled(Alice, false)) },
			func(t *testing.T, sb *Sandbox) { mustNil(t, sb.B.SetUserEnabled(Alice, true)) },
			400, errInvalidGrant, func(*Sandbox) string { return DescUserDisabled }},
		{"required action", true,
			func(t *testing.T, sb *Sandbox) { mustNil(t, sb.B.SetRequiredActions(Alice, "VERIFY_EMAIL")) },
			func(t *testing.T, sb *Sandbox) { mustNil(t, sb.B.SetRequiredActions(Alice)) },
			400, errInvalidGrant, func(*Sandbox) string { return DescAccountNotSetUp }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := start(t)
			tt.set(t, sb)
			var r reply
			if tt.hop2 {
				r = jwtBearer(t, sb, assertion(t, sb))
			} else {
				r = exchange(t, sb, subjectToken(t, sb, Alice))
			}
			wantError(t, r, tt.status, tt.code, tt.desc(sb))
			if tt.unset == nil {
				return
			}
			tt.unset(t, sb)
			if r := jwtBearer(t, sb, assertion(t, sb)); r.status != http.StatusOK {
				t.Fatalf("after switching back: %v", r)
			}
		})
	}
}

// A jti B remembers from elsewhere is refused as reused.
func TestKeycloakRememberJTI(t *testing.T) {
	sb := start(t)
	sb.A.SetMisbehaviour(Misbehaviour{FixedJTI: "used-elsewhere"})
	sb.B.RememberJTI(sb.A.Issuer(), "used-elsewhere", time.Now().Add(time.Hour))
	wantError(t, jwtBearer(t, sb, assertion(t, sb)), 400, errInvalidGrant, DescTokenReuse)
}

// With AgeOnly, B applies Keycloak's checks only: a grant living longer than
// the maximum is accepted when presented at once.
func TestKeycloakAgeOnly(t *testing.T) {
	sb := start(t)
	sb.A.SetMisbehaviour(Misbehaviour{Lifetime: 10 * time.Minute})
	wantError(t, jwtBearer(t, sb, assertion(t, sb)), 400, errInvalidGrant, DescLifetimeTooLong)
	sb.B.SetTrust(Trust{AgeOnly: true})
	if r := jwtBearer(t, sb, assertion(t, sb)); r.status != http.StatusOK {
		t.Fatalf("AgeOnly: %v", r)
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
