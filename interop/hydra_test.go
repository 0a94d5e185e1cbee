package interop

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GrantTypeJWTBearer is RFC 7523's grant type.
const GrantTypeJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// HydraAccessTokenTTL is Hydra's access token lifetime in these tests
// (ttl.access_token): deliberately neither Hydra's default (1h) nor the
// sandbox's (300 s), so that an expires_in of this value can only come from
// Hydra's own token response.
const HydraAccessTokenTTL = 17 * time.Minute

// hydraConfig is the whole of Hydra's configuration file (hydra.yml); the
// ports are free loopback ports chosen per test. docs/interop.md shows it.
const hydraConfig = `# Ory Hydra v2.3.0 as domain B of chainbroker's interop tests.
# Run: hydra serve all --dev --sqa-opt-out -c hydra.yml
dsn: memory                      # in-process SQLite (needs -tags sqlite)
serve:
  public:
    host: 127.0.0.1
    port: %[1]d
  admin:
    host: 127.0.0.1
    port: %[2]d
urls:
  self:
    issuer: http://127.0.0.1:%[1]d
secrets:
  system:
    - chainbroker-interop-not-a-real-secret
strategies:
  access_token: opaque           # default; a client may ask for jwt (access_token_strategy)
ttl:
  access_token: %[3]s
oauth2:
  grant:
    jwt:
      jti_optional: false        # Hydra's defaults, written out: jti and iat required,
      iat_optional: false        # exp - iat at most max_ttl, no clock skew at all
      max_ttl: 720h
log:
  level: info
  format: text
`

// hydra is a running Hydra: public and admin listeners on loopback.
type hydra struct {
	proc      *process
	publicURL string // http://127.0.0.1:P
	adminURL  string // http://127.0.0.1:Q
	// From the discovery document, as Hydra reports them.
	issuer        string
	tokenEndpoint string
	jwksURI       string
}

// startHydra runs `hydra serve all --dev --sqa-opt-out` with an in-memory
// database in a temporary directory and waits until both its listeners are
// ready. --dev allows http:// URLs; --sqa-opt-out turns off Ory's usage
// telemetry (no traffic leaves the machine).
func startHydra(t *testing.T) *hydra {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		pub, adm := freePort(t), freePort(t)
		cfg := fmt.Sprintf(hydraConfig, pub, adm, HydraAccessTokenTTL)
		if err := os.WriteFile(filepath.Join(dir, "hydra.yml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startProcess(t, "hydra", dir, nil, bins.hydra, "serve", "all", "--dev", "--sqa-opt-out", "-c", "hydra.yml")
		h := &hydra{proc: p, publicURL: "http://" + loopback(pub), adminURL: "http://" + loopback(adm)}
		err := p.waitHealthy(h.adminURL + "/health/ready")
		if err == nil {
			err = p.waitHealthy(h.publicURL + "/health/ready")
		}
		if errors.Is(err, errAddrInUse) && attempt < 3 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		h.createSigningKeys(t)
		var md struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
			JWKSURI       string `json:"jwks_uri"`
		}
		h.call(t, http.MethodGet, h.publicURL+"/.well-known/openid-configuration", nil, http.StatusOK, &md)
		if md.Issuer == "" || md.TokenEndpoint == "" || md.JWKSURI == "" {
			t.Fatalf("Hydra's discovery document lacks issuer, token_endpoint or jwks_uri: %+v", md)
		}
		h.issuer, h.tokenEndpoint, h.jwksURI = md.Issuer, md.TokenEndpoint, md.JWKSURI
		var v struct {
			Version string `json:"version"`
		}
		h.call(t, http.MethodGet, h.adminURL+"/version", nil, http.StatusOK, &v)
		t.Logf("Hydra %s: issuer %s, token endpoint %s", v.Version, h.issuer, h.tokenEndpoint)
		return h
	}
}

// Hydra's two signing key sets: ID tokens, and JWT access tokens.
var hydraKeySets = []string{"hydra.openid.id-token", "hydra.jwt.access-token"}

// createSigningKeys creates Hydra's signing keys with ES256 (POST
// /admin/keys/{set}) before anything needs them. Left alone, Hydra generates
// RSA-4096 keys on first use, inside the request that needs them: on a busy
// 2-core machine that takes over 10 s, Hydra's fixed HTTP write timeout, and
// the request fails with EOF.
func (h *hydra) createSigningKeys(t *testing.T) {
	t.Helper()
	for _, set := range hydraKeySets {
		req := map[string]string{"alg": "ES256", "use": "sig", "kid": set + ".interop"}
		h.call(t, http.MethodPost, h.adminURL+"/admin/keys/"+set, req, http.StatusCreated, nil)
	}
}

// stop stops Hydra (SIGTERM, then SIGKILL after stopTimeout).
func (h *hydra) stop(t *testing.T) { h.proc.stop(t) }

// hydraClient is an OAuth 2.0 client registered at Hydra for the broker.
type hydraClient struct {
	ID, Secret string
	AuthMethod string // token_endpoint_auth_method
	Strategy   string // access_token_strategy: opaque or jwt
}

// createClient registers a confidential client allowed the jwt-bearer grant
// and the scopes of hydraClientScope (POST /admin/clients).
func (h *hydra) createClient(t *testing.T, name, authMethod, strategy string) hydraClient {
	t.Helper()
	secret := randomHex(t, 24)
	req := map[string]any{
		"client_name":                name,
		"client_secret":              secret,
		"grant_types":                []string{GrantTypeJWTBearer},
		"response_types":             []string{"token"},
		"scope":                      hydraClientScope,
		"token_endpoint_auth_method": authMethod,
		"access_token_strategy":      strategy,
	}
	var resp struct {
		ClientID            string `json:"client_id"`
		AccessTokenStrategy string `json:"access_token_strategy"`
	}
	h.call(t, http.MethodPost, h.adminURL+"/admin/clients", req, http.StatusCreated, &resp)
	if resp.ClientID == "" || resp.AccessTokenStrategy != strategy {
		t.Fatalf("POST /admin/clients answered client_id %q, access_token_strategy %q", resp.ClientID, resp.AccessTokenStrategy)
	}
	return hydraClient{ID: resp.ClientID, Secret: secret, AuthMethod: authMethod, Strategy: strategy}
}

// trust is a jwt-bearer trust relationship: Hydra accepts assertions from
// Issuer signed by JWK, for Subject (or any subject), granting at most Scope.
type trust struct {
	Issuer          string          `json:"issuer"`
	Subject         string          `json:"subject,omitempty"`
	AllowAnySubject bool            `json:"allow_any_subject,omitempty"`
	Scope           []string        `json:"scope"`
	JWK             json.RawMessage `json:"jwk"`
	ExpiresAt       time.Time       `json:"expires_at"`
}

// addTrust registers tr (POST /admin/trust/grants/jwt-bearer/issuers) and
// returns its id.
func (h *hydra) addTrust(t *testing.T, tr trust) string {
	t.Helper()
	var resp struct {
		ID string `json:"id"`
	}
	h.call(t, http.MethodPost, h.adminURL+"/admin/trust/grants/jwt-bearer/issuers", tr, http.StatusCreated, &resp)
	if resp.ID == "" {
		t.Fatal("POST /admin/trust/grants/jwt-bearer/issuers answered no id")
	}
	return resp.ID
}

// introspection is the part of Hydra's RFC 7662 answer the tests check.
type introspection struct {
	Active   bool   `json:"active"`
	Subject  string `json:"sub"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Expiry   int64  `json:"exp"`
	IssuedAt int64  `json:"iat"`
	TokenUse string `json:"token_use"`
	Issuer   string `json:"iss"`
}

// introspect asks Hydra's admin API about an access token (it is how a
// resource server in domain B would check an opaque token).
func (h *hydra) introspect(t *testing.T, token string) introspection {
	t.Helper()
	var out introspection
	h.call(t, http.MethodPost, h.adminURL+"/admin/oauth2/introspect", url.Values{"token": {token}}, http.StatusOK, &out)
	return out
}

// jwtBearer posts the jwt-bearer grant to Hydra directly (no broker), with
// client_secret_basic; it returns the HTTP status and the JSON body.
func (h *hydra) jwtBearer(t *testing.T, c hydraClient, assertion, scope string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {GrantTypeJWTBearer}, "assertion": {assertion}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, h.tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	status, body := do(t, req)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("Hydra's token endpoint answered HTTP %d, not JSON: %s", status, body)
	}
	return status, out
}

// call sends a JSON (or, for url.Values, form) body and decodes a JSON
// answer into out, failing the test unless the status is want.
func (h *hydra) call(t *testing.T, method, u string, body any, want int, out any) {
	t.Helper()
	var (
		rd    io.Reader
		ctype string
	)
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(js), "application/json"
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	status, resp := do(t, req)
	if status != want {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", method, u, status, want, resp)
	}
	if out != nil {
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, u, resp, err)
		}
	}
}

// do sends req with a bounded client and returns the status and up to 1 MiB
// of body.
func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := (&http.Client{Timeout: callTimeout}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, b
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
