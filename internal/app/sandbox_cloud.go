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

// SandboxCloud is where the sandbox's cloud imitations answer
// (sandbox.Cloud): what the configuration of the cloud targets needs, also
// from another process (chainbench runs the sandbox in a child).
type SandboxCloud struct {
	URL                       string // the listener, for the log
	AWSEndpoint               string // AWS STS
	AzureTokenEndpoint        string // Entra, tenant sandbox.AzureTenantID
	GCPSTSEndpoint            string // Google STS
	GCPIAMCredentialsEndpoint string // IAM Credentials
}

// SandboxCloudOf is where sb's cloud imitations answer; nil when it runs
// none.
func SandboxCloudOf(sb *sandbox.Sandbox) *SandboxCloud {
	if sb.Cloud == nil {
		return nil
	}
	return &SandboxCloud{
		URL:                       sb.Cloud.URL(),
		AWSEndpoint:               sb.Cloud.AWS.Endpoint(),
		AzureTokenEndpoint:        sb.Cloud.Azure.TokenEndpoint(sandbox.AzureTenantID),
		GCPSTSEndpoint:            sb.Cloud.GCP.STSEndpoint(),
		GCPIAMCredentialsEndpoint: sb.Cloud.GCP.IAMCredentialsEndpoint(),
	}
}

func addSandboxClouds(f *config.File, sb *sandbox.Sandbox) {
	a, _, _ := SandboxDomains(sb)
	AddSandboxClouds(f, a, SandboxCloudOf(sb))
}

// AddSandboxClouds adds the sandbox's cloud targets to f when the sandbox
// runs the cloud imitations (c not nil): aws (STS at the imitation, the
// role sandbox.AWSRoleARN) and azure (the Entra imitation, the application
// sandbox.AzureClientID with a federated credential per demo user) and gcp
// (Google STS, then the service account sandbox.GCPServiceAccount), each
// with a chain from domain A (a) whose token exchange asks for the cloud's
// audience, allowed to every caller of the demo.
func AddSandboxClouds(f *config.File, a SandboxDomain, c *SandboxCloud) {
	if c == nil {
		return
	}
	gcpAudience := sandbox.GCPAudience(sandbox.GCPProjectNumber, sandbox.GCPPool, sandbox.GCPProviderID)
	f.Domains = append(f.Domains,
		config.Domain{
			Name:              SandboxAWSTarget,
			Kind:              string(broker.KindAWS),
			TokenEndpoint:     c.AWSEndpoint,
			AllowInsecureHTTP: true, // loopback only
			AWS: config.AWSTarget{
				RoleARN:     sandbox.AWSRoleARN,
				ProviderURL: a.Issuer,
				ClientIDs:   []string{sandbox.AWSAudience},
			},
		},
		config.Domain{
			Name:              SandboxAzureTarget,
			Kind:              string(broker.KindAzure),
			TokenEndpoint:     c.AzureTokenEndpoint,
			AllowInsecureHTTP: true, // loopback only
			Azure: config.AzureTarget{
				Tenant:   sandbox.AzureTenantID,
				ClientID: sandbox.AzureClientID,
				Scope:    sandbox.AzureResource + "/.default",
				FederatedCredentials: []config.AzureFederatedCredential{
					{Issuer: a.Issuer, Subject: sandbox.AliceSubA}, {Issuer: a.Issuer, Subject: sandbox.BobSubA},
				},
			},
		},
		config.Domain{
			Name:              SandboxGCPTarget,
			Kind:              string(broker.KindGCP),
			TokenEndpoint:     c.GCPSTSEndpoint,
			AllowInsecureHTTP: true, // loopback only
			GCP: config.GCPTarget{
				Audience:               gcpAudience,
				ServiceAccount:         sandbox.GCPServiceAccount,
				IAMCredentialsEndpoint: c.GCPIAMCredentialsEndpoint,
			},
		})
	for _, t := range [][2]string{{SandboxAWSTarget, sandbox.AWSAudience}, {SandboxAzureTarget, sandbox.AzureAudience}, {SandboxGCPTarget, gcpAudience}} {
		target, aud := t[0], t[1]
		f.Chains = append(f.Chains, config.Chain{Source: a.Name, Target: target, Audience: aud})
		for i := range f.Policy {
			f.Policy[i].Chains = append(f.Policy[i].Chains, config.PolicyChain{Source: a.Name, Target: target, Scopes: []string{"*"}})
		}
	}
}
