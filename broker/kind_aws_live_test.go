//go:build live

package broker_test

// A live run against the real AWS STS (docs/cloud-aws.md, "Live AWS"):
// never in CI (build tag live), skipped unless the variables are set.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

func TestLiveAWS(t *testing.T) {
	role, region := os.Getenv("CHAINBROKER_LIVE_AWS_ROLE_ARN"), os.Getenv("CHAINBROKER_LIVE_AWS_REGION")
	file, jwks := os.Getenv("CHAINBROKER_LIVE_AWS_TOKEN_FILE"), os.Getenv("CHAINBROKER_LIVE_AWS_JWKS_URI")
	if role == "" || region == "" || file == "" || jwks == "" {
		t.Skip("set CHAINBROKER_LIVE_AWS_ROLE_ARN, _REGION, _TOKEN_FILE and _JWKS_URI to run against AWS")
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	grant := strings.TrimSpace(string(raw))
	parsed, err := token.ParseUnverified(grant)
	if err != nil || len(parsed.Claims.Audience) == 0 {
		t.Fatalf("the token file holds no JWT with an aud: %v", err)
	}
	iss := parsed.Claims.Issuer
	st := memory.New(memory.Options{})
	defer st.Close()
	// Hop 1 answers the token itself: the test is about hop 2.
	ep := &brokertest.Endpoint{Exchange: brokertest.Answer(oauth.TokenResponse{AccessToken: grant, TokenType: "N_A",
		IssuedTokenType: oauth.TokenTypeJWT})}
	b, err := broker.New(broker.Config{
		Domains: []broker.Domain{
			{Name: "idp", Issuer: iss, TokenEndpoint: iss + "/token", Keys: token.NewRemoteVerifier(token.RemoteKeys{URL: jwks}, nil)},
			{Name: "aws", Kind: broker.KindAWS, Issuer: "urn:live:aws", TokenEndpoint: broker.AWSRegionalEndpoint(region),
				Assertion: broker.AssertionPolicy{MaxLifetime: 24 * time.Hour, AllowReuse: true},
				AWS: &broker.AWSTarget{RoleARN: role, ProviderURL: iss, ClientIDs: parsed.Claims.Audience,
					Client: sts.New(broker.AWSSTSOptions(broker.AWSRegionalEndpoint(region), region))}},
		},
		Chains:   []broker.Chain{{Source: "idp", Target: "aws"}},
		Endpoint: ep, Replay: st, Audit: st,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: "live", Chains: []broker.ChainGrant{{Source: "idp", Target: "aws"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Chain(context.Background(), broker.Request{Caller: "live", SubjectToken: grant, SourceDomain: "idp", TargetDomain: "aws"})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.AWSCredentials; c == nil || !strings.HasPrefix(c.AccessKeyID, "ASIA") || c.SessionToken == "" {
		t.Fatalf("no credentials: %+v", res)
	}
	t.Logf("credentials until %s (access key id hash %s)", res.AWSCredentials.Expiration, broker.Hash(res.AWSCredentials.AccessKeyID))
}
