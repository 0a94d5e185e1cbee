package app

import (
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Environment variable names through which the sandbox's (public, demo-only)
// client secrets reach the configuration, like any real secret would.
const (
	SandboxSecretAEnv = "CHAINBROKER_SANDBOX_SECRET_A"
	SandboxSecretBEnv = "CHAINBROKER_SANDBOX_SECRET_B"
)

// SandboxDomain is where one of the sandbox's domains answers: what a
// configuration needs of it, also when the sandbox runs in another process.
type SandboxDomain struct {
	Name, Issuer, TokenEndpoint, JWKSURI string
}

// SandboxDomains are sb's domains A and B.
func SandboxDomains(sb *sandbox.Sandbox) (a, b SandboxDomain) {
	return SandboxDomain{sb.A.Name(), sb.A.Issuer(), sb.A.TokenEndpoint(), sb.A.JWKSURI()},
		SandboxDomain{sb.B.Name(), sb.B.Issuer(), sb.B.TokenEndpoint(), sb.B.JWKSURI()}
}

// SandboxConfig returns the configuration of a broker wired to a running
// sandbox: domain A as source, domain B as target with Keycloak's default
// assertion policy, one chain A -> B, and the memory store (or Redis when
// redisURL is set). It is the same configuration a user would write for
// `serve` (examples/sandbox.yaml), so the demo exercises the production path.
func SandboxConfig(sb *sandbox.Sandbox, grpcAddr, httpAddr, redisURL string) *config.File {
	a, b := SandboxDomains(sb)
	f := SandboxFile(a, b, grpcAddr, httpAddr, redisURL)
	f.SetDefaults()
	return f
}

// SandboxFile is SandboxConfig for domains known by their URLs, before
// defaults: the file a harness running `chainbroker serve` in a process of
// its own writes (yaml.Marshal), as short as a hand-written one.
func SandboxFile(a, b SandboxDomain, grpcAddr, httpAddr, redisURL string) *config.File {
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
		// Validate) and lets them use the one chain and read the audit trail.
		Callers: config.Callers{AllowAnonymous: true},
		Policy: []config.PolicyEntry{{
			Caller: "anonymous",
			Roles:  []string{"audit"},
			Chains: []config.PolicyChain{{Source: a.Name, Target: b.Name, Scopes: []string{"*"}}},
		}},
		Domains: []config.Domain{domain(a, SandboxSecretAEnv), domain(b, SandboxSecretBEnv)},
		Chains:  []config.Chain{{Source: a.Name, Target: b.Name}},
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
	}
	return "", false
}
