package sandbox

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

func azureForm(clientID, scope, assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {clientID},
		"scope":                 {scope},
		"client_assertion_type": {azureClientAssertionType},
		"client_assertion":      {assertion},
	}
}

var entraDescription = regexp.MustCompile(`^AADSTS(\d+): (.*) Trace ID: [0-9a-f-]{36} Correlation ID: [0-9a-f-]{36} Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`)

// wantEntraError checks Entra's error JSON: status, error, the AADSTS code
// in error_description and error_codes, and the text (a prefix when it
// ends in "…").
func wantEntraError(t *testing.T, r reply, status int, oauthErr string, code int, text string) {
	t.Helper()
	m := entraDescription.FindStringSubmatch(r.str("error_description"))
	codes, _ := r.body["error_codes"].([]any)
	if r.status != status || r.str("error") != oauthErr || m == nil || m[1] != strconv.Itoa(code) ||
		len(codes) != 1 || codes[0] != float64(code) || r.str("trace_id") == "" || r.str("correlation_id") == "" ||
		r.str("timestamp") == "" || r.str("error_uri") != "https://login.microsoftonline.com/error?code="+strconv.Itoa(code) {
		t.Fatalf("got %v, want HTTP %d %s AADSTS%d", r, status, oauthErr, code)
	}
	if p, ok := strings.CutSuffix(text, "…"); ok {
		if !strings.HasPrefix(m[2], p) {
			t.Fatalf("text %q, want prefix %q", m[2], p)
		}
	} else if m[2] != text {
		t.Fatalf("text %q, want %q", m[2], text)
	}
}

func TestCloudAzureDomainA(t *testing.T) {
	sb := startWithCloud(t)
	az := sb.Cloud.Azure
	r := post(t, az.TokenEndpoint(AzureTenantID), azureForm(AzureClientID, AzureResource+"/.default", cloudExchange(t, sb, AzureAudience)), "", "")
	if r.status != http.StatusOK || r.str("token_type") != "Bearer" || r.body["expires_in"] != float64(3599) || r.body["ext_expires_in"] != float64(3599) {
		t.Fatalf("token: %v", r)
	}
	v, err := az.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	at, err := v.Verify(t.Context(), r.str("access_token"))
	if err != nil {
		t.Fatal(err)
	}
	if appid, _ := at.StringClaim("appid"); appid != AzureClientID || at.Claims.Issuer != az.Issuer(AzureTenantID) ||
		len(at.Claims.Audience) != 1 || at.Claims.Audience[0] != AzureResource {
		t.Fatalf("access token claims: %+v", at.Claims)
	}
	// The keys are published where the issuer says.
	if k := get(t, az.JWKSURI(AzureTenantID)); k.status != http.StatusOK || !strings.Contains(k.raw, `"keys"`) {
		t.Fatalf("keys: %v", k)
	}
}

func TestCloudAzureRefusals(t *testing.T) {
	sb := startWithCloud(t)
	az := sb.Cloud.Azure
	ti := newTestIssuer(t)
	dead := deadURL(t)
	const tenant, app = "tenant-1", "app-1"
	if err := az.AddApp(tenant, app,
		AzureFederatedCredential{Name: "svc", Issuer: ti.url, Subject: "svc-1"},
		AzureFederatedCredential{Name: "custom-aud", Issuer: ti.url, Subject: "svc-2", Audience: "api://custom"},
		AzureFederatedCredential{Name: "dead", Issuer: dead, Subject: "svc-3"},
	); err != nil {
		t.Fatal(err)
	}
	if err := az.AddApp(tenant, "bad", AzureFederatedCredential{Issuer: ti.url, Subject: strings.Repeat("s", 601)}); err == nil {
		t.Fatal("AddApp accepted a subject above 600 characters")
	}
	ep := az.TokenEndpoint(tenant)
	scope := AzureResource + "/.default"
	good := func(edit map[string]any) string {
		c := map[string]any{"sub": "svc-1", "aud": AzureAudience}
		for k, v := range edit {
			c[k] = v
		}
		return ti.token(t, ti.rs, c, token.SignOptions{})
	}
	with := func(f url.Values, k, v string) url.Values {
		if v == "\x00" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	deadTok, err := ti.rs.Sign(map[string]any{"iss": dead, "sub": "svc-3", "aud": AzureAudience, "exp": time.Now().Add(time.Minute).Unix()}, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name     string
		endpoint string
		form     url.Values
		status   int
		err      string
		code     int
		text     string
	}{
		{"ok", ep, azureForm(app, scope, good(nil)), 200, "", 0, ""},
		{"ok ES256", ep, azureForm(app, scope, ti.token(t, ti.es, map[string]any{"sub": "svc-1", "aud": AzureAudience}, token.SignOptions{})), 200, "", 0, ""},
		{"ok configured audience", ep, azureForm(app, scope, good(map[string]any{"sub": "svc-2", "aud": "api://custom"})), 200, "", 0, ""},
		{"ok app ID URI as resource", ep, azureForm(app, "api://"+app+"/.default", good(nil)), 200, "", 0, ""},
		{"unknown tenant", az.TokenEndpoint("nope"), azureForm(app, scope, good(nil)), 400, "invalid_request", AzureCodeTenantNotFound,
			"Tenant 'nope' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."},
		{"no grant type", ep, with(azureForm(app, scope, good(nil)), "grant_type", "\x00"), 400, "invalid_request", AzureCodeMissingParameter,
			"The request body must contain the following parameter: 'grant_type'."},
		{"wrong grant type", ep, with(azureForm(app, scope, good(nil)), "grant_type", "password"), 400, "unsupported_grant_type", AzureCodeUnsupportedGrant,
			"The app requested an unsupported grant type 'password'."},
		{"no client id", ep, with(azureForm(app, scope, good(nil)), "client_id", "\x00"), 400, "invalid_request", AzureCodeMissingParameter,
			"The request body must contain the following parameter: 'client_id'."},
		{"unknown app", ep, azureForm("app-2", scope, good(nil)), 400, "unauthorized_client", AzureCodeAppNotFound,
			"Application with identifier 'app-2' was not found in the directory 'tenant-1'.…"},
		{"no scope", ep, with(azureForm(app, scope, good(nil)), "scope", "\x00"), 400, "invalid_request", AzureCodeMissingParameter,
			"The request body must contain the following parameter: 'scope'."},
		{"scope without .default", ep, azureForm(app, AzureResource+"/user_impersonation", good(nil)), 400, "invalid_scope", AzureCodeScopeNotDefault,
			"The provided value for scope " + AzureResource + "/user_impersonation is not valid.…"},
		{"unknown resource", ep, azureForm(app, "https://nope.example/.default", good(nil)), 400, "invalid_resource", AzureCodeResourceNotFound,
			"The resource principal named https://nope.example was not found in the tenant named tenant-1.…"},
		{"no assertion", ep, with(azureForm(app, scope, ""), "client_assertion", "\x00"), 401, "invalid_client", AzureCodeCredentialRequired, "…"},
		{"wrong assertion type", ep, with(azureForm(app, scope, good(nil)), "client_assertion_type", "urn:x"), 401, "invalid_client", AzureCodeCredentialRequired, "…"},
		{"malformed assertion", ep, azureForm(app, scope, "not.a.jwt"), 400, "invalid_request", AzureCodeMalformed, "JWT token is invalid or malformed."},
		{"issuer mismatch", ep, azureForm(app, scope, good(map[string]any{"iss": ti.url + "/"})), 400, "invalid_request", AzureCodeIssuerNoMatch,
			"No matching federated identity record found for presented assertion issuer '" + ti.url + "/'.…"},
		{"audience mismatch", ep, azureForm(app, scope, good(map[string]any{"aud": "api://other"})), 400, "invalid_request", AzureCodeAudienceNoMatch,
			"No matching federated identity record found for presented assertion audience 'api://other'.…"},
		{"two audiences", ep, azureForm(app, scope, good(map[string]any{"aud": []string{AzureAudience, "x"}})), 400, "invalid_request", AzureCodeAudienceNoMatch, "…"},
		{"subject mismatch", ep, azureForm(app, scope, good(map[string]any{"sub": "svc-9"})), 400, "invalid_request", AzureCodeSubjectNoMatch,
			"No matching federated identity record found for presented assertion. Assertion Issuer: '" + ti.url + "'. Assertion Subject: 'svc-9'. Assertion Audience: '" + AzureAudience + "'."},
		{"subject differs in case", ep, azureForm(app, scope, good(map[string]any{"sub": "SVC-1"})), 400, "invalid_request", AzureCodeSubjectNoMatch, "…"},
		{"subject above 600 characters", ep, azureForm(app, scope, good(map[string]any{"sub": strings.Repeat("s", 601)})), 400, "invalid_request", AzureCodeSubjectNoMatch, "…"},
		{"bad signature", ep, azureForm(app, scope, ti.token(t, ti.rogue, map[string]any{"sub": "svc-1", "aud": AzureAudience}, token.SignOptions{Kid: ti.rs.KeyID()})),
			401, "invalid_client", AzureCodeSignature, "Client assertion failed signature validation."},
		{"issuer keys unreachable", ep, azureForm(app, scope, deadTok), 400, "invalid_request", AzureCodeOIDCUnreachable, "Request to External OIDC endpoint failed."},
		{"expired", ep, azureForm(app, scope, good(map[string]any{"exp": now.Add(-time.Minute).Unix()})), 401, "invalid_client", AzureCodeTimeRange,
			"Client assertion is not within its valid time range. Current time: …"},
		{"not yet valid", ep, azureForm(app, scope, good(map[string]any{"nbf": now.Add(time.Hour).Unix()})), 401, "invalid_client", AzureCodeTimeRange, "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, tc.endpoint, tc.form, "", "")
			if tc.status == http.StatusOK {
				if r.status != http.StatusOK || r.str("access_token") == "" {
					t.Fatalf("got %v", r)
				}
				return
			}
			wantEntraError(t, r, tc.status, tc.err, tc.code, tc.text)
		})
	}
}

func TestCloudAzureThrottling(t *testing.T) {
	sb := startWithCloud(t)
	az := sb.Cloud.Azure
	form := azureForm(AzureClientID, AzureResource+"/.default", cloudExchange(t, sb, AzureAudience))
	az.SetThrottle(1)
	r := post(t, az.TokenEndpoint(AzureTenantID), form, "", "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" || r.str("error") != "temporarily_unavailable" {
		t.Fatalf("throttled: %v", r)
	}
	if r = post(t, az.TokenEndpoint(AzureTenantID), form, "", ""); r.status != http.StatusOK {
		t.Fatalf("retry: %v", r)
	}
	if az.Requests() != 2 {
		t.Fatalf("Requests() = %d", az.Requests())
	}
}
