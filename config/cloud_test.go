package config

import (
	"strings"
	"testing"
	"time"
)

const awsConfig = `
callers:
  api_keys: [{name: agent, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]
policy:
  - {caller: agent, chains: [{source: a, target: aws}]}
domains:
  - {name: a, issuer: https://a.example/realms/a, token_endpoint: https://a.example/t, jwks_uri: https://a.example/k, client: {client_id: c, client_secret_env: X}}
  - name: aws
    kind: aws
    aws: {role_arn: "arn:aws:iam::111122223333:role/app", region: eu-west-1}
chains: [{source: a, target: aws, audience: sts.amazonaws.com}]
`

func TestAWSTargetConfig(t *testing.T) {
	cfg, err := Parse([]byte(awsConfig))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("aws")
	if d.Issuer != "urn:chainbroker:aws:aws" || d.TokenEndpoint != "https://sts.eu-west-1.amazonaws.com/" ||
		len(d.Assertion.Audience) != 0 || d.AWS.Duration != 0 {
		t.Fatalf("aws domain defaults: %+v", d)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown kind", "kind: aws", "kind: gcloud", `domains[1].kind: must be oauth, aws, azure or gcp; got "gcloud"`},
		{"no role", `role_arn: "arn:aws:iam::111122223333:role/app", `, "", "domains[1].aws.role_arn"},
		{"no endpoint", "region: eu-west-1", "duration: 1h", "domains[1].token_endpoint: required (for kind aws: or aws.region; for kind azure: or azure.tenant)"},
		{"duration", "region: eu-west-1", "region: eu-west-1, duration: 13h", "domains[1].aws.duration"},
		{"provider URL", "region: eu-west-1", "region: eu-west-1, provider_url: http://idp.example", "domains[1].aws.provider_url"},
		{"subject_token mode into an oauth target", "chains: [{source: a, target: aws, audience: sts.amazonaws.com}]",
			"chains: [{source: a, target: aws, audience: sts.amazonaws.com}, {source: aws, target: a, mode: subject_token}]",
			"chains[1].mode: subject_token needs a cloud target"},
		{"aws as a source", "chains: [{source: a, target: aws, audience: sts.amazonaws.com}]",
			"chains: [{source: a, target: aws}, {source: aws, target: a}]", `chains[1].source: domain "aws" of kind aws is a target only`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(awsConfig, tc.from, tc.to, 1)
			if doc == awsConfig {
				t.Fatal("the edit changed nothing")
			}
			_, err := Parse([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse: %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err = Parse([]byte(strings.Replace(awsConfig, "region: eu-west-1", "region: eu-west-1, duration: 2h", 1)))
	if err != nil || cfg.Domain("aws").AWS.Duration.D() != 2*time.Hour {
		t.Fatalf("duration 2h: %v", err)
	}
}
