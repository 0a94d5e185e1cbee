package interop

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Names in the broker's configuration.
const (
	interopCaller = "interop-agent"     // the tests' caller (API key)
	domainA       = sandbox.DomainAName // the sandbox's domain A: the source of every chain
	domainHydra   = "hydra"             // Ory Hydra: the target
)

// Environment variables through which the broker process gets its client
// secrets (client_secret_env), as in production.
const (
	envSecretA        = "CHAINBROKER_SECRET_DOMAIN_A"
	envSecretHydra    = "CHAINBROKER_SECRET_HYDRA"
	envSecretHydraJWT = "CHAINBROKER_SECRET_HYDRA_JWT"
)

// Scopes: Hydra's clients may ask for hydraClientScope, the trust
// relationships grant only trustedScopes, and chains ask for
// defaultChainScope when the caller names none.
const (
	hydraClientScope  = "profile email address"
	defaultChainScope = "profile email"
)

var trustedScopes = []string{"profile", "email"}

// OAuth identifiers (RFC 8693).
const (
	tokenTypeAccess   = "urn:ietf:params:oauth:token-type:access_token"
	grantTypeExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// world is one Hydra and one sandbox domain A that Hydra trusts, with two
// Hydra clients for the broker: one issuing opaque access tokens
// (client_secret_basic), one issuing JWT access tokens (client_secret_post).
type world struct {
	hydra  *hydra
	sb     *sandbox.Sandbox
	opaque hydraClient
	jwt    hydraClient
	apiKey string // the test caller's API key at the broker
}

// newWorld starts Hydra and a sandbox and configures Hydra through its admin
// API: the two clients, and a trust relationship for domain A's issuer with
// A's public key, any subject, scopes profile and email, for one hour.
func newWorld(t *testing.T) *world {
	t.Helper()
	requireBinaries(t)
	w := &world{sb: apptest.StartSandbox(t, sandbox.Options{}), hydra: startHydra(t), apiKey: randomHex(t, 32)}
	w.trustSource(t, w.sb, "")
	w.opaque = w.hydra.createClient(t, "chainbroker", "client_secret_basic", "opaque")
	w.jwt = w.hydra.createClient(t, "chainbroker-jwt", "client_secret_post", "jwt")
	return w
}

// trustSource lets sb's domain A issue assertions for Hydra's token endpoint
// and registers the trust at Hydra: for any subject, or only for subject
// when it is not empty.
func (w *world) trustSource(t *testing.T, sb *sandbox.Sandbox, subject string) {
	t.Helper()
	sb.A.AllowAudience(w.hydra.tokenEndpoint)
	w.hydra.addTrust(t, trust{
		Issuer:          sb.A.Issuer(),
		Subject:         subject,
		AllowAnySubject: subject == "",
		Scope:           trustedScopes,
		JWK:             publicJWK(t, sb.A),
		ExpiresAt:       time.Now().Add(time.Hour).UTC().Truncate(time.Second),
	})
}

// publicJWK is domain A's signing key from its JWKS (Hydra requires its kid).
func publicJWK(t *testing.T, a *sandbox.DomainA) json.RawMessage {
	t.Helper()
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(a.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		var kid struct {
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(k, &kid); err == nil && kid.Kid == a.KeyID() {
			return k
		}
	}
	t.Fatalf("domain A's JWKS has no key with kid %q", a.KeyID())
	return nil
}

// config is the broker configuration of these tests: domain A (the sandbox)
// as source; Hydra as target, found by discovery, with client c, and the
// assertion audience Hydra accepts (its token endpoint) both as the chain's
// token exchange audience and as the target's assertion policy.
func (w *world) config(c hydraClient) *config.File {
	secret := envSecretHydra
	if c == w.jwt {
		secret = envSecretHydraJWT
	}
	sum := sha256.Sum256([]byte(w.apiKey))
	return &config.File{
		Listen: config.Listen{ShutdownTimeout: config.Duration(5 * time.Second)},
		// One caller, authenticated by API key, allowed the chain into
		// Hydra with any scope and the audit trail.
		Callers: config.Callers{APIKeys: []config.APIKey{{Name: interopCaller, SHA256: hex.EncodeToString(sum[:])}}},
		Log:     config.Log{Level: "debug", Format: "text"},
		Store:   config.Store{Backend: "memory"},
		Domains: []config.Domain{
			sourceDomain(domainA, w.sb),
			{
				Name:              domainHydra,
				Issuer:            w.hydra.issuer,
				Discovery:         true, // token_endpoint from Hydra's discovery document
				Timeout:           config.Duration(5 * time.Second),
				AllowInsecureHTTP: true, // loopback only
				Client:            config.Client{ClientID: c.ID, AuthMethod: c.AuthMethod, SecretEnv: secret},
				Assertion: config.AssertionPolicy{
					Audience:    []string{w.hydra.tokenEndpoint}, // Hydra accepts nothing else
					MaxLifetime: config.Duration(300 * time.Second),
					ClockSkew:   0, // Hydra tolerates none (the default)
				},
			},
		},
		Chains: []config.Chain{{
			Source:        domainA,
			Target:        domainHydra,
			Audience:      w.hydra.tokenEndpoint,
			DefaultScopes: strings.Fields(defaultChainScope),
		}},
		Policy: []config.PolicyEntry{{
			Caller: interopCaller,
			Roles:  []string{"audit"},
			Chains: []config.PolicyChain{{Source: domainA, Target: domainHydra, Scopes: []string{"*"}}},
		}},
	}
}

// allow adds a chain from source to Hydra to cfg and grants it to the caller.
func (w *world) allow(cfg *config.File, source string) {
	cfg.Chains = append(cfg.Chains, config.Chain{Source: source, Target: domainHydra, Audience: w.hydra.tokenEndpoint})
	cfg.Policy[0].Chains = append(cfg.Policy[0].Chains, config.PolicyChain{Source: source, Target: domainHydra, Scopes: []string{"*"}})
}

// sourceDomain configures a sandbox's domain A as a chain source.
func sourceDomain(name string, sb *sandbox.Sandbox) config.Domain {
	return config.Domain{
		Name:              name,
		Issuer:            sb.A.Issuer(),
		TokenEndpoint:     sb.A.TokenEndpoint(),
		JWKSURI:           sb.A.JWKSURI(),
		Timeout:           config.Duration(5 * time.Second),
		AllowInsecureHTTP: true, // loopback only
		Client:            config.Client{ClientID: sandbox.BrokerClientID, AuthMethod: "client_secret_basic", SecretEnv: envSecretA},
	}
}

// startBroker runs `chainbroker serve` with cfg and the clients' secrets.
func (w *world) startBroker(t *testing.T, cfg *config.File) *brokerProc {
	t.Helper()
	return startBroker(t, cfg, []string{
		envSecretA + "=" + sandbox.BrokerSecretA,
		envSecretHydra + "=" + w.opaque.Secret,
		envSecretHydraJWT + "=" + w.jwt.Secret,
	}, w.apiKey)
}

// assertionFromA runs hop 1 by hand (the broker's client at A, RFC 8693) and
// returns the JWT authorization grant A issues for audience.
func assertionFromA(t *testing.T, sb *sandbox.Sandbox, user, audience string) string {
	t.Helper()
	form := url.Values{
		"grant_type":         {grantTypeExchange},
		"subject_token":      {apptest.SubjectToken(t, sb, user)},
		"subject_token_type": {tokenTypeAccess},
		"audience":           {audience},
	}
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, sb.A.TokenEndpoint(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sandbox.BrokerClientID, sandbox.BrokerSecretA)
	status, body := do(t, req)
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || status != http.StatusOK || out.AccessToken == "" {
		t.Fatalf("token exchange at domain A: HTTP %d: %s", status, body)
	}
	return out.AccessToken
}
