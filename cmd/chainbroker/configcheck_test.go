package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// "chainbroker config check FILE": exit 0 and "ok" for a valid file; exit 1
// with every problem, by YAML path, one per line, for an invalid one; exit 2
// for a usage mistake. Nothing is fetched (the domains' URLs are not
// resolvable).
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := `
callers:
  api_keys: [{name: agent, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]
policy:
  - {caller: agent, chains: [{source: a, target: b}]}
domains:
  - {name: a, issuer: https://a.invalid/realms/a, discovery: true, client: {client_id: c, client_secret_file: ` + secret + `}}
  - {name: b, issuer: https://b.invalid/realms/b, token_endpoint: https://b.invalid/t, client: {client_id: c, client_secret_file: ` + secret + `}}
chains: [{source: a, target: b}]
`
	invalid := strings.Replace(valid, "callers:", "listen: {grcp: 127.0.0.1:9090}\ncallers:", 1)
	invalid = strings.Replace(invalid, "client_secret_file: "+secret+"}}\n  - {name: b", "client_secret_file: "+filepath.Join(dir, "missing")+"}}\n  - {name: b", 1)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, bad := write("good.yaml", valid), write("bad.yaml", invalid)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"valid", []string{"config", "check", good}, 0, []string{good + ": ok"}, nil},
		{"invalid: every problem by path", []string{"config", "check", bad}, 1, nil,
			[]string{"listen.grcp: unknown key (did you mean grpc?)", "domains[0].client.client_secret_file", "configuration invalid"}},
		{"no file", []string{"config", "check"}, 2, nil, []string{"one FILE is required"}},
		{"missing file", []string{"config", "check", filepath.Join(dir, "nope.yaml")}, 1, nil, []string{"no such file"}},
		{"no subcommand", []string{"config"}, 2, nil, []string{"Usage: chainbroker config check FILE"}},
		{"help", []string{"help", "config"}, 0, []string{"Usage: chainbroker config check FILE", "Examples:"}, nil},
		{"-h", []string{"config", "-h"}, 0, []string{"Usage: chainbroker config check FILE"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
