package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/sandbox"
)

// TestCredentialFiles (#14.13): the caller API key and bearer token can come
// from a file (--api-key-file, --token-file) or the environment
// (CHAINCTL_API_KEY[_FILE], CHAINCTL_TOKEN[_FILE]), so that they need not
// appear in the process list; the flag forms stay for tests.
func TestCredentialFiles(t *testing.T) {
	t.Parallel()
	const agentKey = "agent-key-file-0123456789"
	b := startBrokerWith(t, func(cfg *config.File) {
		cfg.Callers = config.Callers{APIKeys: []config.APIKey{{Name: "agent", SHA256: sha256Hex(agentKey)}}}
		cfg.Policy = []config.PolicyEntry{
			{Caller: "agent", Chains: []config.PolicyChain{{Source: sandbox.DomainAName, Target: sandbox.DomainBName, Scopes: []string{"*"}}}},
		}
	})
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("key", agentKey+"\n")
	wrongKeyFile := write("wrong", "wrong-key\n")
	emptyFile := write("empty", "\n")
	const bearer = "not.a-configured.bearer-token"
	tokenFile := write("token", bearer+"\n")
	missing := filepath.Join(dir, "missing")

	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"--api-key-file", nil, []string{"--api-key-file", keyFile}, exitOK, ""},
		{"--api-key-file after the command", nil, []string{"--api-key-file", keyFile}, exitOK, ""},
		{"CHAINCTL_API_KEY_FILE", map[string]string{envAPIKeyFile: keyFile}, nil, exitOK, ""},
		{"CHAINCTL_API_KEY", map[string]string{envAPIKey: agentKey}, nil, exitOK, ""},
		{"the flag wins over the environment", map[string]string{envAPIKey: "wrong"}, []string{"--api-key-file", keyFile}, exitOK, ""},
		{"a wrong key from a file", nil, []string{"--api-key-file", wrongKeyFile}, exitDenied, "invalid API key"},
		{"both --api-key and --api-key-file", nil, []string{"--api-key", agentKey, "--api-key-file", keyFile}, exitUsage, "give one"},
		{"missing file", nil, []string{"--api-key-file", missing}, exitUsage, "--api-key-file: open " + missing},
		{"missing file from the environment", map[string]string{envAPIKeyFile: missing}, nil, exitUsage, envAPIKeyFile + ": open"},
		{"empty file", nil, []string{"--api-key-file", emptyFile}, exitUsage, "no API key in"},
		// The broker accepts no bearer tokens here: "not accepted" shows
		// the token was read from the file and sent.
		{"--token-file", nil, []string{"--token-file", tokenFile}, exitDenied, "bearer tokens are not accepted"},
		{"CHAINCTL_TOKEN_FILE", map[string]string{envTokenFile: tokenFile}, nil, exitDenied, "bearer tokens are not accepted"},
		{"both --token and --token-file", nil, []string{"--token", bearer, "--token-file", tokenFile}, exitUsage, "give one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject := b.SubjectToken(t, sandbox.Alice)
			args := []string{"--addr", b.GRPCAddr}
			if strings.Contains(tc.name, "after the command") {
				args = append(append(args, "chain", "--target", "domain-b"), tc.args...)
			} else {
				args = append(append(args, tc.args...), "chain", "--target", "domain-b")
			}
			r := chainctl(t, tc.env, subject, args...)
			wantCode(t, r, tc.code)
			if tc.stderr != "" {
				wantStderr(t, r, tc.stderr)
			}
			noLeak(t, r, subject, agentKey, bearer)
		})
	}
}

// TestHelpSaysFlagSecretsAreForTests: the usage points at the file and
// environment forms and says the flag forms are for tests.
func TestHelpSaysFlagSecretsAreForTests(t *testing.T) {
	r := chainctl(t, nil, "", "help")
	wantCode(t, r, exitOK)
	for _, want := range []string{"--api-key-file FILE", "--token-file FILE", envAPIKeyFile, envTokenFile, "for tests only"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}
