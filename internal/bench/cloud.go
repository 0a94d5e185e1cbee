package bench

import (
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/sandbox"
)

// cloudInfo is where the sandbox's cloud imitations answer (sandbox.Cloud),
// when the domains child runs them: what the broker's configuration of the
// cloud targets needs, from another process.
type cloudInfo struct {
	URL                       string // the listener, for the log
	AWSEndpoint               string // AWS STS
	AzureTokenEndpoint        string // Entra, tenant sandbox.AzureTenantID
	GCPSTSEndpoint            string // Google STS
	GCPIAMCredentialsEndpoint string // IAM Credentials
}

// cloudInfoOf is where sb's cloud imitations answer; nil when it runs none.
func cloudInfoOf(sb *sandbox.Sandbox) *cloudInfo {
	if sb.Cloud == nil {
		return nil
	}
	return &cloudInfo{
		URL:                       sb.Cloud.URL(),
		AWSEndpoint:               sb.Cloud.AWS.Endpoint(),
		AzureTokenEndpoint:        sb.Cloud.Azure.TokenEndpoint(sandbox.AzureTenantID),
		GCPSTSEndpoint:            sb.Cloud.GCP.STSEndpoint(),
		GCPIAMCredentialsEndpoint: sb.Cloud.GCP.IAMCredentialsEndpoint(),
	}
}

// addClouds adds the sandbox's cloud targets to f, as app.SandboxConfig
// does for a sandbox in the same process (internal/app's addSandboxClouds;
// TestCloudConfigMatchesSandbox holds them equal): the domains aws, azure
// and gcp, each with a chain from domain a whose token exchange asks for
// the cloud's audience, allowed to every policy entry. Nothing without
// cloud imitations (c nil).
func addClouds(f *config.File, a app.SandboxDomain, c *cloudInfo) {
	if c == nil {
		return
	}
	gcpAudience := sandbox.GCPAudience(sandbox.GCPProjectNumber, sandbox.GCPPool, sandbox.GCPProviderID)
	f.Domains = append(f.Domains,
		config.Domain{
			Name:              app.SandboxAWSTarget,
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
			Name:              app.SandboxAzureTarget,
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
			Name:              app.SandboxGCPTarget,
			Kind:              string(broker.KindGCP),
			TokenEndpoint:     c.GCPSTSEndpoint,
			AllowInsecureHTTP: true, // loopback only
			GCP: config.GCPTarget{
				Audience:               gcpAudience,
				ServiceAccount:         sandbox.GCPServiceAccount,
				IAMCredentialsEndpoint: c.GCPIAMCredentialsEndpoint,
			},
		})
	for _, t := range [][2]string{{app.SandboxAWSTarget, sandbox.AWSAudience}, {app.SandboxAzureTarget, sandbox.AzureAudience}, {app.SandboxGCPTarget, gcpAudience}} {
		target, aud := t[0], t[1]
		f.Chains = append(f.Chains, config.Chain{Source: a.Name, Target: target, Audience: aud})
		for i := range f.Policy {
			f.Policy[i].Chains = append(f.Policy[i].Chains, config.PolicyChain{Source: a.Name, Target: target, Scopes: []string{"*"}})
		}
	}
}
