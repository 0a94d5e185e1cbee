package app

import (
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Names of the sandbox's cloud targets: one per cloud, each with a chain
// from domain-a.
const (
	SandboxAWSTarget   = "aws"
	SandboxAzureTarget = "azure"
	SandboxGCPTarget   = "gcp"
)

// addSandboxClouds adds the sandbox's cloud targets to f when the sandbox
// runs the cloud imitations: aws (STS at the imitation, the role
// sandbox.AWSRoleARN) and azure (the Entra imitation, the application
// sandbox.AzureClientID with a federated credential per demo user) and gcp
// (Google STS, then the service account sandbox.GCPServiceAccount), each
// with a chain from domain A whose token exchange asks for the cloud's
// audience, allowed to every caller of the demo.
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
	f.Domains = append(f.Domains, config.Domain{
		Name:              SandboxAzureTarget,
		Kind:              string(broker.KindAzure),
		TokenEndpoint:     sb.Cloud.Azure.TokenEndpoint(sandbox.AzureTenantID),
		AllowInsecureHTTP: true, // loopback only
		Azure: config.AzureTarget{
			Tenant:   sandbox.AzureTenantID,
			ClientID: sandbox.AzureClientID,
			Scope:    sandbox.AzureResource + "/.default",
			FederatedCredentials: []config.AzureFederatedCredential{
				{Issuer: sb.A.Issuer(), Subject: sandbox.AliceSubA}, {Issuer: sb.A.Issuer(), Subject: sandbox.BobSubA},
			},
		},
	})
	gcpAudience := sandbox.GCPAudience(sandbox.GCPProjectNumber, sandbox.GCPPool, sandbox.GCPProviderID)
	f.Domains = append(f.Domains, config.Domain{
		Name:              SandboxGCPTarget,
		Kind:              string(broker.KindGCP),
		TokenEndpoint:     sb.Cloud.GCP.STSEndpoint(),
		AllowInsecureHTTP: true, // loopback only
		GCP: config.GCPTarget{
			Audience:               gcpAudience,
			ServiceAccount:         sandbox.GCPServiceAccount,
			IAMCredentialsEndpoint: sb.Cloud.GCP.IAMCredentialsEndpoint(),
		},
	})
	for _, c := range [][2]string{{SandboxAWSTarget, sandbox.AWSAudience}, {SandboxAzureTarget, sandbox.AzureAudience}, {SandboxGCPTarget, gcpAudience}} {
		target, aud := c[0], c[1]
		f.Chains = append(f.Chains, config.Chain{Source: sb.A.Name(), Target: target, Audience: aud})
		for i := range f.Policy {
			f.Policy[i].Chains = append(f.Policy[i].Chains, config.PolicyChain{Source: sb.A.Name(), Target: target, Scopes: []string{"*"}})
		}
	}
}
