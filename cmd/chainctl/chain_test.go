package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/sandbox"
)

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestChainSubjectTokenSources(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	dir := t.TempDir()

	cases := []struct {
		name string
		// args and stdin for a given subject token
		setup func(t *testing.T, tok string) (args []string, stdin string)
	}{
		{"flag", func(t *testing.T, tok string) ([]string, string) {
			return []string{"--subject-token", tok}, ""
		}},
		{"file", func(t *testing.T, tok string) ([]string, string) {
			p := filepath.Join(dir, "subject.jwt")
			if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--subject-token-file", p}, ""
		}},
		{"stdin", func(t *testing.T, tok string) ([]string, string) {
			return nil, tok + "\n"
		}},
		{"stdin via --subject-token -", func(t *testing.T, tok string) ([]string, string) {
			return []string{"--subject-token", "-"}, "  " + tok + "\r\n"
		}},
		{"stdin via --subject-token-file -", func(t *testing.T, tok string) ([]string, string) {
			return []string{"--subject-token-file", "-"}, tok
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject := b.SubjectToken(t, sandbox.Alice)
			args, stdin := tc.setup(t, subject)
			r := b.run(t, stdin, append([]string{"chain", "--target", sandbox.DomainBName}, args...)...)
			wantCode(t, r, exitOK)
			noLeak(t, r, subject)
			// The access token is alone on the last line.
			access := lastLine(r.stdout)
			if sub := b.CheckBToken(t, access).Subject; sub != sandbox.AliceSubB {
				t.Errorf("access token sub = %q, want alice in B %q", sub, sandbox.AliceSubB)
			}
			for _, want := range []string{"TOKEN TYPE", "Bearer", "EXPIRES IN", "300s", "SCOPE", "AUDIT ID",
				"HOP", "domain-a", "token-exchange", "domain-b", "jwt-bearer", "DURATION", "ACCESS TOKEN"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("table lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

func TestChainOutputs(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	t.Run("json", func(t *testing.T) {
		for _, args := range [][]string{
			{"chain", "--target", "domain-b", "-o", "json"},    // global flag after the command
			{"-o", "json", "chain", "--target", "domain-b"},    // and before it
			{"--output=json", "chain", "--target", "domain-b"}, // long form
		} {
			subject := b.SubjectToken(t, sandbox.Alice)
			r := b.run(t, subject, args...)
			wantCode(t, r, exitOK)
			noLeak(t, r, subject)
			var resp struct {
				AccessToken     string `json:"access_token"`
				IssuedTokenType string `json:"issued_token_type"`
				TokenType       string `json:"token_type"`
				ExpiresIn       int    `json:"expires_in"`
				AuditID         string `json:"audit_id"`
				Hops            []struct {
					Domain   string `json:"domain"`
					Duration string `json:"duration"`
				} `json:"hops"`
			}
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			if err := dec.Decode(&resp); err != nil {
				t.Fatalf("%v: stdout is not one ChainResponse document: %v\n%s", args, err, r.stdout)
			}
			if dec.More() {
				t.Errorf("%v: more than one JSON document", args)
			}
			if sub := b.CheckBToken(t, resp.AccessToken).Subject; sub != sandbox.AliceSubB {
				t.Errorf("sub = %q", sub)
			}
			if resp.ExpiresIn != 300 || resp.AuditID == "" || len(resp.Hops) != 2 || resp.Hops[1].Domain != "domain-b" ||
				resp.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" {
				t.Errorf("%v: response = %+v", args, resp)
			}
		}
	})

	t.Run("token-only", func(t *testing.T) {
		for _, extra := range [][]string{nil, {"-o", "json"}} {
			subject := b.SubjectToken(t, sandbox.Alice)
			r := b.run(t, subject, append([]string{"chain", "--target", "domain-b", "--token-only"}, extra...)...)
			wantCode(t, r, exitOK)
			noLeak(t, r, subject)
			if strings.Count(r.stdout, "\n") != 1 || !strings.HasSuffix(r.stdout, "\n") {
				t.Fatalf("--token-only %v: want one line, got %q", extra, r.stdout)
			}
			b.CheckBToken(t, strings.TrimSuffix(r.stdout, "\n"))
			if r.stderr != "" {
				t.Errorf("stderr = %q", r.stderr)
			}
		}
	})

	t.Run("scopes source audience", func(t *testing.T) {
		subject := b.SubjectToken(t, sandbox.Alice)
		r := b.run(t, subject, "chain", "--source", "domain-a", "--target", "domain-b",
			"--scope", "profile", "--scope", "email", "--audience", b.Sandbox.B.Issuer(), "-o", "json")
		wantCode(t, r, exitOK)
		var resp struct {
			Scope   string `json:"scope"`
			AuditID string `json:"audit_id"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
			t.Fatal(err)
		}
		// The audit event records the scopes asked for.
		ev := b.run(t, "", "audit", "get", resp.AuditID, "-o", "json")
		wantCode(t, ev, exitOK)
		var got struct {
			Event struct {
				Scopes []string `json:"scopes"`
			} `json:"event"`
		}
		if err := json.Unmarshal([]byte(ev.stdout), &got); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got.Event.Scopes, " ") != "profile email" {
			t.Errorf("audited scopes = %v, want [profile email]", got.Event.Scopes)
		}
	})
}

func TestDomains(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	r := b.run(t, "", "domains")
	wantCode(t, r, exitOK)
	for _, want := range []string{"DOMAINS", "CHAINS", "domain-a", "domain-b", b.Sandbox.A.Issuer(), b.Sandbox.B.TokenEndpoint(),
		sandbox.BrokerClientID, "client_secret_basic"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, secret := range []string{sandbox.BrokerSecretA, sandbox.BrokerSecretB} {
		if strings.Contains(r.stdout, secret) {
			t.Error("domains prints a client secret")
		}
	}

	r = b.run(t, "", "domains", "-o", "json")
	wantCode(t, r, exitOK)
	var resp struct {
		Domains []struct {
			Name, Issuer  string
			TokenEndpoint string `json:"token_endpoint"`
			JWKSURI       string `json:"jwks_uri"`
		} `json:"domains"`
		Chains []struct {
			Source string `json:"source_domain"`
			Target string `json:"target_domain"`
		} `json:"chains"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(resp.Domains) != 3 || resp.Domains[0].Name != "domain-a" || resp.Domains[1].JWKSURI != b.Sandbox.B.JWKSURI() ||
		len(resp.Chains) != 2 || resp.Chains[0].Source != "domain-a" || resp.Chains[0].Target != "domain-b" {
		t.Errorf("domains = %+v", resp)
	}
}
