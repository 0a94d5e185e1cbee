package broker_test

import (
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/store/memory"
)

// TestNewModeProfileKind: the zero value of Chain.Mode, Chain.Profile and
// Domain.Kind is the default, which New fills in; a known value is kept; an
// unknown one is refused, naming the chain or domain and the value.
func TestNewModeProfileKind(t *testing.T) {
	tests := []struct {
		name    string
		mode    broker.Mode
		profile broker.Profile
		kind    broker.TargetKind
		wantErr string
	}{
		{name: "zero values"},
		{name: "explicit defaults", mode: broker.ModeTokenExchange, profile: broker.ProfileJWTGrant, kind: broker.KindOAuth},
		{name: "unknown mode", mode: "mystery", wantErr: `chain "domain-a" -> "domain-b": unknown mode "mystery"`},
		{name: "unknown profile", profile: "id_jag_v0", wantErr: `chain "domain-a" -> "domain-b": unknown profile "id_jag_v0"`},
		{name: "unknown kind", kind: "aws_v0", wantErr: `domain "domain-b": unknown kind "aws_v0"`},
	}
	signA, _ := fixtureKeys(t)
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := broker.New(broker.Config{
				Domains: []broker.Domain{
					{Name: "domain-a", Issuer: issuerA, TokenEndpoint: issuerA + "/token", Keys: brokertest.Verifier(t, signA)},
					{Name: "domain-b", Issuer: issuerB, TokenEndpoint: issuerB + "/token", Kind: tt.kind},
				},
				Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b", Mode: tt.mode, Profile: tt.profile}},
				Endpoint: &scriptedEndpoint{}, Replay: st, Audit: st,
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, d := b.Chains()[0], b.Domains()[1]
			if c.Mode != broker.ModeTokenExchange || c.Profile != broker.ProfileJWTGrant || d.Kind != broker.KindOAuth {
				t.Errorf("mode %q, profile %q, kind %q: want the defaults", c.Mode, c.Profile, d.Kind)
			}
		})
	}
}

func TestModeProfileKindNames(t *testing.T) {
	tests := []struct {
		name  string
		v     interface{ Valid() bool }
		valid bool
		str   string
	}{
		{"zero mode", broker.Mode(""), true, "token_exchange"},
		{"token_exchange", broker.ModeTokenExchange, true, "token_exchange"},
		{"issue", broker.ModeIssue, true, "issue"},
		{"unknown mode", broker.Mode("Issue"), false, "Issue"},
		{"zero profile", broker.Profile(""), true, "jwt_grant"},
		{"jwt_grant", broker.ProfileJWTGrant, true, "jwt_grant"},
		{"unknown profile", broker.Profile("jwt-grant"), false, "jwt-grant"},
		{"zero kind", broker.TargetKind(""), true, "oauth"},
		{"oauth", broker.KindOAuth, true, "oauth"},
		{"unknown kind", broker.TargetKind("OAuth"), false, "OAuth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.Valid(); got != tt.valid {
				t.Errorf("Valid() = %v, want %v", got, tt.valid)
			}
			if got := tt.v.(interface{ String() string }).String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
		})
	}
}
