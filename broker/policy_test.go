package broker_test

import (
	"cmp"
	"context"
	"slices"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
)

const chainResource = "https://api.b.example/"

// TestPolicyLimitsResourcesAndAudiences (#14.4): a caller sends in hop 1 only
// the resources and audience its grant lists, besides the chain's own.
func TestPolicyLimitsResourcesAndAudiences(t *testing.T) {
	const admin = "https://payments.example/admin"
	tests := []struct {
		name                string
		resources, audience []string // the grant's
		reqResources        []string
		reqAudience         string
		want                broker.Reason
	}{
		{name: "neither"},
		{name: "the chain's resource", reqResources: []string{chainResource}},
		{name: "the chain's audience", reqAudience: issuerB},
		{name: "a resource not granted", reqResources: []string{admin}, want: broker.ReasonResourceNotAllowed},
		{name: "a resource of another grant's list", resources: []string{"https://other.example/"}, reqResources: []string{admin},
			want: broker.ReasonResourceNotAllowed},
		{name: "a granted resource", resources: []string{admin}, reqResources: []string{admin, chainResource}},
		{name: "one granted, one not", resources: []string{admin}, reqResources: []string{admin, "https://payments.example/root"},
			want: broker.ReasonResourceNotAllowed},
		{name: "any resource", resources: []string{"*"}, reqResources: []string{admin}},
		{name: "an audience not granted", reqAudience: "https://payments.example", want: broker.ReasonAudienceNotAllowed},
		{name: "resources granted, audience not", resources: []string{"*"}, reqAudience: "https://payments.example",
			want: broker.ReasonAudienceNotAllowed},
		{name: "a granted audience", audience: []string{"https://payments.example"}, reqAudience: "https://payments.example"},
		{name: "any audience", audience: []string{"*"}, reqAudience: "https://payments.example"},
		{name: "audiences granted, resource not", audience: []string{"*"}, reqResources: []string{admin},
			want: broker.ReasonResourceNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *broker.Config) {
				c.Chains[0].Resource = []string{chainResource}
				g := &c.Policy.Callers[0].Chains[0]
				g.Scopes, g.Resources, g.Audiences = []string{"profile"}, tt.resources, tt.audience
			})
			_, err := f.b.Chain(context.Background(), broker.Request{Caller: "agent", TargetDomain: "domain-b",
				SubjectToken: f.subjectToken(t, "alice", nil, ""), Scopes: []string{"profile"},
				Resources: tt.reqResources, Audience: tt.reqAudience})
			if got := reasonOf(t, err); got != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if tt.want != "" {
				if n := f.ep.n.Load(); n != 0 {
					t.Errorf("a refused request made %d token exchange calls", n)
				}
				return
			}
			form := f.ep.lastForm(t)
			for _, r := range tt.reqResources {
				if !slices.Contains(form["resource"], r) {
					t.Errorf("resource %q not sent: %v", r, form["resource"])
				}
			}
			if wantAud := cmp.Or(tt.reqAudience, issuerB); !slices.Equal(form["audience"], []string{wantAud}) {
				t.Errorf("audience sent %v, want %s", form["audience"], wantAud)
			}
		})
	}
}
