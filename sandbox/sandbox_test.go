package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// start runs a sandbox on ephemeral ports for one test.
func start(t *testing.T) *Sandbox {
	t.Helper()
	sb, err := Start(t.Context(), Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sb
}

// reply is a decoded token endpoint answer.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (r reply) str(k string) string { s, _ := r.body[k].(string); return s }

func (r reply) String() string { return fmt.Sprintf("HTTP %d %s", r.status, r.raw) }

// post sends a form, with Basic credentials when user != "".
func post(t *testing.T, endpoint string, form url.Values, user, pass string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func get(t *testing.T, u string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func wantError(t *testing.T, r reply, status int, code, desc string) {
	t.Helper()
	if r.status != status || r.str("error") != code || r.str("error_description") != desc {
		t.Fatalf("got %v, want HTTP %d %s %q", r, status, code, desc)
	}
}

func subjectToken(t *testing.T, sb *Sandbox, username string) string {
	t.Helper()
	tok, err := sb.A.SubjectToken(t.Context(), username, username, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func exchangeForm(subject string) url.Values {
	return url.Values{
		"grant_type":         {grantTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {tokenTypeAccess},
	}
}

func exchange(t *testing.T, sb *Sandbox, subject string) reply {
	t.Helper()
	f := exchangeForm(subject)
	f.Set("audience", sb.B.Issuer())
	return post(t, sb.A.TokenEndpoint(), f, BrokerClientID, BrokerSecretA)
}

// assertion runs a token exchange for alice and returns A's token.
func assertion(t *testing.T, sb *Sandbox) string {
	t.Helper()
	r := exchange(t, sb, subjectToken(t, sb, Alice))
	if r.status != http.StatusOK {
		t.Fatalf("exchange: %v", r)
	}
	return r.str("access_token")
}

func jwtBearer(t *testing.T, sb *Sandbox, assertion string) reply {
	t.Helper()
	return post(t, sb.B.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}},
		BrokerClientID, BrokerSecretB)
}

// payload returns a JWT's claims as raw JSON values.
func payload(t *testing.T, tok string) map[string]json.RawMessage {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func parsed(t *testing.T, tok string) *jwt {
	t.Helper()
	j, err := parseJWT(tok)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestDiscoveryAndJWKS(t *testing.T) {
	sb := start(t)
	for _, d := range []struct {
		realm  *Realm
		name   string
		grants []string
	}{
		{sb.A.Realm, DomainAName, []string{grantPassword, grantTokenExchange}},
		{sb.B.Realm, DomainBName, []string{grantJWTBearer}},
	} {
		t.Run(d.name, func(t *testing.T) {
			rl := d.realm
			if rl.Name() != d.name {
				t.Errorf("Name = %q", rl.Name())
			}
			u, err := url.Parse(rl.Issuer())
			if err != nil || u.Scheme != "http" || u.Path != "/realms/"+d.name || !strings.HasPrefix(u.Host, "127.0.0.1:") {
				t.Fatalf("Issuer = %q", rl.Issuer())
			}
			if rl.TokenEndpoint() != rl.Issuer()+"/protocol/openid-connect/token" ||
				rl.JWKSURI() != rl.Issuer()+"/protocol/openid-connect/certs" {
				t.Errorf("endpoints %q %q", rl.TokenEndpoint(), rl.JWKSURI())
			}
			r := get(t, rl.DiscoveryURL())
			if r.status != http.StatusOK {
				t.Fatalf("discovery: %v", r)
			}
			if r.str("issuer") != rl.Issuer() || r.str("token_endpoint") != rl.TokenEndpoint() || r.str("jwks_uri") != rl.JWKSURI() {
				t.Errorf("discovery: %v", r)
			}
			var doc struct {
				Grants  []string `json:"grant_types_supported"`
				Methods []string `json:"token_endpoint_auth_methods_supported"`
				Algs    []string `json:"id_token_signing_alg_values_supported"`
			}
			if err := json.Unmarshal([]byte(r.raw), &doc); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(doc.Grants) != fmt.Sprint(d.grants) ||
				fmt.Sprint(doc.Methods) != "[client_secret_basic client_secret_post private_key_jwt]" ||
				fmt.Sprint(doc.Algs) != "[RS256]" {
				t.Errorf("discovery: %+v", doc)
			}
			k := get(t, rl.JWKSURI())
			var set struct {
				Keys []struct {
					Kid, Kty, Alg, Use string
				} `json:"keys"`
			}
			if err := json.Unmarshal([]byte(k.raw), &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("JWKS: %v (%v)", k, err)
			}
			if key := set.Keys[0]; key.Kid != rl.KeyID() || key.Kty != "RSA" || key.Alg != "RS256" || key.Use != "sig" {
				t.Errorf("JWKS key %+v", key)
			}
			if r := post(t, rl.DiscoveryURL(), nil, "", ""); r.status != http.StatusMethodNotAllowed {
				t.Errorf("POST discovery: %v", r)
			}
		})
	}
}

func TestIssuerBase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for addr, want := range map[string]string{
		"127.0.0.1:0": "http://127.0.0.1:" + port,
		":0":          "http://127.0.0.1:" + port,
		"0.0.0.0:0":   "http://127.0.0.1:" + port,
		"localhost:0": "http://localhost:" + port,
	} {
		if got := issuerBase(addr, ln); got != want {
			t.Errorf("issuerBase(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestPasswordGrant(t *testing.T) {
	sb := start(t)
	r := post(t, sb.A.TokenEndpoint(), url.Values{
		"grant_type": {grantPassword}, "client_id": {AgentClientID},
		"username": {Alice}, "password": {AlicePassword}, "scope": {"openid orders:read"},
	}, "", "")
	if r.status != http.StatusOK || r.str("token_type") != "Bearer" || r.body["expires_in"] != float64(300) {
		t.Fatalf("password grant: %v", r)
	}
	if _, ok := r.body["refresh_token"]; ok {
		t.Error("unexpected refresh_token")
	}
	raw := r.str("access_token")
	v := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.A.JWKSURI()}, nil)
	tok, err := v.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify with A's JWKS: %v", err)
	}
	c := tok.Claims
	if tok.Header.Typ != "JWT" || tok.Header.Alg != "RS256" || tok.Header.Kid != sb.A.KeyID() {
		t.Errorf("header %+v", tok.Header)
	}
	if c.Issuer != sb.A.Issuer() || c.Subject != AliceSubA || c.AZP != AgentClientID ||
		fmt.Sprint(c.Audience) != "[chainbroker account]" || c.JTI == "" ||
		c.Expiry.Sub(c.IssuedAt) != 300*time.Second || c.Scope != "openid orders:read profile email" {
		t.Errorf("claims %+v", c)
	}
	if j := parsed(t, raw); j.claims.Typ != "Bearer" || j.claims.PreferredUsername != Alice {
		t.Errorf("typ %q preferred_username %q", j.claims.Typ, j.claims.PreferredUsername)
	}
	if sb.A.PasswordGrantCount() != 1 {
		t.Errorf("PasswordGrantCount = %d", sb.A.PasswordGrantCount())
	}

	bob := parsed(t, subjectToken(t, sb, Bob))
	if bob.claims.Sub != BobSubA || bob.claims.PreferredUsername != Bob || bob.claims.Scope != "profile email" {
		t.Errorf("bob: %+v", bob.claims)
	}

	for _, tc := range []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
		code, desc string
	}{
		{"bad password", url.Values{"client_id": {AgentClientID}, "username": {Alice}, "password": {"bob"}},
			"", "", 401, errInvalidGrant, DescInvalidUserCredentials},
		{"unknown user", url.Values{"client_id": {AgentClientID}, "username": {"mallory"}, "password": {"x"}},
			"", "", 401, errInvalidGrant, DescInvalidUserCredentials},
		{"unknown client", url.Values{"client_id": {"nobody"}, "username": {Alice}, "password": {AlicePassword}},
			"", "", 401, errInvalidClient, DescInvalidClient},
		{"no client", url.Values{"username": {Alice}, "password": {AlicePassword}},
			"", "", 401, errInvalidClient, DescInvalidClient},
		{"confidential client without secret", url.Values{"client_id": {BrokerClientID}, "username": {Alice}, "password": {AlicePassword}},
			"", "", 401, errInvalidClient, DescInvalidClient},
		{"broker client", url.Values{"username": {Alice}, "password": {AlicePassword}},
			BrokerClientID, BrokerSecretA, 400, errUnauthorizedClient, DescDirectGrantNotAllowed},
		{"malformed scope", url.Values{"client_id": {AgentClientID}, "username": {Alice}, "password": {AlicePassword}, "scope": {`a"b`}},
			"", "", 400, errInvalidScope, DescInvalidScope + `a"b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("grant_type", grantPassword)
			wantError(t, post(t, sb.A.TokenEndpoint(), tc.form, tc.user, tc.pass), tc.status, tc.code, tc.desc)
		})
	}
}

func TestTokenExchange(t *testing.T) {
	sb := start(t)
	subject := subjectToken(t, sb, Alice)
	before := sb.A.ExchangeCount()
	r := exchange(t, sb, subject)
	if r.status != http.StatusOK || r.str("issued_token_type") != tokenTypeAccess || r.str("token_type") != "Bearer" ||
		r.body["expires_in"] != float64(300) || r.str("scope") != "profile email" {
		t.Fatalf("exchange: %v", r)
	}
	if n := sb.A.ExchangeCount() - before; n != 1 {
		t.Errorf("ExchangeCount delta = %d", n)
	}
	raw := r.str("access_token")
	tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.A.JWKSURI()}, nil).Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	c := tok.Claims
	if tok.Header.Typ != "JWT" || c.Issuer != sb.A.Issuer() || c.Subject != AliceSubA || c.AZP != BrokerClientID ||
		fmt.Sprint(c.Audience) != "["+sb.B.Issuer()+"]" || c.JTI == "" || c.Expiry.Sub(c.IssuedAt) != 300*time.Second {
		t.Errorf("exchanged token: %+v %+v", tok.Header, c)
	}
	if aud := string(payload(t, raw)["aud"]); aud != `"`+sb.B.Issuer()+`"` {
		t.Errorf("aud = %s, want a single string", aud)
	}
	if j := parsed(t, raw); j.claims.PreferredUsername != Alice || j.claims.Typ != "Bearer" {
		t.Errorf("claims %+v", j.claims)
	}
	if again := exchange(t, sb, subject).str("access_token"); parsed(t, again).claims.JTI == c.JTI {
		t.Error("two exchanges gave the same jti")
	}

	// client_secret_post and requested scope.
	f := exchangeForm(subject)
	f.Set("audience", sb.B.Issuer())
	f.Set("client_id", BrokerClientID)
	f.Set("client_secret", BrokerSecretA)
	f.Set("scope", "orders:read")
	f.Set("requested_token_type", tokenTypeAccess)
	if r := post(t, sb.A.TokenEndpoint(), f, "", ""); r.status != 200 || r.str("scope") != "orders:read profile email" {
		t.Errorf("client_secret_post: %v", r)
	}

	// A second audience, once allowed.
	sb.A.AllowAudience("https://c.example")
	f = exchangeForm(subject)
	f["audience"] = []string{sb.B.Issuer(), "https://c.example"}
	if r := post(t, sb.A.TokenEndpoint(), f, BrokerClientID, BrokerSecretA); r.status != 200 ||
		string(payload(t, r.str("access_token"))["aud"]) != `["`+sb.B.Issuer()+`","https://c.example"]` {
		t.Errorf("two audiences: %v", r)
	}
}

func TestTokenExchangeRefusals(t *testing.T) {
	sb := start(t)
	subject := subjectToken(t, sb, Alice)
	noAud, err := sb.A.SignToken(map[string]any{
		"iss": sb.A.Issuer(), "sub": AliceSubA, "aud": "account", "typ": "Bearer", "exp": time.Now().Add(time.Minute).Unix(),
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := sb.A.SignToken(map[string]any{
		"iss": sb.A.Issuer(), "sub": AliceSubA, "aud": BrokerClientID, "typ": "Bearer", "exp": time.Now().Add(-time.Minute).Unix(),
	}, "")
	foreign, _ := sb.B.SignToken(map[string]any{
		"iss": sb.A.Issuer(), "sub": AliceSubA, "aud": BrokerClientID, "typ": "Bearer", "exp": time.Now().Add(time.Minute).Unix(),
	}, "")
	unknownUser, _ := sb.A.SignToken(map[string]any{
		"iss": sb.A.Issuer(), "sub": "nobody", "aud": BrokerClientID, "typ": "Bearer", "exp": time.Now().Add(time.Minute).Unix(),
	}, "")

	ok := func(f url.Values) { f.Set("audience", sb.B.Issuer()) }
	for _, tc := range []struct {
		name       string
		edit       func(url.Values)
		user, pass string
		status     int
		code, desc string
	}{
		{"requested jwt type", func(f url.Values) { ok(f); f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:jwt") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescRequestedTokenTypeUnsupported},
		{"requested refresh token", func(f url.Values) {
			ok(f)
			f.Set("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")
		},
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescRequestedTokenTypeUnsupported},
		{"no subject token", func(f url.Values) { ok(f); f.Del("subject_token") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescSubjectTokenRequired},
		{"no subject token type", func(f url.Values) { ok(f); f.Del("subject_token_type") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescSubjectTokenTypeRequired},
		{"id token type", func(f url.Values) { ok(f); f.Set("subject_token_type", "urn:ietf:params:oauth:token-type:id_token") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescAccessTokensOnly},
		{"garbage subject", func(f url.Values) { ok(f); f.Set("subject_token", "not-a-token") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescInvalidToken},
		{"expired subject", func(f url.Values) { ok(f); f.Set("subject_token", expired) },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescInvalidToken},
		{"subject signed by B", func(f url.Values) { ok(f); f.Set("subject_token", foreign) },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescInvalidToken},
		{"unknown subject", func(f url.Values) { ok(f); f.Set("subject_token", unknownUser) },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescInvalidToken},
		{"client not in subject aud", func(f url.Values) { ok(f); f.Set("subject_token", noAud) },
			BrokerClientID, BrokerSecretA, 403, errAccessDenied, DescClientNotInAudience},
		{"no audience", func(f url.Values) {},
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescAudienceRequired},
		{"resource only", func(f url.Values) { f.Set("resource", sb.B.Issuer()) },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescAudienceRequired},
		{"audience not allowed", func(f url.Values) { f["audience"] = []string{sb.B.Issuer(), "https://evil.example"} },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescAudienceNotAvailable + "https://evil.example"},
		{"wrong secret", ok, BrokerClientID, "wrong", 401, errInvalidClient, DescInvalidClient},
		{"unknown client", ok, "nobody", "x", 401, errInvalidClient, DescInvalidClient},
		{"public client", func(f url.Values) { ok(f); f.Set("client_id", AgentClientID) },
			"", "", 400, errInvalidRequest, DescExchangeNotEnabled},
		{"two client auth methods", func(f url.Values) { ok(f); f.Set("client_secret", BrokerSecretA) },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescMultipleClientAuth},
		{"basic and other client_id", func(f url.Values) { ok(f); f.Set("client_id", AgentClientID) },
			BrokerClientID, BrokerSecretA, 401, errInvalidClient, DescInvalidClient},
		{"duplicated parameter", func(f url.Values) { ok(f); f.Add("subject_token", "x") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescDuplicatedParameter},
		{"no grant type", func(f url.Values) { ok(f); f.Del("grant_type") },
			BrokerClientID, BrokerSecretA, 400, errInvalidRequest, DescMissingGrantType},
		{"unsupported grant", func(f url.Values) { ok(f); f.Set("grant_type", grantJWTBearer) },
			BrokerClientID, BrokerSecretA, 400, errUnsupportedGrantType, DescUnsupportedGrantType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := exchangeForm(subject)
			tc.edit(f)
			r := post(t, sb.A.TokenEndpoint(), f, tc.user, tc.pass)
			wantError(t, r, tc.status, tc.code, tc.desc)
			if tc.status == 401 && tc.user != "" && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestJWTBearer(t *testing.T) {
	sb := start(t)
	for _, tc := range []struct{ user, subB string }{{Alice, AliceSubB}, {Bob, BobSubB}} {
		t.Run(tc.user, func(t *testing.T) {
			r := exchange(t, sb, subjectToken(t, sb, tc.user))
			as := r.str("access_token")
			jti := parsed(t, as).claims.JTI
			if sb.B.Saw(jti) {
				t.Fatal("B saw the assertion before it was sent")
			}
			before := sb.B.JWTBearerCount()
			br := post(t, sb.B.TokenEndpoint(), url.Values{
				"grant_type": {grantJWTBearer}, "assertion": {as}, "scope": {"openid"},
			}, BrokerClientID, BrokerSecretB)
			if br.status != 200 || br.str("token_type") != "Bearer" || br.body["expires_in"] != float64(300) ||
				br.str("scope") != "openid profile email" {
				t.Fatalf("jwt-bearer: %v", br)
			}
			if _, ok := br.body["refresh_token"]; ok {
				t.Error("B issued a refresh token")
			}
			if !sb.B.Saw(jti) || sb.B.JWTBearerCount()-before != 1 {
				t.Errorf("Saw = %v, count delta %d", sb.B.Saw(jti), sb.B.JWTBearerCount()-before)
			}
			raw := br.str("access_token")
			tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.B.JWKSURI()}, nil).Verify(t.Context(), raw)
			if err != nil {
				t.Fatalf("Verify with B's JWKS: %v", err)
			}
			c := tok.Claims
			if c.Issuer != sb.B.Issuer() || c.Subject != tc.subB || c.AZP != BrokerClientID ||
				fmt.Sprint(c.Audience) != "[account]" || c.Scope != "openid profile email" || c.JTI == "" ||
				c.Expiry.Sub(c.IssuedAt) != 300*time.Second {
				t.Errorf("B token: %+v", c)
			}
			if j := parsed(t, raw); j.claims.PreferredUsername != tc.user {
				t.Errorf("preferred_username %q", j.claims.PreferredUsername)
			}
			// Replay of the same assertion.
			wantError(t, jwtBearer(t, sb, as), 400, errInvalidGrant, DescTokenReuse)
		})
	}

	// B's token endpoint as aud is accepted too; client_secret_post.
	sb.A.SetMisbehaviour(Misbehaviour{ExtraClaims: map[string]any{"aud": sb.B.TokenEndpoint()}})
	as := assertion(t, sb)
	sb.A.ResetMisbehaviour()
	r := post(t, sb.B.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}, "assertion": {as},
		"client_id": {BrokerClientID}, "client_secret": {BrokerSecretB}}, "", "")
	if r.status != 200 {
		t.Errorf("aud = token endpoint: %v", r)
	}

	// Reuse allowed: the same assertion twice, and one without jti.
	sb.B.SetTrust(Trust{AllowReuse: true})
	as = assertion(t, sb)
	for i := range 2 {
		if r := jwtBearer(t, sb, as); r.status != 200 {
			t.Errorf("reuse allowed, use %d: %v", i, r)
		}
	}
	sb.A.SetMisbehaviour(Misbehaviour{OmitJTI: true})
	if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 {
		t.Errorf("reuse allowed, no jti: %v", r)
	}
	sb.A.ResetMisbehaviour()
	sb.B.SetTrust(DefaultTrust())
	if tr := sb.B.Trust(); tr.MaxAssertionAge != 300*time.Second || tr.ClockSkew != 0 || tr.AllowReuse {
		t.Errorf("Trust() = %+v", tr)
	}
}

// TestMisbehaviour checks that each misbehaviour option changes A's
// assertion as documented, and that B refuses it as Keycloak would.
func TestMisbehaviour(t *testing.T) {
	sb := start(t)
	verifier := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.A.JWKSURI()}, nil)
	now := func() int64 { return time.Now().Unix() }
	for _, tc := range []struct {
		name  string
		m     Misbehaviour
		check func(t *testing.T, raw string, j *jwt) // the token as issued
		desc  string                                 // B's refusal; "" means accepted
	}{
		{"none", Misbehaviour{}, nil, ""},
		{"issuer", Misbehaviour{Issuer: "http://127.0.0.1:1/realms/other"}, func(t *testing.T, _ string, j *jwt) {
			if j.claims.Iss != "http://127.0.0.1:1/realms/other" {
				t.Errorf("iss %q", j.claims.Iss)
			}
		}, DescUnknownIssuer},
		{"no iss", Misbehaviour{ExtraClaims: map[string]any{"iss": nil}}, func(t *testing.T, _ string, j *jwt) {
			if j.claims.Iss != "" {
				t.Errorf("iss %q", j.claims.Iss)
			}
		}, DescMissingIssuer},
		{"omit sub", Misbehaviour{OmitSub: true}, func(t *testing.T, raw string, _ *jwt) {
			if _, ok := payload(t, raw)["sub"]; ok {
				t.Error("sub present")
			}
		}, DescMissingSubject},
		{"omit exp", Misbehaviour{OmitExp: true}, func(t *testing.T, _ string, j *jwt) {
			if j.claims.Exp != nil {
				t.Error("exp present")
			}
		}, DescExpRequired},
		{"expired", Misbehaviour{Expired: true}, func(t *testing.T, _ string, j *jwt) {
			if *j.claims.Exp >= now() {
				t.Errorf("exp %d not in the past", *j.claims.Exp)
			}
		}, DescNotActive},
		{"nbf future", Misbehaviour{NotBeforeFuture: true}, func(t *testing.T, _ string, j *jwt) {
			if j.claims.Nbf == nil || *j.claims.Nbf <= now() {
				t.Error("nbf not in the future")
			}
		}, DescNotActive},
		{"iat future", Misbehaviour{IssuedAtFuture: true}, func(t *testing.T, _ string, j *jwt) {
			if *j.claims.Iat <= now() {
				t.Error("iat not in the future")
			}
		}, DescIssuedInFuture},
		{"iat too old", Misbehaviour{IssuedAtAge: 400 * time.Second, Lifetime: time.Hour}, func(t *testing.T, _ string, j *jwt) {
			if age := now() - *j.claims.Iat; age < 399 {
				t.Errorf("iat age %d", age)
			}
		}, DescIssuedTooLongAgo},
		{"lifetime 1h", Misbehaviour{Lifetime: time.Hour}, func(t *testing.T, _ string, j *jwt) {
			if life := *j.claims.Exp - *j.claims.Iat; life != 3600 {
				t.Errorf("exp - iat = %d", life)
			}
		}, DescLifetimeTooLong},
		{"no iat, far exp", Misbehaviour{Lifetime: time.Hour, ExtraClaims: map[string]any{"iat": nil}}, func(t *testing.T, _ string, j *jwt) {
			if j.claims.Iat != nil {
				t.Error("iat present")
			}
		}, DescNoIssuedAtTooLong},
		{"omit jti", Misbehaviour{OmitJTI: true}, func(t *testing.T, _ string, j *jwt) {
			if j.claims.JTI != "" {
				t.Error("jti present")
			}
		}, DescJTIRequired},
		{"HS256", Misbehaviour{Alg: "HS256"}, func(t *testing.T, raw string, j *jwt) {
			if j.alg != "HS256" || j.kid != sb.A.KeyID() {
				t.Errorf("alg %q kid %q", j.alg, j.kid)
			}
			if _, err := verifier.Verify(t.Context(), raw); !errors.Is(err, token.ErrAlgNotAllowed) {
				t.Errorf("Verify: %v", err)
			}
		}, DescInvalidSignatureAlg},
		{"alg none", Misbehaviour{Alg: "none"}, func(t *testing.T, raw string, j *jwt) {
			if j.alg != "none" || !strings.HasSuffix(raw, ".") || strings.Count(raw, ".") != 2 {
				t.Errorf("alg %q token shape", j.alg)
			}
		}, DescInvalidSignatureAlg},
		{"typ at+jwt (Keycloak takes it)", Misbehaviour{Typ: "at+jwt"}, func(t *testing.T, _ string, j *jwt) {
			if j.typ != "at+jwt" {
				t.Errorf("typ %q", j.typ)
			}
		}, ""},
		{"typ other", Misbehaviour{Typ: "secevent+jwt"}, func(t *testing.T, _ string, j *jwt) {
			if j.typ != "secevent+jwt" {
				t.Errorf("typ %q", j.typ)
			}
		}, DescInvalidTokenType},
		{"extra audience", Misbehaviour{ExtraAudience: "account"}, func(t *testing.T, raw string, _ *jwt) {
			if aud := string(payload(t, raw)["aud"]); aud != `["`+sb.B.Issuer()+`","account"]` {
				t.Errorf("aud %s", aud)
			}
		}, DescMultipleAudiences},
		{"other audience", Misbehaviour{ExtraClaims: map[string]any{"aud": "https://c.example"}}, nil, DescInvalidAudience},
		{"bad signature", Misbehaviour{BadSignature: true}, func(t *testing.T, raw string, j *jwt) {
			if j.kid != sb.A.KeyID() {
				t.Errorf("kid %q", j.kid)
			}
			if _, err := verifier.Verify(t.Context(), raw); !errors.Is(err, token.ErrSignature) {
				t.Errorf("Verify: %v", err)
			}
		}, DescInvalidSignature},
		{"unknown kid", Misbehaviour{UnknownKid: true}, func(t *testing.T, raw string, j *jwt) {
			if j.kid == sb.A.KeyID() || j.kid == "" {
				t.Errorf("kid %q", j.kid)
			}
			if _, err := verifier.Verify(t.Context(), raw); !errors.Is(err, token.ErrKeyUnknown) {
				t.Errorf("Verify: %v", err)
			}
		}, DescInvalidSignature},
		{"ES256 unpublished", Misbehaviour{Alg: "ES256"}, func(t *testing.T, _ string, j *jwt) {
			if j.alg != "ES256" {
				t.Errorf("alg %q", j.alg)
			}
		}, DescInvalidSignature},
		{"ID-JAG without client_id", Misbehaviour{Typ: token.TypeIDJAG}, nil, DescClientIDMismatch},
		{"ID-JAG", Misbehaviour{Typ: token.TypeIDJAG, ExtraClaims: map[string]any{"client_id": BrokerClientID}}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb.A.SetMisbehaviour(tc.m)
			defer sb.A.ResetMisbehaviour()
			raw := assertion(t, sb)
			if tc.check != nil {
				tc.check(t, raw, parsed(t, raw))
			}
			r := jwtBearer(t, sb, raw)
			if tc.desc == "" {
				if r.status != 200 {
					t.Errorf("B: %v", r)
				}
				return
			}
			wantError(t, r, 400, errInvalidGrant, tc.desc)
		})
	}

	t.Run("fixed jti", func(t *testing.T) {
		sb.A.SetMisbehaviour(Misbehaviour{FixedJTI: "same-jti"})
		defer sb.A.ResetMisbehaviour()
		first, second := assertion(t, sb), assertion(t, sb)
		if parsed(t, first).claims.JTI != "same-jti" || parsed(t, second).claims.JTI != "same-jti" {
			t.Fatal("FixedJTI did not give two tokens with the same jti")
		}
		if r := jwtBearer(t, sb, first); r.status != 200 {
			t.Fatalf("first: %v", r)
		}
		wantError(t, jwtBearer(t, sb, second), 400, errInvalidGrant, DescTokenReuse)
	})
	t.Run("reuse assertion", func(t *testing.T) {
		first := assertion(t, sb)
		sb.A.SetMisbehaviour(Misbehaviour{ReuseAssertion: true})
		defer sb.A.ResetMisbehaviour()
		if second := assertion(t, sb); second != first {
			t.Fatal("ReuseAssertion gave a new token")
		}
		if r := jwtBearer(t, sb, first); r.status != 200 {
			t.Fatalf("first: %v", r)
		}
		wantError(t, jwtBearer(t, sb, first), 400, errInvalidGrant, DescTokenReuse)
	})
	t.Run("error answer", func(t *testing.T) {
		before := sb.A.ExchangeCount()
		sb.A.SetMisbehaviour(Misbehaviour{Status: 400, Error: "invalid_target", ErrorDescription: "nope"})
		defer sb.A.ResetMisbehaviour()
		wantError(t, exchange(t, sb, "irrelevant"), 400, "invalid_target", "nope")
		sb.A.SetMisbehaviour(Misbehaviour{Status: 503})
		wantError(t, exchange(t, sb, "irrelevant"), 503, errServerError, "")
		if n := sb.A.ExchangeCount() - before; n != 2 {
			t.Errorf("ExchangeCount delta = %d", n)
		}
	})
	t.Run("raw body", func(t *testing.T) {
		sb.A.SetMisbehaviour(Misbehaviour{Body: `{"access_token":`})
		defer sb.A.ResetMisbehaviour()
		if r := exchange(t, sb, "irrelevant"); r.status != 200 || r.raw != `{"access_token":` {
			t.Errorf("got %v", r)
		}
	})
	t.Run("delay", func(t *testing.T) {
		sb.A.SetMisbehaviour(Misbehaviour{Delay: 200 * time.Millisecond})
		defer sb.A.ResetMisbehaviour()
		t0 := time.Now()
		subject := subjectToken(t, sb, Alice) // password grants are not delayed
		if d := time.Since(t0); d >= 200*time.Millisecond {
			t.Errorf("password grant took %v", d)
		}
		t0 = time.Now()
		if r := exchange(t, sb, subject); r.status != 200 {
			t.Fatalf("delayed exchange: %v", r)
		}
		if d := time.Since(t0); d < 200*time.Millisecond {
			t.Errorf("exchange took %v", d)
		}
	})
	t.Run("B error answer", func(t *testing.T) {
		before := sb.B.JWTBearerCount()
		sb.B.SetMisbehaviour(Misbehaviour{Status: 503, Error: errTemporarilyUnavail})
		defer sb.B.ResetMisbehaviour()
		wantError(t, jwtBearer(t, sb, "x"), 503, errTemporarilyUnavail, "")
		if sb.B.JWTBearerCount()-before != 1 {
			t.Error("B did not count the request")
		}
	})
}

func TestJWTBearerRefusals(t *testing.T) {
	sb := start(t)
	tokB := func(claims map[string]any) string {
		tok, err := sb.A.SignToken(claims, "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Run("missing assertion", func(t *testing.T) {
		r := post(t, sb.B.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}}, BrokerClientID, BrokerSecretB)
		wantError(t, r, 400, errInvalidGrant, DescMissingAssertion)
	})
	t.Run("not a JWT", func(t *testing.T) {
		wantError(t, jwtBearer(t, sb, "fake-jwt"), 400, errInvalidGrant, DescAssertionNotJWT)
	})
	t.Run("missing sub and iss: iss first", func(t *testing.T) {
		wantError(t, jwtBearer(t, sb, tokB(map[string]any{"aud": sb.B.Issuer()})), 400, errInvalidGrant, DescMissingIssuer)
	})
	t.Run("idp not allowed", func(t *testing.T) {
		sb.B.SetAllowedIdentityProviders()
		defer sb.B.SetAllowedIdentityProviders(IdentityProviderAlias)
		wantError(t, jwtBearer(t, sb, assertion(t, sb)), 400, errInvalidGrant, DescIdPNotAllowed)
	})
	t.Run("alg not in trust", func(t *testing.T) {
		sb.B.SetTrust(Trust{AllowedAlgs: []string{"ES256"}})
		defer sb.B.SetTrust(DefaultTrust())
		wantError(t, jwtBearer(t, sb, assertion(t, sb)), 400, errInvalidGrant, DescInvalidSignatureAlg)
	})
	t.Run("clock skew", func(t *testing.T) {
		sb.A.SetMisbehaviour(Misbehaviour{IssuedAtFuture: true})
		defer sb.A.ResetMisbehaviour()
		sb.B.SetTrust(Trust{ClockSkew: 2 * time.Minute})
		defer sb.B.SetTrust(DefaultTrust())
		if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 {
			t.Errorf("iat 60 s ahead with 120 s skew: %v", r)
		}
	})
	t.Run("unlinked user", func(t *testing.T) {
		sb.B.Unlink(AliceSubA)
		as := assertion(t, sb)
		wantError(t, jwtBearer(t, sb, as), 400, errInvalidGrant, DescUserNotFound)
		if err := sb.B.Link(AliceSubA, Alice); err != nil {
			t.Fatal(err)
		}
		if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 {
			t.Errorf("after Link: %v", r)
		}
		if err := sb.B.Link(AliceSubA, "mallory"); err == nil {
			t.Error("Link to an unknown user succeeded")
		}
		// Link alice's A identity to bob at B.
		if err := sb.B.Link(AliceSubA, Bob); err != nil {
			t.Fatal(err)
		}
		defer sb.B.Link(AliceSubA, Alice) //nolint:errcheck
		r := jwtBearer(t, sb, assertion(t, sb))
		if r.status != 200 || parsed(t, r.str("access_token")).claims.Sub != BobSubB {
			t.Errorf("linked to bob: %v", r)
		}
	})
	t.Run("client authentication", func(t *testing.T) {
		as := assertion(t, sb)
		form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {as}}
		wantError(t, post(t, sb.B.TokenEndpoint(), form, BrokerClientID, BrokerSecretA), 401, errInvalidClient, DescInvalidClient)
		wantError(t, post(t, sb.B.TokenEndpoint(), form, "", ""), 401, errInvalidClient, DescInvalidClient)
		if sb.B.Saw(parsed(t, as).claims.JTI) {
			t.Error("B recorded an assertion from an unauthenticated client")
		}
	})
	t.Run("unsupported grant", func(t *testing.T) {
		r := post(t, sb.B.TokenEndpoint(), url.Values{"grant_type": {grantPassword}, "username": {Alice}, "password": {Alice}},
			BrokerClientID, BrokerSecretB)
		wantError(t, r, 400, errUnsupportedGrantType, DescUnsupportedGrantType)
	})
	t.Run("GET token endpoint", func(t *testing.T) {
		if r := get(t, sb.B.TokenEndpoint()); r.status != http.StatusMethodNotAllowed {
			t.Errorf("got %v", r)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {strings.Repeat("a", maxBodyBytes)}}
		wantError(t, post(t, sb.B.TokenEndpoint(), form, BrokerClientID, BrokerSecretB), 413, errInvalidRequest, DescBodyTooLarge)
	})
	t.Run("oversized assertion", func(t *testing.T) {
		big := tokB(map[string]any{"iss": sb.A.Issuer(), "pad": strings.Repeat("x", token.MaxTokenBytes)})
		wantError(t, jwtBearer(t, sb, big), 400, errInvalidGrant, DescAssertionNotJWT)
	})
}

func TestPrivateKeyJWT(t *testing.T) {
	sb := start(t)
	key, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := token.PublicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.A.RegisterClientKey(BrokerClientID, jwks); err != nil {
		t.Fatal(err)
	}
	if err := sb.A.RegisterClientKey(AgentClientID, jwks); err == nil {
		t.Error("RegisterClientKey accepted a public client")
	}
	clientAssertion := func(edit func(map[string]any)) string {
		now := time.Now()
		c := map[string]any{
			"iss": BrokerClientID, "sub": BrokerClientID, "aud": sb.A.TokenEndpoint(),
			"jti": newUUID(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		}
		if edit != nil {
			edit(c)
		}
		s, err := key.Sign(c, token.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	subject := subjectToken(t, sb, Alice)
	call := func(assertion string) reply {
		f := exchangeForm(subject)
		f.Set("audience", sb.B.Issuer())
		f.Set("client_assertion_type", clientAssertionTypeJWT)
		f.Set("client_assertion", assertion)
		return post(t, sb.A.TokenEndpoint(), f, "", "")
	}
	good := clientAssertion(nil)
	if r := call(good); r.status != 200 {
		t.Fatalf("private_key_jwt: %v", r)
	}
	wantError(t, call(good), 401, errInvalidClient, DescTokenReuse)
	if r := call(clientAssertion(func(c map[string]any) { c["aud"] = sb.A.Issuer() })); r.status != 200 {
		t.Errorf("aud = issuer: %v", r)
	}
	other, _ := token.GenerateSigner("ES256")
	forged, _ := other.Sign(map[string]any{"iss": BrokerClientID, "sub": BrokerClientID, "aud": sb.A.TokenEndpoint(),
		"jti": newUUID(), "exp": time.Now().Add(time.Minute).Unix()}, token.SignOptions{})
	for name, tc := range map[string]struct {
		assertion string
		desc      string
	}{
		"wrong aud":   {clientAssertion(func(c map[string]any) { c["aud"] = sb.B.TokenEndpoint() }), DescInvalidAudience},
		"two auds":    {clientAssertion(func(c map[string]any) { c["aud"] = []string{sb.A.Issuer(), "x"} }), DescMultipleAudiences},
		"expired":     {clientAssertion(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), DescNotActive},
		"no exp":      {clientAssertion(func(c map[string]any) { delete(c, "exp") }), DescExpRequired},
		"old iat":     {clientAssertion(func(c map[string]any) { c["iat"] = time.Now().Add(-2 * time.Minute).Unix() }), DescIssuedTooLongAgo},
		"no jti":      {clientAssertion(func(c map[string]any) { delete(c, "jti") }), DescJTIRequired},
		"iss not sub": {clientAssertion(func(c map[string]any) { c["iss"] = "someone" }), DescInvalidClient},
		"unknown sub": {clientAssertion(func(c map[string]any) { c["sub"], c["iss"] = "nobody", "nobody" }), DescInvalidClient},
		"other key":   {forged, "Signature on JWT token failed validation"},
		"not a JWT":   {"abc", "The client assertion is not a valid JWT"},
	} {
		t.Run(name, func(t *testing.T) { wantError(t, call(tc.assertion), 401, errInvalidClient, tc.desc) })
	}
	// B has no key registered for the broker.
	r := post(t, sb.B.TokenEndpoint(), url.Values{
		"grant_type": {grantJWTBearer}, "assertion": {"x"},
		"client_assertion_type": {clientAssertionTypeJWT},
		"client_assertion":      {clientAssertion(func(c map[string]any) { c["aud"] = sb.B.TokenEndpoint() })},
	}, "", "")
	wantError(t, r, 401, errInvalidClient, "Unable to load public key")
}

func TestClose(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	sb, err := Start(ctx, Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(sb.A.Issuer(), "http://")
	addr = addr[:strings.Index(addr, "/")]
	if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 { // B fetches A's JWKS
		t.Fatalf("chain: %v", r)
	}

	// A request held by a long delay does not hold up Close.
	sb.A.SetMisbehaviour(Misbehaviour{Delay: time.Minute})
	var wg sync.WaitGroup
	wg.Go(func() {
		f := exchangeForm("x")
		req, _ := http.NewRequest(http.MethodPost, sb.A.TokenEndpoint(), strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	for sb.A.ExchangeCount() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	cancel() // ending the context closes the sandbox
	if err := sb.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	if err := sb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	wg.Wait()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still in use after Close: %v", err)
	}
	ln.Close()

	// No goroutine outlives the sandbox (the test's own client connections
	// are closed by the servers).
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before Start, %d after Close:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}

	if _, err := Start(t.Context(), Options{TokenLifetime: -time.Second}); err == nil {
		t.Error("negative lifetime accepted")
	}
}

// TestConcurrentChains runs chains in parallel while misbehaviour changes,
// for the race detector.
func TestConcurrentChains(t *testing.T) {
	sb, err := Start(t.Context(), Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", TokenLifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	subject := subjectToken(t, sb, Bob)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			for range 5 {
				f := exchangeForm(subject)
				f.Set("audience", sb.B.Issuer())
				r := post(t, sb.A.TokenEndpoint(), f, BrokerClientID, BrokerSecretA)
				if r.status != 200 {
					continue // a concurrent misbehaviour may refuse
				}
				if b := jwtBearer(t, sb, r.str("access_token")); b.status != 200 && b.status != 400 {
					errs <- fmt.Errorf("B: %v", b)
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			sb.A.SetMisbehaviour(Misbehaviour{ExtraClaims: map[string]any{"x": 1}})
			sb.B.SetTrust(DefaultTrust())
			sb.A.ResetMisbehaviour()
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := sb.A.ExchangeCount(); got != 40 {
		t.Errorf("ExchangeCount = %d, want 40", got)
	}
}

func TestGrantScope(t *testing.T) {
	for in, want := range map[string]string{
		"":               "profile email",
		"openid":         "openid profile email",
		"email openid x": "openid email x profile",
		"  a  a b ":      "a b profile email",
	} {
		if got, err := grantScope(in); err != nil || got != want {
			t.Errorf("grantScope(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := grantScope(`a\b`); err == nil {
		t.Error("backslash scope accepted")
	}
}

func TestTokenExchangeDisabled(t *testing.T) {
	sb := start(t)
	subject := subjectToken(t, sb, Alice)
	sb.A.SetTokenExchange(false)
	before := sb.A.ExchangeCount()
	wantError(t, exchange(t, sb, subject), 400, errUnsupportedGrantType, DescUnsupportedGrantType)
	if n := sb.A.ExchangeCount() - before; n != 1 {
		t.Errorf("ExchangeCount delta = %d, want 1 (refused requests are counted)", n)
	}
	// Client authentication still comes first.
	f := exchangeForm(subject)
	f.Set("audience", sb.B.Issuer())
	wantError(t, post(t, sb.A.TokenEndpoint(), f, BrokerClientID, "wrong"), 401, errInvalidClient, DescInvalidClient)
	var doc struct {
		Grants []string `json:"grant_types_supported"`
	}
	if err := json.Unmarshal([]byte(get(t, sb.A.DiscoveryURL()).raw), &doc); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(doc.Grants) != "["+grantPassword+"]" {
		t.Errorf("discovery grants with exchange off: %v", doc.Grants)
	}
	// Subject tokens are still issued.
	if _, err := sb.A.SubjectToken(t.Context(), Bob, BobPassword, ""); err != nil {
		t.Errorf("password grant with exchange off: %v", err)
	}

	sb.A.SetTokenExchange(true)
	if r := exchange(t, sb, subject); r.status != 200 {
		t.Errorf("exchange switched back on: %v", r)
	}
	if err := json.Unmarshal([]byte(get(t, sb.A.DiscoveryURL()).raw), &doc); err != nil ||
		fmt.Sprint(doc.Grants) != fmt.Sprint([]string{grantPassword, grantTokenExchange}) {
		t.Errorf("discovery grants with exchange on: %v %v", doc.Grants, err)
	}
}

func TestSubjectTokenWithAudience(t *testing.T) {
	sb := start(t)
	verifier := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.A.JWKSURI()}, nil)
	for _, tc := range []struct {
		name      string
		aud       []string
		rawAud    string
		exchange_ int // token exchange status with that subject token
	}{
		{"Auth0 case: API and userinfo", []string{"https://api.example", "https://tenant.example/userinfo"},
			`["https://api.example","https://tenant.example/userinfo"]`, 403},
		{"one audience is a string", []string{"https://api.example"}, `"https://api.example"`, 403},
		{"chainbroker among two", []string{BrokerClientID, "https://tenant.example/userinfo"},
			`["chainbroker","https://tenant.example/userinfo"]`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := sb.A.SubjectTokenWithAudience(t.Context(), Alice, AlicePassword, tc.aud)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(payload(t, raw)["aud"]); got != tc.rawAud {
				t.Errorf("aud = %s, want %s", got, tc.rawAud)
			}
			tok, err := verifier.Verify(t.Context(), raw)
			if err != nil {
				t.Fatalf("Verify with A's JWKS: %v", err)
			}
			if c := tok.Claims; c.Issuer != sb.A.Issuer() || c.Subject != AliceSubA || c.AZP != AgentClientID ||
				!slices.Equal(c.Audience, tc.aud) || c.JTI == "" || c.Expiry.Sub(c.IssuedAt) != 300*time.Second {
				t.Errorf("claims %+v", c)
			}
			r := exchange(t, sb, raw)
			if r.status != tc.exchange_ {
				t.Errorf("exchange: %v, want HTTP %d", r, tc.exchange_)
			}
			if r.status == 403 {
				wantError(t, r, 403, errAccessDenied, DescClientNotInAudience)
			}
		})
	}
	if _, err := sb.A.SubjectTokenWithAudience(t.Context(), Alice, AlicePassword, nil); err == nil {
		t.Error("no audience accepted")
	}
	if _, err := sb.A.SubjectTokenWithAudience(t.Context(), Alice, "wrong", []string{"x"}); err == nil ||
		!strings.Contains(err.Error(), DescInvalidUserCredentials) {
		t.Errorf("bad password: %v", err)
	}
	for _, tc := range []struct {
		name string
		aud  []string
		desc string
	}{
		{"nine audiences", strings.Fields("a b c d e f g h i"), DescTooManyAudiences},
		{"empty audience", []string{"a", ""}, DescInvalidAudienceParam},
		{"long audience", []string{strings.Repeat("a", 257)}, DescInvalidAudienceParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, sb.A.TokenEndpoint(), url.Values{
				"grant_type": {grantPassword}, "client_id": {AgentClientID},
				"username": {Alice}, "password": {AlicePassword}, "audience": tc.aud,
			}, "", "")
			wantError(t, r, 400, errInvalidRequest, tc.desc)
		})
	}
}

// jwksServer serves a JWKS that the test can change, and counts fetches.
type jwksServer struct {
	*httptest.Server
	doc     atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, signers ...*token.Signer) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.publish(t, signers...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) publish(t *testing.T, signers ...*token.Signer) {
	t.Helper()
	doc, err := token.PublicJWKS(signers...)
	if err != nil {
		t.Fatal(err)
	}
	s.doc.Store(&doc)
}

// idpAssertion signs an assertion for B as an external identity provider
// would (the broker in issuer mode): single aud, jti, iat, exp 60 s, act.
func idpAssertion(t *testing.T, sb *Sandbox, s *token.Signer, iss, sub string, edit func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{
		"iss": iss, "sub": sub, "aud": sb.B.Issuer(), "jti": newUUID(),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"act": map[string]any{"sub": "agent-42"},
	}
	if edit != nil {
		edit(c)
	}
	tok, err := s.Sign(c, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTrustIdentityProvider(t *testing.T) {
	sb, err := Start(t.Context(), Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", KeyRefreshInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	const alias, iss = "chainbroker", "https://broker.example/issuer"
	key1, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	jwks := newJWKSServer(t, key1)
	if err := sb.B.TrustIdentityProvider(alias, iss, jwks.URL+"/jwks.json", DefaultTrust()); err != nil {
		t.Fatal(err)
	}
	if err := sb.B.LinkFor(alias, "alice@example.com", Alice); err != nil {
		t.Fatal(err)
	}
	if err := sb.B.LinkFor(alias, "robert@example.com", Bob); err != nil {
		t.Fatal(err)
	}
	current := key1 // the key the provider signs with now
	as := func(s *token.Signer, sub string, edit func(map[string]any)) string {
		return idpAssertion(t, sb, s, iss, sub, edit)
	}
	subB := func(t *testing.T, r reply) string {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("B: %v", r)
		}
		return parsed(t, r.str("access_token")).claims.Sub
	}

	t.Run("linked users", func(t *testing.T) {
		for sub, want := range map[string]string{"alice@example.com": AliceSubB, "robert@example.com": BobSubB} {
			if got := subB(t, jwtBearer(t, sb, as(key1, sub, nil))); got != want {
				t.Errorf("%s: B sub %q, want %q", sub, got, want)
			}
		}
		if jwks.fetches.Load() != 1 {
			t.Errorf("JWKS fetched %d times, want once", jwks.fetches.Load())
		}
	})
	t.Run("domain-a keeps working", func(t *testing.T) {
		if got := subB(t, jwtBearer(t, sb, assertion(t, sb))); got != AliceSubB {
			t.Errorf("B sub %q", got)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		other, _ := token.GenerateSigner("ES256")
		replayed := as(key1, "alice@example.com", nil)
		if r := jwtBearer(t, sb, replayed); r.status != 200 {
			t.Fatalf("first use: %v", r)
		}
		aSub, _ := sb.A.SignToken(map[string]any{"iss": sb.A.Issuer(), "sub": "alice@example.com", "aud": sb.B.Issuer(),
			"jti": newUUID(), "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()}, "")
		for _, tc := range []struct {
			name, assertion, desc string
		}{
			{"unlinked user", as(key1, "mallory@example.com", nil), DescUserNotFound},
			{"domain A's sub is not linked here", as(key1, AliceSubA, nil), DescUserNotFound},
			{"this provider's sub is not linked at domain-a", aSub, DescUserNotFound},
			{"replay", replayed, DescTokenReuse},
			{"key not published", as(other, "alice@example.com", nil), DescInvalidSignature},
			{"lifetime above 300 s", as(key1, "alice@example.com", func(c map[string]any) {
				c["exp"] = time.Now().Add(10 * time.Minute).Unix()
			}), DescLifetimeTooLong},
			{"two audiences", as(key1, "alice@example.com", func(c map[string]any) {
				c["aud"] = []string{sb.B.Issuer(), "account"}
			}), DescMultipleAudiences},
			{"no jti", as(key1, "alice@example.com", func(c map[string]any) { delete(c, "jti") }), DescJTIRequired},
			{"unknown issuer", idpAssertion(t, sb, key1, iss+"/other", "alice@example.com", nil), DescUnknownIssuer},
		} {
			t.Run(tc.name, func(t *testing.T) { wantError(t, jwtBearer(t, sb, tc.assertion), 400, errInvalidGrant, tc.desc) })
		}
	})
	t.Run("its own trust", func(t *testing.T) {
		fetches := jwks.fetches.Load()
		trust := Trust{MaxAssertionAge: 30 * time.Second, AllowedAlgs: []string{"ES256"}, AllowReuse: true}
		if err := sb.B.TrustIdentityProvider(alias, iss, jwks.URL+"/jwks.json", trust); err != nil {
			t.Fatal(err)
		}
		defer sb.B.TrustIdentityProvider(alias, iss, jwks.URL+"/jwks.json", DefaultTrust()) //nolint:errcheck
		// Links survive the update, reuse is allowed: no jti, twice.
		noJTI := as(key1, "alice@example.com", func(c map[string]any) {
			delete(c, "jti")
			c["exp"] = time.Now().Add(20 * time.Second).Unix()
		})
		for i := range 2 {
			if got := subB(t, jwtBearer(t, sb, noJTI)); got != AliceSubB {
				t.Errorf("use %d: B sub %q", i, got)
			}
		}
		wantError(t, jwtBearer(t, sb, as(key1, "alice@example.com", nil)), 400, errInvalidGrant, DescLifetimeTooLong)
		rsa, _ := token.GenerateSigner("RS256")
		wantError(t, jwtBearer(t, sb, as(rsa, "alice@example.com", func(c map[string]any) {
			c["exp"] = time.Now().Add(20 * time.Second).Unix()
		})), 400, errInvalidGrant, DescInvalidSignatureAlg)
		// domain-a keeps Keycloak's defaults: 300 s, reuse forbidden.
		if tr := sb.B.Trust(); tr.MaxAssertionAge != 300*time.Second || tr.AllowReuse {
			t.Errorf("domain-a trust changed: %+v", tr)
		}
		if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 {
			t.Errorf("domain-a: %v", r)
		}
		if n := jwks.fetches.Load() - fetches; n != 0 {
			t.Errorf("the same JWKS URL was fetched again (%d): keys not kept", n)
		}
	})
	t.Run("key rotation picked up on unknown kid", func(t *testing.T) {
		key2, _ := token.GenerateSigner("EdDSA")
		if key2.KeyID() == key1.KeyID() {
			t.Fatal("same kid")
		}
		before := jwks.fetches.Load()
		jwks.publish(t, key1, key2) // pre-published next key
		if got := subB(t, jwtBearer(t, sb, as(key2, "alice@example.com", nil))); got != AliceSubB {
			t.Errorf("B sub %q", got)
		}
		if jwks.fetches.Load() != before+1 {
			t.Errorf("JWKS fetches %d, want %d", jwks.fetches.Load(), before+1)
		}
		// Both keys verify until key1 is withdrawn.
		if r := jwtBearer(t, sb, as(key1, "alice@example.com", nil)); r.status != 200 {
			t.Errorf("old key before withdrawal: %v", r)
		}
		// Withdraw key1 and add key3: B's cached JWKS still holds key1 until
		// an unknown kid (key3) makes it refetch, as Keycloak's cache does;
		// from then on key1's tokens no longer verify.
		key3, _ := token.GenerateSigner("ES256")
		jwks.publish(t, key2, key3)
		if r := jwtBearer(t, sb, as(key3, "alice@example.com", nil)); r.status != 200 {
			t.Errorf("key3: %v", r)
		}
		wantError(t, jwtBearer(t, sb, as(key1, "alice@example.com", nil)), 400, errInvalidGrant, DescInvalidSignature)
		current = key3
	})
	t.Run("not allowed for the client", func(t *testing.T) {
		sb.B.SetAllowedIdentityProviders(IdentityProviderAlias)
		defer sb.B.SetAllowedIdentityProviders(IdentityProviderAlias, alias)
		wantError(t, jwtBearer(t, sb, as(current, "alice@example.com", nil)), 400, errInvalidGrant, DescIdPNotAllowed)
		if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 {
			t.Errorf("domain-a: %v", r)
		}
	})
	t.Run("JWKS unreachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		if err := sb.B.TrustIdentityProvider("dead", "https://dead.example", dead.URL+"/jwks", DefaultTrust()); err != nil {
			t.Fatal(err)
		}
		if err := sb.B.LinkFor("dead", "alice", Alice); err != nil {
			t.Fatal(err)
		}
		wantError(t, jwtBearer(t, sb, idpAssertion(t, sb, key1, "https://dead.example", "alice", nil)), 400, errInvalidGrant,
			DescInvalidSignature)
	})
	t.Run("unlink", func(t *testing.T) {
		sb.B.UnlinkFor(alias, "robert@example.com")
		if got := subB(t, jwtBearer(t, sb, as(current, "alice@example.com", nil))); got != AliceSubB {
			t.Errorf("alice: B sub %q", got)
		}
		wantError(t, jwtBearer(t, sb, as(current, "robert@example.com", nil)), 400, errInvalidGrant, DescUserNotFound)
		sb.B.UnlinkFor("no-such-provider", "x") // no effect, no panic
	})
	t.Run("configuration errors", func(t *testing.T) {
		for _, tc := range []struct {
			name                string
			alias, issuer, jwks string
			want                string
		}{
			{"no alias", "", iss, jwks.URL, "alias and issuer are required"},
			{"no issuer", "x", "", jwks.URL, "alias and issuer are required"},
			{"JWKS not a URL", "x", "https://x.example", "/certs", "not an http(s) URL"},
			{"JWKS file URL", "x", "https://x.example", "file:///etc/passwd", "not an http(s) URL"},
			{"issuer of domain-a", "x", sb.A.Issuer(), jwks.URL, `already belongs to identity provider "domain-a"`},
			{"issuer of another", "y", iss, jwks.URL, `already belongs to identity provider "chainbroker"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := sb.B.TrustIdentityProvider(tc.alias, tc.issuer, tc.jwks, DefaultTrust())
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
			})
		}
		if err := sb.B.LinkFor("nobody", "x", Alice); err == nil {
			t.Error("LinkFor an unknown provider succeeded")
		}
		if err := sb.B.LinkFor(alias, "x", "mallory"); err == nil {
			t.Error("LinkFor an unknown user succeeded")
		}
	})
}

// TestKeyRefreshRateLimit: with Keycloak's default refresh interval, a key
// rotated right after B fetched the JWKS is not seen until the interval has
// passed (which is why rotation tests set Options.KeyRefreshInterval).
func TestKeyRefreshRateLimit(t *testing.T) {
	sb := start(t)
	key1, _ := token.GenerateSigner("ES256")
	key2, _ := token.GenerateSigner("ES256")
	jwks := newJWKSServer(t, key1)
	const iss = "https://idp.example"
	if err := sb.B.TrustIdentityProvider("idp", iss, jwks.URL, DefaultTrust()); err != nil {
		t.Fatal(err)
	}
	if err := sb.B.LinkFor("idp", "a", Alice); err != nil {
		t.Fatal(err)
	}
	if r := jwtBearer(t, sb, idpAssertion(t, sb, key1, iss, "a", nil)); r.status != 200 {
		t.Fatalf("key1: %v", r)
	}
	jwks.publish(t, key1, key2)
	wantError(t, jwtBearer(t, sb, idpAssertion(t, sb, key2, iss, "a", nil)), 400, errInvalidGrant, DescInvalidSignature)
	if n := jwks.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times within the refresh interval, want 1", n)
	}
}

func TestLastAccepted(t *testing.T) {
	sb := start(t)
	if got := sb.B.LastAccepted(); got != nil {
		t.Fatalf("LastAccepted before any = %v", got)
	}
	as := assertion(t, sb)
	if r := jwtBearer(t, sb, as); r.status != 200 {
		t.Fatalf("B: %v", r)
	}
	got := sb.B.LastAccepted()
	want := parsed(t, as).claims
	if got["iss"] != sb.A.Issuer() || got["sub"] != AliceSubA || got["aud"] != sb.B.Issuer() || got["jti"] != want.JTI ||
		got["exp"] != float64(*want.Exp) || got["preferred_username"] != Alice {
		t.Errorf("LastAccepted = %v", got)
	}
	got["sub"] = "changed"
	if sb.B.LastAccepted()["sub"] != AliceSubA {
		t.Error("LastAccepted shares its map")
	}
	if sb.B.AcceptedCount() != 1 {
		t.Errorf("AcceptedCount = %d", sb.B.AcceptedCount())
	}

	// Refused assertions change nothing: a replay, an unlinked user.
	wantError(t, jwtBearer(t, sb, as), 400, errInvalidGrant, DescTokenReuse)
	sb.B.Unlink(BobSubA)
	wantError(t, jwtBearer(t, sb, exchange(t, sb, subjectToken(t, sb, Bob)).str("access_token")), 400, errInvalidGrant, DescUserNotFound)
	if sb.B.LastAccepted()["jti"] != want.JTI || sb.B.AcceptedCount() != 1 || sb.B.JWTBearerCount() != 3 {
		t.Errorf("after refusals: jti %v, accepted %d, received %d", sb.B.LastAccepted()["jti"], sb.B.AcceptedCount(),
			sb.B.JWTBearerCount())
	}

	// Claims as sent: a nested act claim, an aud given as a one-element
	// array (of B's token endpoint).
	sb.A.SetMisbehaviour(Misbehaviour{ExtraClaims: map[string]any{
		"act": map[string]any{"sub": "agent-7", "act": map[string]any{"sub": "orchestrator"}},
		"aud": []string{sb.B.TokenEndpoint()},
	}})
	defer sb.A.ResetMisbehaviour()
	if r := jwtBearer(t, sb, assertion(t, sb)); r.status != 200 {
		t.Fatalf("B: %v", r)
	}
	got = sb.B.LastAccepted()
	act, _ := got["act"].(map[string]any)
	nested, _ := act["act"].(map[string]any)
	aud, _ := got["aud"].([]any)
	if act["sub"] != "agent-7" || nested["sub"] != "orchestrator" || len(aud) != 1 || aud[0] != sb.B.TokenEndpoint() {
		t.Errorf("LastAccepted = %v", got)
	}
	if sb.B.AcceptedCount() != 2 {
		t.Errorf("AcceptedCount = %d", sb.B.AcceptedCount())
	}
}
