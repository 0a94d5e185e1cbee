package sandbox

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

func gcpForm(aud, tok string) url.Values {
	return url.Values{
		"grant_type":           {gcpGrantTokenExchange},
		"audience":             {aud},
		"scope":                {GCPScope},
		"requested_token_type": {gcpTokenTypeAccessToken},
		"subject_token_type":   {gcpTokenTypeJWT},
		"subject_token":        {tok},
	}
}

// gcpImpersonate calls generateAccessToken for email with bearer and a
// JSON body.
func gcpImpersonate(t *testing.T, sb *Sandbox, email, bearer string, body any) reply {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.Cloud.GCP.GenerateAccessTokenURL(email), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return do(t, req)
}

// wantGoogleAPIError checks a Google API error body.
func wantGoogleAPIError(t *testing.T, r reply, code int, status, msg string) {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	if r.status != code || e == nil || e["status"] != status || e["code"] != float64(code) ||
		(msg != "" && e["message"] != msg) {
		t.Fatalf("got %v, want HTTP %d %s %q", r, code, status, msg)
	}
}

func TestCloudGCPDomainA(t *testing.T) {
	sb := startWithCloud(t)
	aud := GCPAudience(GCPProjectNumber, GCPPool, GCPProviderID)
	tok := cloudExchange(t, sb, aud)
	r := post(t, sb.Cloud.GCP.STSEndpoint(), gcpForm(aud, tok), "", "")
	if r.status != http.StatusOK || r.str("issued_token_type") != gcpTokenTypeAccessToken || r.str("token_type") != "Bearer" ||
		r.body["expires_in"] != float64(3600) || !strings.HasPrefix(r.str("access_token"), "ya29.") {
		t.Fatalf("STS: %v", r)
	}
	federated := r.str("access_token")
	if sub, ok := sb.Cloud.GCP.FederatedSubject(federated); !ok || sub != AliceSubA {
		t.Fatalf("federated subject %q %v", sub, ok)
	}
	g := gcpImpersonate(t, sb, GCPServiceAccount, federated, map[string]any{"scope": []string{GCPScope}, "lifetime": "1800s"})
	if g.status != http.StatusOK {
		t.Fatalf("generateAccessToken: %v", g)
	}
	exp, err := time.Parse(time.RFC3339, g.str("expireTime"))
	if err != nil || exp.Before(time.Now().Add(29*time.Minute)) || exp.After(time.Now().Add(31*time.Minute)) {
		t.Fatalf("expireTime %q", g.str("expireTime"))
	}
	at, ok := sb.Cloud.GCP.AccessToken(g.str("accessToken"))
	if !ok || at.ServiceAccount != GCPServiceAccount || at.Subject != AliceSubA {
		t.Fatalf("issued token: %+v %v", at, ok)
	}

	// The same exchange as JSON with the REST API's camelCase names.
	body, _ := json.Marshal(map[string]string{
		"grantType": gcpGrantTokenExchange, "audience": aud, "requestedTokenType": gcpTokenTypeAccessToken,
		"subjectTokenType": gcpTokenTypeIDToken, "subjectToken": cloudExchange(t, sb, aud),
	})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.Cloud.GCP.STSEndpoint(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if j := do(t, req); j.status != http.StatusOK {
		t.Fatalf("JSON request: %v", j)
	}
}

func TestCloudGCPRefusals(t *testing.T) {
	sb := startWithCloud(t)
	ti := newTestIssuer(t)
	gcp := sb.Cloud.GCP
	const pool, prov, provCond, provAud = "test-pool", "test-prov", "cond-prov", "aud-prov"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(gcp.AddProvider(GCPProvider{ProjectNumber: GCPProjectNumber, Pool: pool, Provider: prov, Issuer: ti.url}))
	must(gcp.AddProvider(GCPProvider{ProjectNumber: GCPProjectNumber, Pool: pool, Provider: provCond, Issuer: ti.url, AllowedSubjects: []string{"ok-user"}}))
	must(gcp.AddProvider(GCPProvider{ProjectNumber: GCPProjectNumber, Pool: pool, Provider: provAud, Issuer: ti.url, AllowedAudiences: []string{"custom-aud"}}))
	aud := GCPAudience(GCPProjectNumber, pool, prov)
	httpsAud := "https:" + aud
	condAud := GCPAudience(GCPProjectNumber, pool, provCond)
	good := func(s *token.Signer, edit map[string]any) string {
		c := map[string]any{"sub": "user-1", "aud": aud}
		for k, v := range edit {
			c[k] = v
		}
		return ti.token(t, s, c, token.SignOptions{})
	}
	with := func(f url.Values, k, v string) url.Values { f.Set(k, v); return f }
	now := time.Now()
	for _, tc := range []struct {
		name       string
		form       url.Values
		status     int
		code, desc string
	}{
		{"ok RS256", gcpForm(aud, good(ti.rs, nil)), 200, "", ""},
		{"ok ES256", gcpForm(aud, good(ti.es, nil)), 200, "", ""},
		{"ok aud with https:", gcpForm(aud, good(ti.rs, map[string]any{"aud": httpsAud})), 200, "", ""},
		{"ok aud among several", gcpForm(aud, good(ti.rs, map[string]any{"aud": []string{"x", aud}})), 200, "", ""},
		{"ok lifetime just under 48 h", gcpForm(aud, good(ti.rs, map[string]any{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(47*time.Hour - time.Second).Unix()})), 200, "", ""},
		{"ok configured audience", gcpForm(GCPAudience(GCPProjectNumber, pool, provAud), good(ti.rs, map[string]any{"aud": "custom-aud"})), 200, "", ""},
		{"ok attribute condition", gcpForm(condAud, good(ti.rs, map[string]any{"sub": "ok-user", "aud": condAud})), 200, "", ""},
		{"grant type", with(gcpForm(aud, good(ti.rs, nil)), "grant_type", "client_credentials"), 400, GCPErrUnsupportedGrantType, `Invalid value for "grant_type".`},
		{"requested token type", with(gcpForm(aud, good(ti.rs, nil)), "requested_token_type", gcpTokenTypeJWT), 400, GCPErrInvalidRequest, `Invalid value for "requested_token_type".`},
		{"subject token type", with(gcpForm(aud, good(ti.rs, nil)), "subject_token_type", gcpTokenTypeAccessToken), 400, GCPErrInvalidRequest, `Invalid value for "subject_token_type".`},
		{"no subject token", with(gcpForm(aud, ""), "subject_token", ""), 400, GCPErrInvalidRequest, `Missing required parameter "subject_token".`},
		{"audience not a resource name", gcpForm("projects/1/pools/x", good(ti.rs, nil)), 400, GCPErrInvalidRequest, GCPMsgAudienceFormat},
		{"unknown provider", gcpForm(GCPAudience(GCPProjectNumber, pool, "nope-prov"), good(ti.rs, nil)), 400, GCPErrInvalidTarget, GCPMsgTargetInvalid},
		{"scope", with(gcpForm(aud, good(ti.rs, nil)), "scope", "openid"), 400, "invalid_scope", "Only the cloud-platform scope is supported."},
		{"not a JWT", gcpForm(aud, "abc.def"), 400, GCPErrInvalidGrant, GCPMsgNotJWT},
		{"no kid", gcpForm(aud, withoutKid(t, good(ti.rs, nil), "RS256")), 400, GCPErrInvalidGrant, GCPMsgNoKid},
		{"alg RS384", gcpForm(aud, good(ti.rs384, nil)), 400, GCPErrInvalidGrant, GCPMsgAlg + "RS384"},
		{"alg PS256", gcpForm(aud, good(ti.ps, nil)), 400, GCPErrInvalidGrant, GCPMsgAlg + "PS256"},
		{"wrong iss", gcpForm(aud, good(ti.rs, map[string]any{"iss": "https://other.example"})), 400, GCPErrInvalidGrant,
			"The issuer in ID Token https://other.example does not match the expected ones: " + ti.url + "."},
		{"wrong aud", gcpForm(aud, good(ti.rs, map[string]any{"aud": "sts.amazonaws.com"})), 400, GCPErrInvalidGrant,
			"The audience in ID Token [sts.amazonaws.com] does not match the expected audience."},
		{"default aud refused when audiences configured", gcpForm(GCPAudience(GCPProjectNumber, pool, provAud), good(ti.rs, map[string]any{"aud": GCPAudience(GCPProjectNumber, pool, provAud)})), 400, GCPErrInvalidGrant,
			"The audience in ID Token [" + GCPAudience(GCPProjectNumber, pool, provAud) + "] does not match the expected audience."},
		{"expired", gcpForm(aud, good(ti.rs, map[string]any{"exp": now.Add(-time.Minute).Unix()})), 400, GCPErrInvalidGrant, GCPMsgExpired},
		{"no iat", gcpForm(aud, good(ti.rs, map[string]any{"iat": nil})), 400, GCPErrInvalidGrant, GCPMsgIssuedAt},
		{"iat in the future", gcpForm(aud, good(ti.rs, map[string]any{"iat": now.Add(time.Hour).Unix(), "exp": now.Add(2 * time.Hour).Unix()})), 400, GCPErrInvalidGrant, GCPMsgIssuedAt},
		{"lifetime 48 h", gcpForm(aud, good(ti.rs, map[string]any{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(47 * time.Hour).Unix()})), 400, GCPErrInvalidGrant, GCPMsgLifetime},
		{"bad signature", gcpForm(aud, ti.token(t, ti.rogue, map[string]any{"sub": "u", "aud": aud}, token.SignOptions{Kid: ti.rs.KeyID()})), 400, GCPErrInvalidGrant, GCPMsgKeys},
		{"no sub", gcpForm(aud, good(ti.rs, map[string]any{"sub": nil})), 400, GCPErrInvalidGrant, GCPMsgSubjectEmpty},
		{"sub above 127 bytes", gcpForm(aud, good(ti.rs, map[string]any{"sub": strings.Repeat("s", 128)})), 400, GCPErrInvalidGrant, GCPMsgSubjectTooLong},
		{"attribute condition", gcpForm(condAud, good(ti.rs, map[string]any{"aud": condAud})), 400, GCPErrUnauthorizedClient, GCPMsgConditionRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, gcp.STSEndpoint(), tc.form, "", "")
			if tc.status == http.StatusOK {
				if r.status != http.StatusOK || r.str("access_token") == "" {
					t.Fatalf("got %v, want a token", r)
				}
				return
			}
			wantError(t, r, tc.status, tc.code, tc.desc)
		})
	}
}

func TestCloudGCPGenerateAccessToken(t *testing.T) {
	sb := startWithCloud(t)
	gcp := sb.Cloud.GCP
	const long = "long@" + GCPProjectID + ".iam.gserviceaccount.com"
	const bobOnly = "bob-only@" + GCPProjectID + ".iam.gserviceaccount.com"
	const otherPool = "other@" + GCPProjectID + ".iam.gserviceaccount.com"
	poolName := "projects/" + GCPProjectNumber + "/locations/global/workloadIdentityPools/" + GCPPool
	for _, sa := range []GCPServiceAccountConfig{
		{Email: long, Pool: poolName, Subjects: []string{AliceSubA}, ExtendedLifetime: true},
		{Email: bobOnly, Pool: poolName, Subjects: []string{BobSubA}},
		{Email: otherPool, Pool: "projects/1/locations/global/workloadIdentityPools/other", Subjects: []string{"*"}},
	} {
		if err := gcp.AddServiceAccount(sa); err != nil {
			t.Fatal(err)
		}
	}
	aud := GCPAudience(GCPProjectNumber, GCPPool, GCPProviderID)
	r := post(t, gcp.STSEndpoint(), gcpForm(aud, cloudExchange(t, sb, aud)), "", "")
	if r.status != http.StatusOK {
		t.Fatalf("STS: %v", r)
	}
	fed := r.str("access_token")
	scope := []string{GCPScope}
	for _, tc := range []struct {
		name, email, bearer string
		body                any
		status              int
		gstatus, msg        string
	}{
		{"ok default lifetime", GCPServiceAccount, fed, map[string]any{"scope": scope}, 200, "", ""},
		{"ok 3600s", GCPServiceAccount, fed, map[string]any{"scope": scope, "lifetime": "3600s"}, 200, "", ""},
		{"ok 12 h when extended", long, fed, map[string]any{"scope": scope, "lifetime": "43200s"}, 200, "", ""},
		{"ok fractional seconds", GCPServiceAccount, fed, map[string]any{"scope": scope, "lifetime": "60.5s"}, 200, "", ""},
		{"lifetime above 1 h", GCPServiceAccount, fed, map[string]any{"scope": scope, "lifetime": "3601s"}, 400, "INVALID_ARGUMENT",
			"Lifetime requested (3601s) is greater than the maximum allowed (3600s)."},
		{"lifetime above 12 h when extended", long, fed, map[string]any{"scope": scope, "lifetime": "43201s"}, 400, "INVALID_ARGUMENT",
			"Lifetime requested (43201s) is greater than the maximum allowed (43200s)."},
		{"lifetime format", GCPServiceAccount, fed, map[string]any{"scope": scope, "lifetime": "1h"}, 400, "INVALID_ARGUMENT", ""},
		{"no scope", GCPServiceAccount, fed, map[string]any{"lifetime": "60s"}, 400, "INVALID_ARGUMENT", "Scope required."},
		{"no bearer", GCPServiceAccount, "", map[string]any{"scope": scope}, 401, "UNAUTHENTICATED", GCPMsgUnauthenticated},
		{"unknown bearer", GCPServiceAccount, "ya29.nope", map[string]any{"scope": scope}, 401, "UNAUTHENTICATED", GCPMsgUnauthenticated},
		{"domain A token as bearer", GCPServiceAccount, subjectToken(t, sb, Alice), map[string]any{"scope": scope}, 401, "UNAUTHENTICATED", GCPMsgUnauthenticated},
		{"unknown service account", "nope@" + GCPProjectID + ".iam.gserviceaccount.com", fed, map[string]any{"scope": scope}, 403, "PERMISSION_DENIED", GCPMsgPermissionDenied},
		{"principal not granted", bobOnly, fed, map[string]any{"scope": scope}, 403, "PERMISSION_DENIED", GCPMsgPermissionDenied},
		{"account of another pool", otherPool, fed, map[string]any{"scope": scope}, 403, "PERMISSION_DENIED", GCPMsgPermissionDenied},
		{"delegates", GCPServiceAccount, fed, map[string]any{"scope": scope, "delegates": []string{"x"}}, 403, "PERMISSION_DENIED", GCPMsgPermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := gcpImpersonate(t, sb, tc.email, tc.bearer, tc.body)
			if tc.status == http.StatusOK {
				if g.status != http.StatusOK || g.str("accessToken") == "" || g.str("expireTime") == "" {
					t.Fatalf("got %v", g)
				}
				return
			}
			wantGoogleAPIError(t, g, tc.status, tc.gstatus, tc.msg)
		})
	}
	// A path that is not generateAccessToken.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
		gcp.IAMCredentialsEndpoint()+"/v1/projects/-/serviceAccounts/"+GCPServiceAccount+":signJwt", strings.NewReader("{}"))
	wantGoogleAPIError(t, do(t, req), 404, "NOT_FOUND", "")
}

func TestCloudGCPThrottling(t *testing.T) {
	sb := startWithCloud(t)
	gcp := sb.Cloud.GCP
	aud := GCPAudience(GCPProjectNumber, GCPPool, GCPProviderID)
	tok := cloudExchange(t, sb, aud)
	gcp.SetThrottle(2)
	r := post(t, gcp.STSEndpoint(), gcpForm(aud, tok), "", "")
	if r.status != http.StatusTooManyRequests || r.str("error") != GCPErrRateLimited {
		t.Fatalf("throttled STS: %v", r)
	}
	g := gcpImpersonate(t, sb, GCPServiceAccount, "x", map[string]any{"scope": []string{GCPScope}})
	wantGoogleAPIError(t, g, 429, "RESOURCE_EXHAUSTED", "")
	if r = post(t, gcp.STSEndpoint(), gcpForm(aud, tok), "", ""); r.status != http.StatusOK {
		t.Fatalf("retry: %v", r)
	}
	if gcp.STSRequests() != 2 || gcp.IAMRequests() != 1 {
		t.Fatalf("requests: STS %d, IAM %d", gcp.STSRequests(), gcp.IAMRequests())
	}
}
