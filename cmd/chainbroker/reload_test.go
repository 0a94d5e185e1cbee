package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

// `chainbroker serve` reloads its configuration on SIGHUP (a real signal
// to this process) and when the file changes, with no restart.
func TestServeReloadsOnSIGHUPAndFileChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := sandbox.Start(ctx, sandbox.Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	t.Setenv("TEST_SECRET_A", sandbox.BrokerSecretA)
	t.Setenv("TEST_SECRET_B", sandbox.BrokerSecretB)
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	file := func(granted string) string {
		return fmt.Sprintf(`
listen: {http: %q, grpc: %q, shutdown_timeout: 5s}
log: {level: info, format: json}
callers:
  api_keys: [{name: one, sha256: %s}, {name: two, sha256: %s}]
policy:
  - {caller: %s, chains: [{source: domain-a, target: domain-b}]}
domains:
  - {name: domain-a, issuer: %q, token_endpoint: %q, jwks_uri: %q, allow_insecure_http: true, client: {client_id: chainbroker, client_secret_env: TEST_SECRET_A}}
  - {name: domain-b, issuer: %q, token_endpoint: %q, allow_insecure_http: true, client: {client_id: chainbroker, client_secret_env: TEST_SECRET_B}}
chains:
  - {source: domain-a, target: domain-b}
`, httpAddr, grpcAddr, auth.HashAPIKey("one-key"), auth.HashAPIKey("two-key"), granted,
			sb.A.Issuer(), sb.A.TokenEndpoint(), sb.A.JWKSURI(), sb.B.Issuer(), sb.B.TokenEndpoint())
	}
	path := filepath.Join(t.TempDir(), "chainbroker.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(file("one"))
	var logs testutil.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, &logs) }()
	waitReady(t, "http://"+httpAddr+"/readyz", done)

	subject, err := sb.A.SubjectToken(ctx, sandbox.Alice, sandbox.AlicePassword, "")
	if err != nil {
		t.Fatal(err)
	}
	chainAs := func(caller string) int {
		body, _ := json.Marshal(map[string]string{"subject_token": subject, "target_domain": "domain-b"})
		req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/v1/chain", bytes.NewReader(body))
		req.Header.Set("X-Api-Key", caller+"-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if chainAs("one") != 200 || chainAs("two") != 403 {
		t.Fatal("at start-up: want one allowed, two refused")
	}

	write(file("two"))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the reload on SIGHUP", func() bool { return chainAs("two") == 200 })
	if chainAs("one") != 403 {
		t.Error("after SIGHUP: one still allowed")
	}
	if !strings.Contains(logs.String(), `"msg":"configuration reloaded","trigger":"SIGHUP"`) {
		t.Errorf("no reload by SIGHUP in the log:\n%s", logs.String())
	}

	write(file("one")) // no signal: the file watch
	testutil.WaitFor(t, 20*time.Second, "the reload on the file change", func() bool { return chainAs("one") == 200 })
	if !strings.Contains(logs.String(), `"msg":"configuration reloaded","trigger":"file change"`) {
		t.Errorf("no reload by the file watch in the log:\n%s", logs.String())
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
}
