//go:build live

package app

// Live runs against Microsoft Entra and Google Cloud (docs/cloud-azure.md,
// docs/cloud-gcp.md): never in CI (build tag live), each skipped unless its
// variables are set. The token in the file is presented as the chain's
// grant (hop 1 answers it), so that the broker's checks and the real
// cloud's are what is tested.

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

// liveGrant reads the token file and returns the token and its issuer.
func liveGrant(t *testing.T, prefix string) (grant, issuer, jwks string) {
	t.Helper()
	file, jwks := os.Getenv(prefix+"_TOKEN_FILE"), os.Getenv(prefix+"_JWKS_URI")
	if file == "" || jwks == "" {
		t.Skipf("set %s_TOKEN_FILE, %s_JWKS_URI and the target's variables to run against the cloud", prefix, prefix)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	grant = strings.TrimSpace(string(raw))
	parsed, err := token.ParseUnverified(grant)
	if err != nil {
		t.Fatalf("the token file holds no JWT: %v", err)
	}
	return grant, parsed.Claims.Issuer, jwks
}

// liveChain runs one chain from the token's issuer into target.
func liveChain(t *testing.T, grant, issuer, jwks string, target broker.Domain) *broker.Result {
	t.Helper()
	st := memory.New(memory.Options{})
	defer st.Close()
	ep := &brokertest.Endpoint{Exchange: brokertest.Answer(oauth.TokenResponse{AccessToken: grant, TokenType: "N_A", IssuedTokenType: oauth.TokenTypeJWT})}
	target.Name, target.Issuer = "cloud", "urn:live:cloud"
	target.Assertion = broker.AssertionPolicy{MaxLifetime: 24 * time.Hour, AllowReuse: true}
	b, err := broker.New(broker.Config{
		Domains: []broker.Domain{
			{Name: "idp", Issuer: issuer, TokenEndpoint: issuer + "/token", Keys: token.NewRemoteVerifier(token.RemoteKeys{URL: jwks}, nil)},
			target,
		},
		Chains:   []broker.Chain{{Source: "idp", Target: "cloud"}},
		Endpoint: ep, Replay: st, Audit: st,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: "live", Chains: []broker.ChainGrant{{Source: "idp", Target: "cloud"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Chain(context.Background(), broker.Request{Caller: "live", SubjectToken: grant, SourceDomain: "idp", TargetDomain: "cloud"})
	if err != nil {
		t.Fatal(err)
	}
	if res.AccessToken == "" {
		t.Fatalf("no access token: %+v", res)
	}
	t.Logf("access token for %d s (hash %s)", res.ExpiresIn, broker.Hash(res.AccessToken))
	return res
}

func TestLiveAzure(t *testing.T) {
	grant, issuer, jwks := liveGrant(t, "CHAINBROKER_LIVE_AZURE")
	tenant, client, scope := os.Getenv("CHAINBROKER_LIVE_AZURE_TENANT"), os.Getenv("CHAINBROKER_LIVE_AZURE_CLIENT_ID"), os.Getenv("CHAINBROKER_LIVE_AZURE_SCOPE")
	if tenant == "" || client == "" || scope == "" {
		t.Skip("set CHAINBROKER_LIVE_AZURE_TENANT, _CLIENT_ID and _SCOPE")
	}
	liveChain(t, grant, issuer, jwks, broker.Domain{Kind: broker.KindAzure, TokenEndpoint: broker.EntraTokenEndpoint(tenant),
		Endpoint: oauth.NewClient(oauth.ClientOptions{}),
		Azure:    &broker.AzureTarget{Tenant: tenant, ClientID: client, Scope: scope}})
}

func TestLiveGCP(t *testing.T) {
	grant, issuer, jwks := liveGrant(t, "CHAINBROKER_LIVE_GCP")
	audience := os.Getenv("CHAINBROKER_LIVE_GCP_AUDIENCE")
	if audience == "" {
		t.Skip("set CHAINBROKER_LIVE_GCP_AUDIENCE (and CHAINBROKER_LIVE_GCP_SERVICE_ACCOUNT to impersonate)")
	}
	g := &broker.GCPTarget{Audience: audience, ServiceAccount: os.Getenv("CHAINBROKER_LIVE_GCP_SERVICE_ACCOUNT"),
		Client: &googleClient{http: &http.Client{Timeout: 10 * time.Second}}}
	if g.ServiceAccount != "" {
		g.IAMCredentialsEndpoint = broker.DefaultGCPIAMCredentialsEndpoint
	}
	liveChain(t, grant, issuer, jwks, broker.Domain{Kind: broker.KindGCP, TokenEndpoint: broker.DefaultGCPSTSEndpoint, GCP: g})
}
