package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

func TestExitCodes(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "subject.jwt")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		stdin bool // the subject token on stdin
		args  []string
		code  int
		// fragments expected on stderr
		stderr []string
	}{
		{"missing --target", true, []string{"chain"}, exitUsage, []string{"--target is required", "chainctl chain -h"}},
		{"unknown target domain", true, []string{"chain", "--target", "nowhere"}, exitInvalid,
			[]string{"chainctl: DOMAIN_UNKNOWN: ", `"nowhere"`, "field: target_domain"}},
		{"unknown source domain", true, []string{"chain", "--source", "elsewhere", "--target", "domain-b"}, exitInvalid,
			[]string{"DOMAIN_UNKNOWN", "field: source_domain"}},
		{"malformed scope", true, []string{"chain", "--target", "domain-b", "--scope", `bad"scope`}, exitInvalid,
			[]string{"REQUEST_INVALID", "field: scope"}},
		{"source undetermined", false, []string{"chain", "--target", "domain-b", "--subject-token", "not-a-jwt"}, exitInvalid,
			[]string{"SOURCE_UNDETERMINED"}},
		{"no chain from B to B", true, []string{"chain", "--source", "domain-b", "--target", "domain-b"}, exitDenied,
			[]string{"CHAIN_NOT_ALLOWED"}},
		{"empty stdin", false, []string{"chain", "--target", "domain-b"}, exitUsage, []string{"no subject token on stdin"}},
		{"empty token file", false, []string{"chain", "--target", "domain-b", "--subject-token-file", empty}, exitUsage,
			[]string{"no subject token on " + empty}},
		{"missing token file", false, []string{"chain", "--target", "domain-b", "--subject-token-file", filepath.Join(dir, "nope")},
			exitUsage, []string{"no such file"}},
		{"both token flags", false, []string{"chain", "--target", "domain-b", "--subject-token", "x", "--subject-token-file", tokenFile},
			exitUsage, []string{"not both"}},
		{"positional argument", true, []string{"chain", "--target", "domain-b", "extra"}, exitUsage, []string{"no positional arguments"}},
		{"actor token type alone", true, []string{"chain", "--target", "domain-b", "--actor-token-type", "urn:x"}, exitUsage,
			[]string{"--actor-token-file"}},
		{"bad output format", true, []string{"-o", "yaml", "chain", "--target", "domain-b"}, exitUsage, []string{"unknown output format"}},
		{"bad timeout", false, []string{"domains", "--timeout", "-1s"}, exitUsage, []string{"--timeout"}},
		{"cert without key", false, []string{"domains", "--cert", "c.pem"}, exitUsage, []string{"--cert and --key"}},
		{"unreadable cacert", false, []string{"domains", "--cacert", filepath.Join(dir, "nope.pem")}, exitUsage, []string{"--cacert"}},
		{"unknown flag", false, []string{"domains", "--bogus"}, exitUsage, []string{"bogus"}},
		{"unknown command", false, []string{"frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`}},
		{"no command", false, nil, exitUsage, []string{"no command given", "Exit codes"}},
		{"audit without subcommand", false, []string{"audit"}, exitUsage, []string{"list or get"}},
		{"audit get without id", false, []string{"audit", "get"}, exitUsage, []string{"want an event id"}},
		{"audit get unknown id", false, []string{"audit", "get", "1-0"}, exitInvalid, []string{"NOT_FOUND"}},
		{"audit get malformed id", false, []string{"audit", "get", "not-an-id"}, exitInvalid, []string{"REQUEST_INVALID"}},
		{"audit list bad outcome", false, []string{"audit", "list", "--outcome", "meh"}, exitUsage, []string{"unknown outcome"}},
		{"audit list bad since", false, []string{"audit", "list", "--since", "yesterday"}, exitUsage, []string{"--since"}},
		{"audit list bad page token", false, []string{"audit", "list", "--page-token", "garbage"}, exitInvalid, []string{"REQUEST_INVALID"}},
		{"audit list bad page size", false, []string{"audit", "list", "--page-size", "5000"}, exitUsage, []string{"--page-size"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject := b.SubjectToken(t, sandbox.Alice)
			if err := os.WriteFile(tokenFile, []byte(subject), 0o600); err != nil {
				t.Fatal(err)
			}
			stdin := ""
			if tc.stdin {
				stdin = subject
			}
			r := b.run(t, stdin, tc.args...)
			wantCode(t, r, tc.code)
			wantStderr(t, r, tc.stderr...)
			noLeak(t, r, subject)
			if r.code != exitOK && r.stdout != "" {
				t.Errorf("stdout on failure: %q", r.stdout)
			}
		})
	}
}

func TestRefusedChain(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	b.Sandbox.B.Unlink(sandbox.AliceSubA)
	subject := b.SubjectToken(t, sandbox.Alice)

	for _, output := range []string{"table", "json"} {
		t.Run(output, func(t *testing.T) {
			r := b.run(t, subject, "chain", "--target", "domain-b", "-o", output)
			wantCode(t, r, exitRefused)
			wantStderr(t, r, "chainctl: JWT_BEARER_REJECTED: ", "  hop: jwt_bearer\n", "  error: invalid_grant\n",
				"  error_description: User not found\n")
			noLeak(t, r, subject)
			if r.stdout != "" {
				t.Errorf("stdout = %q", r.stdout)
			}
		})
	}
	// bob is still linked: his chain goes through.
	wantCode(t, b.run(t, b.SubjectToken(t, sandbox.Bob), "chain", "--target", "domain-b"), exitOK)
}

func TestBrokerNotListening(t *testing.T) {
	t.Parallel()
	addr := testutil.FreeAddr(t) // nothing listens there
	for _, args := range [][]string{
		{"chain", "--target", "domain-b", "--subject-token", "header.payload.signature"},
		{"domains"},
		{"audit", "list"},
		{"audit", "get", "1-0"},
	} {
		r := chainctl(t, nil, "", append([]string{"--addr", addr}, args...)...)
		wantCode(t, r, exitUnavailable)
		wantStderr(t, r, "chainctl: UNAVAILABLE: ", "addr: "+addr)
		noLeak(t, r, "header.payload.signature")
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"help"}, {"help", "chain"}, {"help", "audit", "list"}, {"chain", "-h"},
		{"domains", "--help"}, {"audit", "list", "-h"}, {"audit", "get", "-h"}, {"audit", "--help"},
	} {
		r := chainctl(t, nil, "", args...)
		wantCode(t, r, exitOK)
		if !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("%v: stdout %q stderr %q", args, r.stdout, r.stderr)
		}
	}
	r := chainctl(t, nil, "", "help", "nonsense")
	wantCode(t, r, exitUsage)
}

// TestExitCodesDocumented keeps `chainctl -h` and docs/chainctl.md in step
// with the exit code constants.
func TestExitCodesDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "chainctl.md"))
	if err != nil {
		t.Fatal(err)
	}
	codes := []int{exitOK, exitError, exitUsage, exitDenied, exitInvalid, exitRefused, exitUnavailable}
	for _, code := range codes {
		n := strconv.Itoa(code)
		if !regexp.MustCompile(`(?m)^  ` + n + `  \S`).MatchString(usage) {
			t.Errorf("chainctl -h does not document exit code %d", code)
		}
		if !regexp.MustCompile(`(?m)^\| ` + n + ` \|`).Match(doc) {
			t.Errorf("docs/chainctl.md has no table row for exit code %d", code)
		}
	}
}
