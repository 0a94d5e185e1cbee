package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/sandbox"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// `chainbroker serve --config FILE` against authorization servers it only
// knows from the file (domain A by discovery), with secrets from the
// environment: a chain over REST succeeds, and SIGTERM-style cancellation
// shuts it down cleanly.
func TestServeWithConfigFile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := sandbox.Start(ctx, sandbox.Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	t.Setenv("TEST_SECRET_A", sandbox.BrokerSecretA)
	secretFile := filepath.Join(t.TempDir(), "secret-b")
	if err := os.WriteFile(secretFile, []byte(sandbox.BrokerSecretB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	const apiKey = "test-agent-key-0123456789"
	cfg := fmt.Sprintf(`
listen: {http: %q, grpc: %q, shutdown_timeout: 5s}
log: {level: debug, format: json}
callers:
  api_keys: [{name: test-agent, sha256: %s}]
policy:
  - {caller: test-agent, chains: [{source: domain-a, target: domain-b}]}
domains:
  - name: domain-a
    issuer: %q
    discovery: true
    allow_insecure_http: true
    client: {client_id: chainbroker, client_secret_env: TEST_SECRET_A}
  - name: domain-b
    issuer: %q
    token_endpoint: %q
    allow_insecure_http: true
    client: {client_id: chainbroker, auth_method: client_secret_post, client_secret_file: %q}
chains:
  - {source: domain-a, target: domain-b, default_scopes: [openid]}
`, httpAddr, grpcAddr, auth.HashAPIKey(apiKey), sb.A.Issuer(), sb.B.Issuer(), sb.B.TokenEndpoint(), secretFile)
	path := filepath.Join(t.TempDir(), "chainbroker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var logs testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, &logs) }()
	waitReady(t, "http://"+httpAddr+"/readyz", done)

	subject, err := sb.A.SubjectToken(ctx, sandbox.Alice, sandbox.AlicePassword, "")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"subject_token": subject, "target_domain": "domain-b"})
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/chain", bytes.NewReader(body))
	req.Header.Set("X-Api-Key", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || out.AccessToken == "" || !strings.Contains(out.Scope, "openid") {
		t.Fatalf("chain: status %d, %+v", resp.StatusCode, out)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after cancellation")
	}
	l := logs.String()
	if !strings.Contains(l, `"msg":"chain"`) || !strings.Contains(l, `"msg":"shutting down"`) {
		t.Errorf("expected JSON log lines for the chain and the shutdown, got:\n%s", l)
	}
	for _, secret := range []string{subject, out.AccessToken, sandbox.BrokerSecretA, sandbox.BrokerSecretB, apiKey} {
		if strings.Contains(l, secret) {
			t.Fatal("a token or secret was logged")
		}
	}
}

func waitReady(t *testing.T, url string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v", err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("broker not ready in time")
}

func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`
domains:
  - name: a
    issuer: http://a.example
    token_endpoint: ftp://a.example/token
    client: {auth_method: magic}
chains:
  - {source: a, target: nowhere}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	missingSecret := filepath.Join(dir, "secret.yaml")
	if err := os.WriteFile(missingSecret, []byte(`
callers: {api_keys: [{name: k, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]}
domains:
  - {name: a, issuer: https://a.example, token_endpoint: https://a.example/t, jwks_uri: https://a.example/k, client: {client_id: c, client_secret_env: CHAINBROKER_TEST_UNSET_VAR}}
  - {name: b, issuer: https://b.example, token_endpoint: https://b.example/t, client: {client_id: c, auth_method: none}}
chains: [{source: a, target: b}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"no command", nil, nil},
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{"serve without config", []string{"serve"}, []string{"--config is required"}},
		{"missing file", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, []string{"no such file"}},
		{"invalid config names every field", []string{"serve", "--config", bad}, []string{
			"domains[0].issuer: http:// is refused",
			"domains[0].token_endpoint",
			"domains[0].client.auth_method",
			"domains[0].client.client_id: required",
			`chains[0].target: unknown domain "nowhere"`,
		}},
		{"secret env unset", []string{"serve", "--config", missingSecret}, []string{"domains[0].client.client_secret_env: environment variable CHAINBROKER_TEST_UNSET_VAR is not set"}},
		{"bad flag override", []string{"serve", "--config", missingSecret, "--http-addr", "nonsense"}, []string{"listen.http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stderr)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
