package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Decode problems are named by YAML path and line, several at once, next to
// the validation problems, one per line.
func TestDecodeProblemsByYAMLPath(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown nested key with a suggestion", "listen:\n  grcp: 127.0.0.1:9090\n" + minimal,
			[]string{"listen.grcp: unknown key (did you mean grpc?) (line 2)"}},
		{"unknown key in a list element", strings.Replace(minimal, "client_secret_env: X", "client_secret_evn: X", 1),
			[]string{"domains[0].client.client_secret_evn: unknown key (did you mean client_secret_env?) (line 7)"}},
		{"unknown key without a close match", "frobnicate: 1\n" + minimal, []string{"frobnicate: unknown key (line 1)"}},
		{"wrong type", "limits: {max_token_bytes: lots}\n" + minimal, []string{`limits.max_token_bytes: want an integer, got "lots" (line 1)`}},
		{"list for a string", "log: {level: [info]}\n" + minimal, []string{"log.level: want a string, got a list (line 1)"}},
		{"scalar for a mapping", "listen: 9090\n" + minimal, []string{`listen: want a mapping, got "9090" (line 1)`}},
		{"bad duration", "listen: {shutdown_timeout: soon}\n" + minimal, []string{`listen.shutdown_timeout: invalid duration "soon" (use e.g. 300s, 5m) (line 1)`}},
		{"duration given a list", "listen: {shutdown_timeout: [1s]}\n" + minimal, []string{"listen.shutdown_timeout: want a duration such as 300s or 5m (line 1)"}},
		{"duplicate key", "log: {level: info, level: debug}\n" + minimal, []string{"log.level: duplicate key (first at line 1) (line 1)"}},
		{"not a mapping", "[]\n", []string{"(document): want a mapping, got a list (line 1)"}},
		{"validation problems carry the line", strings.Replace(minimal, "client: {client_id: c, client_secret_file: /s}", "client: {client_secret_file: /s}", 1),
			[]string{"domains[1].client.client_id: required (line 8)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			var p Problems
			if !errors.As(err, &p) {
				t.Fatalf("err = %v, want Problems", err)
			}
			for _, w := range tt.want {
				if !containsLine(err.Error(), w) {
					t.Errorf("no line %q in:\n%v", w, err)
				}
			}
		})
	}
}

// Every decode problem of a document comes in one error, with the
// validation problems, and a wrongly typed value does not also read as
// "required".
func TestDecodeProblemsAllAtOnce(t *testing.T) {
	doc := `listen:
  grcp: 127.0.0.1:9090
  shutdown_timeout: soon
limits: {max_scopes: many}
domains:
  - {name: a, issuer: https://a.example, token_endpoint: https://a.example/t, client: {client_id: [c], client_secret_env: X}}
  - {name: b, issuer: https://b.example, token_endpoint: https://b.example/t, timout: 5s, client: {client_id: c, client_secret_env: Y}}
chains: [{source: a, target: b}]
`
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("want an error")
	}
	want := []string{
		"listen.grcp: unknown key (did you mean grpc?) (line 2)",
		`listen.shutdown_timeout: invalid duration "soon" (use e.g. 300s, 5m) (line 3)`,
		`limits.max_scopes: want an integer, got "many" (line 4)`,
		"domains[0].client.client_id: want a string, got a list (line 6)",
		"domains[1].timout: unknown key (did you mean timeout?) (line 7)",
		"callers: no way to authenticate callers: configure api_keys, jwt or mtls (or allow_anonymous on loopback)",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want)+1 || lines[0] != "config: 6 problems:" {
		t.Errorf("want a header and %d problems, one per line:\n%v", len(want), err)
	}
	for _, w := range want {
		if !containsLine(err.Error(), w) {
			t.Errorf("no line %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "client_id: required") {
		t.Errorf("a wrongly typed client_id is also reported as missing:\n%v", err)
	}
}

func TestProblemsErrorOnePerLine(t *testing.T) {
	if got := (Problems{"a: x"}).Error(); got != "config: a: x" {
		t.Errorf("one problem: %q", got)
	}
	if got := (Problems{"a: x", "b: y"}).Error(); got != "config: 2 problems:\n  a: x\n  b: y" {
		t.Errorf("two problems: %q", got)
	}
}

// containsLine reports whether one line of s, trimmed, is want.
func containsLine(s, want string) bool {
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(strings.TrimPrefix(l, "config: ")) == want {
			return true
		}
	}
	return false
}

// staticFiles writes good and bad files for the static checks.
type staticFiles struct {
	dir, cert, key, ca, ecKey, empty, notPEM string
}

func newStaticFiles(t *testing.T) staticFiles {
	t.Helper()
	dir := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmpl := &x509.Certificate{SerialNumber: bigOne(), DNSNames: []string{"localhost"}, IsCA: true, BasicConstraintsValid: true}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	f := staticFiles{dir: dir}
	for _, w := range []struct {
		p    *string
		name string
		b    []byte
	}{
		{&f.cert, "cert.pem", certPEM}, {&f.key, "key.pem", keyPEM}, {&f.ca, "ca.pem", certPEM},
		{&f.ecKey, "client.pem", keyPEM}, {&f.empty, "empty", []byte("\n")}, {&f.notPEM, "junk", []byte("not pem")},
	} {
		*w.p = filepath.Join(dir, w.name)
		if err := os.WriteFile(*w.p, w.b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// CheckStatic names every secret and file problem by YAML path, at once,
// and never a secret's value.
func TestCheckStatic(t *testing.T) {
	f := newStaticFiles(t)
	missing := filepath.Join(f.dir, "missing.pem")
	env := func(k string) (string, bool) {
		v, ok := map[string]string{"SET": "s3cret-value", "SHORTKEY": "c2hvcnQ="}[k]
		return v, ok
	}
	good := func() *File {
		return &File{
			TLS:     TLS{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.ca},
			Callers: Callers{JWT: &CallerJWT{CAFile: f.ca}},
			Domains: []Domain{
				{Name: "a", CAFile: f.ca, Client: Client{AuthMethod: "client_secret_basic", SecretEnv: "SET"}},
				{Name: "b", Client: Client{AuthMethod: "private_key_jwt", PrivateKeyFile: f.ecKey}},
			},
			Issuer: Issuer{Keys: []IssuerKey{{File: f.key}}},
		}
	}
	if err := good().CheckStatic(env); err != nil {
		t.Fatalf("good files refused: %v", err)
	}
	bad := good()
	bad.TLS = TLS{CertFile: missing, KeyFile: f.key, ClientCAFile: f.notPEM}
	bad.Callers.JWT.CAFile = f.empty
	bad.Domains[0].Client.SecretEnv = "UNSET"
	bad.Domains[0].CAFile = missing
	bad.Domains[1].Client.PrivateKeyFile = f.cert
	bad.Domains = append(bad.Domains, Domain{Name: "c", Client: Client{AuthMethod: "client_secret_post", SecretFile: f.empty}})
	bad.Store = Store{Backend: "redis", Redis: Redis{PasswordFile: missing}}
	bad.Cache.Keys = []CacheKey{{ID: "k1", SecretEnv: "SHORTKEY"}, {ID: "k2", SecretEnv: "SET"}}
	bad.Issuer.Keys = []IssuerKey{{File: missing}}
	err := bad.CheckStatic(env)
	want := []string{
		"tls.cert_file: open " + missing + ": no such file or directory",
		"tls.client_ca_file: " + f.notPEM + ": no PEM certificate found",
		"callers.jwt.ca_file: " + f.empty + ": no PEM certificate found",
		"store.redis.password_file: open " + missing + ": no such file or directory",
		"domains[0].ca_file: open " + missing + ": no such file or directory",
		"domains[0].client.client_secret_env: environment variable UNSET is not set",
		"domains[1].client.private_key_file: " + f.cert + `: PEM block "CERTIFICATE" is not a private key`,
		"domains[2].client.client_secret_file: file " + f.empty + " is empty",
		"cache.keys[0]: the secret must be the base64 of 32 bytes (openssl rand -base64 32)",
		"cache.keys[1]: the secret must be the base64 of 32 bytes (openssl rand -base64 32)",
		"issuer.keys[0].file: open " + missing + ": no such file or directory",
	}
	var p Problems
	if !errors.As(err, &p) || len(p) != len(want) {
		t.Fatalf("want %d problems, got:\n%v", len(want), err)
	}
	for _, w := range want {
		if !containsLine(err.Error(), w) {
			t.Errorf("no line %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("a secret's value is in the error:\n%v", err)
	}

	// A certificate and a key that do not match.
	other := newStaticFiles(t)
	mismatch := good()
	mismatch.TLS.KeyFile = other.key
	if err := mismatch.CheckStatic(env); err == nil || !strings.Contains(err.Error(), "tls: cert_file and key_file do not load as a pair") {
		t.Errorf("mismatched pair: %v", err)
	}
}

// ParseAndCheck reports decode, validation and static problems in one
// error, each by YAML path and line.
func TestParseAndCheckAllAtOnce(t *testing.T) {
	f := newStaticFiles(t)
	doc := `listen:
  grcp: 127.0.0.1:9090
tls:
  cert_file: ` + filepath.Join(f.dir, "missing.pem") + `
  key_file: ` + f.key + `
limits: {max_scopes: many}
` + minimal
	_, err := ParseAndCheck([]byte(doc), func(string) (string, bool) { return "", false })
	for _, w := range []string{
		"listen.grcp: unknown key (did you mean grpc?) (line 2)",
		"tls.cert_file: open " + filepath.Join(f.dir, "missing.pem") + ": no such file or directory (line 4)",
		`limits.max_scopes: want an integer, got "many" (line 6)`,
		"domains[0].client.client_secret_env: environment variable X is not set (line 13)",
		"domains[1].client.client_secret_file: open /s: no such file or directory (line 14)",
	} {
		if !containsLine(err.Error(), w) {
			t.Errorf("no line %q in:\n%v", w, err)
		}
	}
	env := func(k string) (string, bool) { return "v", k == "X" }
	secret := filepath.Join(f.dir, "secret")
	if err := os.WriteFile(secret, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseAndCheck([]byte(strings.Replace(minimal, "/s}", secret+"}", 1)), env); err != nil {
		t.Errorf("a good configuration: %v", err)
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
