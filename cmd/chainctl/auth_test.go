package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/sandbox"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestCallerAuthentication runs chainctl against a broker that authenticates
// callers by API key, with a deny-by-default policy: an agent may chain, an
// auditor may read the audit trail, nobody else may do anything.
func TestCallerAuthentication(t *testing.T) {
	t.Parallel()
	const agentKey, auditorKey = "agent-key-0123456789", "auditor-key-0123456789"
	b := startBrokerWith(t, func(cfg *config.File) {
		cfg.Callers = config.Callers{APIKeys: []config.APIKey{
			{Name: "agent", SHA256: sha256Hex(agentKey)},
			{Name: "auditor", SHA256: sha256Hex(auditorKey)},
		}}
		cfg.Policy = []config.PolicyEntry{
			{Caller: "agent", Chains: []config.PolicyChain{{Source: sandbox.DomainAName, Target: sandbox.DomainBName, Scopes: []string{"*"}}}},
			{Caller: "auditor", Roles: []string{"audit"}},
		}
	})

	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		reason string
	}{
		{"chain without credentials", nil, []string{"chain", "--target", "domain-b"}, exitDenied, "UNAUTHENTICATED"},
		{"chain with a wrong key", nil, []string{"--api-key", "wrong", "chain", "--target", "domain-b"}, exitDenied, "UNAUTHENTICATED"},
		{"chain as agent", nil, []string{"--api-key", agentKey, "chain", "--target", "domain-b"}, exitOK, ""},
		{"chain as agent from the environment", map[string]string{envAPIKey: agentKey}, []string{"chain", "--target", "domain-b"}, exitOK, ""},
		{"chain as auditor", nil, []string{"chain", "--target", "domain-b", "--api-key", auditorKey}, exitDenied, "CHAIN_NOT_ALLOWED"},
		{"audit list as agent", nil, []string{"audit", "list", "--api-key", agentKey}, exitDenied, "AUDIT_NOT_ALLOWED"},
		{"audit list as auditor", nil, []string{"audit", "list", "--api-key", auditorKey}, exitOK, ""},
		{"domains without credentials", nil, []string{"domains"}, exitDenied, "UNAUTHENTICATED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subject := b.SubjectToken(t, sandbox.Alice)
			r := chainctl(t, tc.env, subject, append([]string{"--addr", b.GRPCAddr}, tc.args...)...)
			wantCode(t, r, tc.code)
			if tc.reason != "" {
				wantStderr(t, r, "chainctl: "+tc.reason+": ")
			}
			noLeak(t, r, subject, agentKey, auditorKey)
		})
	}

	// The audit trail names the authenticated caller.
	r := b.run(t, "", "audit", "list", "--api-key", auditorKey, "--caller", "agent", "--outcome", "success", "-o", "json")
	wantCode(t, r, exitOK)
	var l auditList
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Events) != 2 {
		t.Errorf("want agent's 2 successful chains, got %d events", len(l.Events))
	}
	if strings.Contains(r.stdout, agentKey) {
		t.Error("the audit trail contains an API key")
	}
}

// TestRateLimit: over the caller's rate limit, chainctl exits 6 (retry later)
// and says when.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	b := startBrokerWith(t, func(cfg *config.File) {
		// One call, then one more token per 1000 s: the second call is limited.
		cfg.RateLimit = config.RateLimit{RequestsPerSecond: 0.001, Burst: 1}
	})
	wantCode(t, b.run(t, "", "domains"), exitOK)
	r := b.run(t, "", "domains")
	wantCode(t, r, exitUnavailable)
	wantStderr(t, r, "chainctl: RATE_LIMITED: ", "  retry_after: ")
}
