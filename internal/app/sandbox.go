package app

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/keyset"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Environment variable names through which the sandbox's (public, demo-only)
// client secrets reach the configuration, like any real secret would.
const (
	SandboxSecretAEnv = "CHAINBROKER_SANDBOX_SECRET_A"
	SandboxSecretBEnv = "CHAINBROKER_SANDBOX_SECRET_B"
	SandboxSecretCEnv = "CHAINBROKER_SANDBOX_SECRET_C"
)

// SandboxDomain is where one of the sandbox's domains answers: what a
// configuration needs of it, also when the sandbox runs in another process.
type SandboxDomain struct {
	Name, Issuer, TokenEndpoint, JWKSURI string
}

// SandboxDomains are sb's domains A, B and C (the ID-JAG receiver).
func SandboxDomains(sb *sandbox.Sandbox) (a, b, c SandboxDomain) {
	return SandboxDomain{sb.A.Name(), sb.A.Issuer(), sb.A.TokenEndpoint(), sb.A.JWKSURI()},
		SandboxDomain{sb.B.Name(), sb.B.Issuer(), sb.B.TokenEndpoint(), sb.B.JWKSURI()},
		SandboxDomain{sb.C.Name(), sb.C.Issuer(), sb.C.TokenEndpoint(), sb.C.JWKSURI()}
}

// SandboxConfig returns the configuration of a broker wired to a running
// sandbox: domain A as source, domains B and C as targets with Keycloak's
// default assertion policy, the chains A -> B and A -> C (profile id_jag:
// alice's ID token for an ID-JAG, docs/id-jag.md), and the memory store (or
// Redis when redisURL is set). It is the same configuration a user would
// write for `serve` (examples/sandbox.yaml), so the demo exercises the
// production path.
func SandboxConfig(sb *sandbox.Sandbox, grpcAddr, httpAddr, redisURL string) *config.File {
	a, b, c := SandboxDomains(sb)
	f := SandboxFile(a, b, c, grpcAddr, httpAddr, redisURL)
	addSandboxClouds(f, sb) // the cloud targets, when the sandbox runs its imitations (sandbox_cloud.go)
	f.SetDefaults()
	return f
}

// SandboxFile is SandboxConfig for domains known by their URLs, before
// defaults: the file a harness running `chainbroker serve` in a process of
// its own writes (yaml.Marshal), as short as a hand-written one. A zero c
// leaves domain C and its chain out.
func SandboxFile(a, b, c SandboxDomain, grpcAddr, httpAddr, redisURL string) *config.File {
	domain := func(d SandboxDomain, secretEnv string) config.Domain {
		return config.Domain{
			Name:              d.Name,
			Issuer:            d.Issuer,
			TokenEndpoint:     d.TokenEndpoint,
			JWKSURI:           d.JWKSURI,
			AllowInsecureHTTP: true, // loopback only
			Client: config.Client{
				ClientID:   sandbox.BrokerClientID,
				AuthMethod: "client_secret_basic",
				SecretEnv:  secretEnv,
			},
		}
	}
	f := &config.File{
		Listen: config.Listen{GRPC: grpcAddr, HTTP: httpAddr},
		// The demo takes anonymous callers (loopback only, enforced by
		// Validate) and lets them use the chains and read the audit trail.
		Callers: config.Callers{AllowAnonymous: true},
		Policy: []config.PolicyEntry{{
			Caller: "anonymous",
			Roles:  []string{"audit"},
			Chains: []config.PolicyChain{{Source: a.Name, Target: b.Name, Scopes: []string{"*"}}},
		}},
		Domains: []config.Domain{domain(a, SandboxSecretAEnv), domain(b, SandboxSecretBEnv)},
		Chains:  []config.Chain{{Source: a.Name, Target: b.Name}},
	}
	if c.Name != "" {
		f.Policy[0].Chains = append(f.Policy[0].Chains, config.PolicyChain{Source: a.Name, Target: c.Name, Scopes: []string{"*"}})
		f.Domains = append(f.Domains, domain(c, SandboxSecretCEnv))
		f.Chains = append(f.Chains, config.Chain{Source: a.Name, Target: c.Name, Profile: broker.ProfileIDJAG})
	}
	// Domain A issues JWT access tokens: check them before hop 1.
	f.Domains[0].VerifySubjectToken = true
	if redisURL != "" {
		f.Store = config.Store{Backend: "redis", Redis: config.Redis{URL: redisURL}}
	}
	return f
}

// SandboxEnv resolves the sandbox's secrets (and nothing else).
func SandboxEnv(name string) (string, bool) {
	switch name {
	case SandboxSecretAEnv:
		return sandbox.BrokerSecretA, true
	case SandboxSecretBEnv:
		return sandbox.BrokerSecretB, true
	case SandboxSecretCEnv:
		return sandbox.BrokerSecretC, true
	}
	return "", false
}

// SandboxIssuer makes the sandbox's broker an issuer (docs/id-jag.md):
// issuer.url is http://<REST address> (cfg.Listen.HTTP, a fixed port), with
// a fresh ES256 key written to dir (mode 0600; the caller removes dir), and
// domain C trusts that issuer (its keys at <issuer.url>/.well-known/jwks.json)
// for A's alice and bob, so that issue-mode ID-JAG chains to domain C work.
func SandboxIssuer(sb *sandbox.Sandbox, cfg *config.File, dir string) error {
	host, port, err := net.SplitHostPort(cfg.Listen.HTTP)
	if err != nil || port == "0" {
		return fmt.Errorf("sandbox issuer: the REST address %q needs a fixed port", cfg.Listen.HTTP)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	pemKey, _, err := keyset.Generate("ES256")
	if err != nil {
		return fmt.Errorf("sandbox issuer: %w", err)
	}
	file := filepath.Join(dir, "sandbox-issuer-key.pem")
	if err := os.WriteFile(file, pemKey, 0o600); err != nil {
		return fmt.Errorf("sandbox issuer: %w", err)
	}
	cfg.Issuer = config.Issuer{URL: "http://" + net.JoinHostPort(host, port),
		Keys: []config.IssuerKey{{File: file, State: "active"}}}
	return sb.C.TrustBroker(cfg.Issuer.URL)
}
