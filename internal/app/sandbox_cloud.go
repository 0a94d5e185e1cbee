package app

import (
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Names of the sandbox's cloud targets (docs/design.md §8 of the contract:
// one per cloud, each with a chain from domain-a).
const SandboxAWSTarget = "aws"

// addSandboxClouds adds the sandbox's cloud targets to f when the sandbox
// runs the cloud imitations: aws (STS at the imitation, the role
// sandbox.AWSRoleARN), with a chain from domain A whose token exchange asks
// for AWS's audience, allowed to every caller of the demo.
func addSandboxClouds(f *config.File, sb *sandbox.Sandbox) {
	if sb.Cloud == nil {
		return
	}
	f.Domains = append(f.Domains, config.Domain{
		Name:              SandboxAWSTarget,
		Kind:              string(broker.KindAWS),
		TokenEndpoint:     sb.Cloud.AWS.Endpoint(),
		AllowInsecureHTTP: true, // loopback only
		AWS: config.AWSTarget{
			RoleARN:     sandbox.AWSRoleARN,
			ProviderURL: sb.A.Issuer(),
			ClientIDs:   []string{sandbox.AWSAudience},
		},
	})
	f.Chains = append(f.Chains, config.Chain{Source: sb.A.Name(), Target: SandboxAWSTarget, Audience: sandbox.AWSAudience})
	for i := range f.Policy {
		f.Policy[i].Chains = append(f.Policy[i].Chains, config.PolicyChain{Source: sb.A.Name(), Target: SandboxAWSTarget, Scopes: []string{"*"}})
	}
}
