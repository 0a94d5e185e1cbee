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

// SandboxConfig returns the configuration of a broker wired to a running
// sandbox: domain A as source, domain B as target with Keycloak's default
// assertion policy, one chain A -> B, and the memory store (or Redis when
// redisURL is set). It is the same configuration a user would write for
// `serve` (examples/sandbox.yaml), so the demo exercises the production path.
func SandboxConfig(sb *sandbox.Sandbox, grpcAddr, httpAddr, redisURL string) *config.File {
	domain := func(name, issuer, tokenEndpoint, jwksURI, secretEnv string) config.Domain {
		return config.Domain{
			Name:              name,
			Issuer:            issuer,
			TokenEndpoint:     tokenEndpoint,
			JWKSURI:           jwksURI,
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
			Chains: []config.PolicyChain{{Source: sb.A.Name(), Target: sb.B.Name(), Scopes: []string{"*"}}},
		}},
		Domains: []config.Domain{
			domain(sb.A.Name(), sb.A.Issuer(), sb.A.TokenEndpoint(), sb.A.JWKSURI(), SandboxSecretAEnv),
			domain(sb.B.Name(), sb.B.Issuer(), sb.B.TokenEndpoint(), sb.B.JWKSURI(), SandboxSecretBEnv),
		},
		Chains: []config.Chain{{Source: sb.A.Name(), Target: sb.B.Name()}},
	}
	// Domain A issues JWT access tokens: check them before hop 1.
	f.Domains[0].VerifySubjectToken = true
	addSandboxClouds(f, sb) // sandbox_cloud.go
	if redisURL != "" {
		f.Store = config.Store{Backend: "redis", Redis: config.Redis{URL: redisURL}}
	}
	f.SetDefaults()
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
