package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shipped examples are valid configurations.
func TestExamplesParse(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Domains) < 2 || len(cfg.Chains) < 1 {
				t.Errorf("%s: %d domains, %d chains", f, len(cfg.Domains), len(cfg.Chains))
			}
		})
	}
}

const minimal = `
callers:
  api_keys: [{name: agent, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]
policy:
  - {caller: agent, roles: [audit], chains: [{source: a, target: b, scopes: ["*"]}]}
domains:
  - {name: a, issuer: https://a.example/realms/a, token_endpoint: https://a.example/t, jwks_uri: https://a.example/k, client: {client_id: c, client_secret_env: X}}
  - {name: b, issuer: https://b.example/realms/b, token_endpoint: https://b.example/t, client: {client_id: c, client_secret_file: /s}}
chains: [{source: a, target: b}]
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Domain("b")
	switch {
	case cfg.Listen.GRPC != "127.0.0.1:9090" || cfg.Listen.HTTP != "127.0.0.1:8080":
		t.Errorf("listen = %+v", cfg.Listen)
	case cfg.Store.Backend != "memory" || cfg.Log.Format != "json" || cfg.Log.Level != "info":
		t.Errorf("store/log = %+v %+v", cfg.Store, cfg.Log)
	case b.Client.AuthMethod != "client_secret_basic" || b.Timeout.D() != 10*time.Second:
		t.Errorf("domain b = %+v", b)
	case len(b.Assertion.Audience) != 1 || b.Assertion.Audience[0] != b.Issuer || b.Assertion.MaxLifetime.D() != 300*time.Second ||
		b.Assertion.ClockSkew != 0 || b.Assertion.AllowReuse:
		t.Errorf("assertion policy = %+v, want Keycloak's defaults", b.Assertion)
	case cfg.Domains[0].TokenExchange.RequestedTokenType != TokenTypeAccessToken:
		t.Errorf("requested_token_type = %q", cfg.Domains[0].TokenExchange.RequestedTokenType)
	case cfg.Chains[0].Audience != b.Issuer:
		t.Errorf("chain audience = %q, want the target's issuer", cfg.Chains[0].Audience)
	case cfg.Limits.MaxTokenBytes != 16<<10:
		t.Errorf("limits = %+v", cfg.Limits)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown field", "domain: []\n", []string{"domain: unknown key (did you mean domains?) (line 1)"}},
		{"bad duration", "listen: {shutdown_timeout: soon}\n", []string{`invalid duration "soon"`}},
		{"empty", "{}\n", []string{"domains: at least one domain", "chains: at least one chain", "callers: no way to authenticate callers"}},
		{"security", `
listen: {http: "0.0.0.0:8080"}
tls: {cert_file: /c}
callers:
  allow_anonymous: true
  mtls: true
  api_keys: [{name: k, sha256: "not-hex"}, {name: k, sha256: abcd}]
  jwt: {issuer: https://i.example, jwks_uri: "http://i.example/keys", caller_claim: email}
rate_limit: {requests_per_second: -1}
policy:
  - {caller: anonymous, roles: [admin], chains: [{source: x, target: y}]}
  - {caller: anonymous}
`, []string{
			"tls: set both cert_file and key_file",
			"callers.mtls: needs tls.client_ca_file",
			`callers.allow_anonymous: refused: listen.http "0.0.0.0:8080" is not a loopback address`,
			"callers.api_keys[0].sha256: must be the 64 hex digits",
			`callers.api_keys[1].name: duplicate "k"`,
			"callers.jwt.jwks_uri: http:// is refused",
			"callers.jwt.audience: required",
			"callers.jwt.caller_claim: must be sub, azp or client_id",
			"rate_limit: must not be negative",
			`policy[0].roles[0]: unknown role "admin"`,
			"policy[0].chains[0]: no chain x -> y is configured",
			`policy[1].caller: duplicate caller "anonymous"`,
		}},
		{"anonymous in policy without allow_anonymous", strings.Replace(minimal, "policy:\n", "policy:\n  - {caller: anonymous}\n", 1), []string{"grants anonymous callers, but callers.allow_anonymous is false"}},
		{"many problems at once", `
listen: {grpc: "nohostport"}
log: {level: loud, format: xml}
store: {backend: etcd}
domains:
  - {name: a, issuer: "http://a.example", client: {auth_method: magic}}
  - {name: a, issuer: "https://b.example", token_endpoint: "https://b.example/t", client: {client_id: c, client_secret_env: X, client_secret_file: /f},
     assertion: {allowed_algs: [HS256, none], clock_skew: 1h}}
  - {name: c, issuer: "https://b.example", discovery: true, client: {client_id: c, auth_method: private_key_jwt}}
chains:
  - {source: a, target: a}
  - {source: x, target: a}
  - {source: a, target: a}
`, []string{
			`listen.grpc: invalid host:port "nohostport"`,
			"log.level", "log.format", "store.backend",
			"domains[0].issuer: http:// is refused unless the domain sets allow_insecure_http: true",
			"domains[0].token_endpoint: required unless discovery is true",
			"domains[0].client.auth_method",
			"domains[0].client.client_id: required",
			`domains[1].name: duplicate domain "a"`,
			"domains[1].client: set exactly one of client_secret_env and client_secret_file",
			`domains[1].assertion.allowed_algs[0]: unsupported or unsafe algorithm "HS256"`,
			`domains[1].assertion.allowed_algs[1]: unsupported or unsafe algorithm "none"`,
			"domains[1].assertion.clock_skew",
			`domains[2].issuer: same issuer as domain "a"`,
			"domains[2].client.private_key_file: required for private_key_jwt",
			"chains[0]: source and target must differ",
			`chains[1].source: unknown domain "x"`,
			"chains[2]: duplicate chain a -> a",
		}},
		{"subject_token_typ outside issue mode", strings.Replace(minimal, "chains: [{source: a, target: b}]", "chains: [{source: a, target: b, subject_token_typ: [at+jwt]}]", 1),
			[]string{"chains[0].subject_token_typ: only in issue mode"}},
		{"redis needs an address", "store: {backend: redis}\n" + minimal, []string{"store.redis: set exactly one of url and addrs"}},
		{"redis url scheme", "store: {backend: redis, redis: {url: http://x}}\n" + minimal, []string{"store.redis.url"}},
		{"negative audit retention", "store: {audit_retention: -1h}\n" + minimal, []string{"store.audit_retention: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := Parse([]byte("store: {backend: redis, redis: {url: redis://127.0.0.1:6379/0}}\n" + minimal)); err != nil {
		t.Errorf("valid redis config: %v", err)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(good, []byte("s3cret\r\n"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"SET": "from-env", "EMPTY": ""}[k]
		return v, ok
	}
	tests := []struct {
		env, file, want, err string
	}{
		{env: "SET", want: "from-env"},
		{env: "UNSET", err: "environment variable UNSET is not set"},
		{env: "EMPTY", err: "environment variable EMPTY is not set"},
		{file: good, want: "s3cret"},
		{file: empty, err: "is empty"},
		{file: filepath.Join(dir, "missing"), err: "no such file"},
		{err: "no secret configured"},
	}
	for _, tt := range tests {
		got, err := Secret("f", tt.env, tt.file, env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "f") {
				t.Errorf("Secret(%q, %q) err = %v, want %q", tt.env, tt.file, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Secret(%q, %q) = %q, %v; want %q", tt.env, tt.file, got, err, tt.want)
		}
	}
}
