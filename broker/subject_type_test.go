package broker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
)

// issueMode makes the fixture's chain an issue mode chain.
func issueMode(typ []string, sourceTokenType string) func(*broker.Config) {
	return func(c *broker.Config) {
		c.Chains[0].Mode = broker.ModeIssue
		c.Chains[0].SubjectAudience = []string{brokerAud}
		c.Chains[0].SubjectTokenTyp = typ
		c.Domains[0].SubjectTokenType = sourceTokenType
	}
}

// TestIssueModeRefusesIDTokens (#14.9): issue mode takes only access tokens
// of the source (RFC 8725 §3.11): a typ header the chain accepts, and no
// sign of an ID token unless the source's subject tokens are ID tokens.
func TestIssueModeRefusesIDTokens(t *testing.T) {
	tests := []struct {
		name      string
		chainTyp  []string // Chain.SubjectTokenTyp
		tokenType string   // the source's SubjectTokenType
		headerTyp string
		claims    map[string]any
		want      broker.Reason
		wantMsg   string
	}{
		{name: "Keycloak access token", claims: map[string]any{"typ": "Bearer"}},
		{name: "RFC 9068 access token", headerTyp: "at+jwt"},
		{name: "RFC 9068 access token, media type", headerTyp: "application/AT+JWT"},
		{name: "Keycloak ID token", claims: map[string]any{"typ": "ID", "nonce": "n-1", "at_hash": "x"},
			want: broker.ReasonSubjectTokenInvalid, wantMsg: "ID token (typ claim"},
		{name: "typ claim id, any case", claims: map[string]any{"typ": "id"}, want: broker.ReasonSubjectTokenInvalid, wantMsg: "ID token"},
		{name: "ID token with nonce", claims: map[string]any{"nonce": "n-1"}, want: broker.ReasonSubjectTokenInvalid, wantMsg: "it has nonce"},
		{name: "ID token with at_hash", claims: map[string]any{"at_hash": "x"}, want: broker.ReasonSubjectTokenInvalid, wantMsg: "it has at_hash"},
		{name: "ID token with c_hash", claims: map[string]any{"c_hash": "x"}, want: broker.ReasonSubjectTokenInvalid, wantMsg: "it has c_hash"},
		{name: "logout token", headerTyp: "logout+jwt", want: broker.ReasonSubjectTokenInvalid, wantMsg: `typ "logout+jwt"`},
		{name: "ID-JAG as subject token", headerTyp: "oauth-id-jag+jwt", want: broker.ReasonSubjectTokenInvalid, wantMsg: "typ"},
		{name: "chain requires at+jwt: JWT refused", chainTyp: []string{"at+jwt"},
			want: broker.ReasonSubjectTokenInvalid, wantMsg: `typ "JWT" is not a type this chain accepts (at+jwt)`},
		{name: "chain requires at+jwt: at+jwt", chainTyp: []string{"application/at+jwt"}, headerTyp: "at+jwt"},
		{name: "source of ID tokens: ID token accepted", tokenType: oauth.TokenTypeIDToken,
			claims: map[string]any{"typ": "ID", "nonce": "n-1"}},
		{name: "source of ID tokens: header typ still checked", tokenType: oauth.TokenTypeIDToken, headerTyp: "logout+jwt",
			want: broker.ReasonSubjectTokenInvalid},
		{name: "declared type of the request does not lift the check", claims: map[string]any{"nonce": "n-1"},
			want: broker.ReasonSubjectTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, issueMode(tt.chainTyp, tt.tokenType))
			req := broker.Request{Caller: "agent", TargetDomain: "domain-b",
				SubjectToken: f.subjectToken(t, "alice", tt.claims, tt.headerTyp)}
			if strings.HasPrefix(tt.name, "declared type") {
				req.SubjectTokenType = oauth.TokenTypeIDToken
			}
			_, err := f.b.Chain(context.Background(), req)
			if got := reasonOf(t, err); got != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestSubjectTokenTypOnlyInIssueMode(t *testing.T) {
	_, signBroker := fixtureKeys(t)
	_, err := broker.New(broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: brokertest.Verifier(t, signBroker)},
			{Name: "domain-b", Issuer: issuerB, TokenEndpoint: issuerB + "/token"},
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b", SubjectTokenTyp: []string{"at+jwt"}}},
		Endpoint: &scriptedEndpoint{}, Replay: nil, Audit: nil,
	})
	if err == nil || !strings.Contains(err.Error(), "issue mode only") {
		t.Fatalf("subject token typ on a token exchange chain: %v", err)
	}
}
