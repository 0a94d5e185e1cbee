package app_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// policy[].chains[].when, end to end: read from the configuration, wired into
// the broker's policy, given the caller's name and authentication method by
// the server; a false condition is PERMISSION_DENIED / POLICY_DENIED, audited
// with the condition's position.
func TestPolicyWhenEndToEnd(t *testing.T) {
	ci := newCallerIssuer(t)
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		securedConfig(ci)(f)
		f.Policy = []config.PolicyEntry{
			{Caller: "agent", Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"},
				When: `caller.method == "api_key" && caller.name == "agent" && !("admin" in request.scopes) && request.profile == "token_exchange"`}}},
			{Caller: "svc-1", Roles: []string{"audit"}, Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b",
				When: `caller.method == "api_key"`}}},
		}
	}})
	subject := e.SubjectToken(t, sandbox.Alice)
	req := func(scopes ...string) *pb.ChainRequest {
		return &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: scopes}
	}
	svc := withMD(t, "authorization", "Bearer "+ci.token(t, "svc-1", "chainbroker", time.Minute))
	for _, tc := range []struct {
		name    string
		md      []string
		req     *pb.ChainRequest
		code    codes.Code
		reason  string
		message string
	}{
		{"condition holds", []string{"x-api-key", "agent-key"}, req("profile"), codes.OK, "", ""},
		{"scope the condition excludes", []string{"x-api-key", "agent-key"}, req("admin"), codes.PermissionDenied, "POLICY_DENIED", "policy[0].chains[0].when is false"},
		{"caller JWT where the condition wants an API key", nil, req(), codes.PermissionDenied, "POLICY_DENIED", "policy[1].chains[0].when is false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := svc
			if tc.md != nil {
				ctx = withMD(t, tc.md...)
			}
			aCalls := e.Sandbox.A.ExchangeCount()
			_, err := e.Chain.Chain(ctx, tc.req)
			if status.Code(err) != tc.code || reason(err) != tc.reason {
				t.Fatalf("got %v %q (%v), want %v %q", status.Code(err), reason(err), err, tc.code, tc.reason)
			}
			if tc.code == codes.OK {
				return
			}
			if e.Sandbox.A.ExchangeCount() != aCalls {
				t.Error("a refused call reached domain A")
			}
			ev, err := e.Audit.ListAuditEvents(svc, &pb.ListAuditEventsRequest{PageSize: 1})
			if err != nil || len(ev.Events) != 1 {
				t.Fatalf("audit: %v", err)
			}
			if got := ev.Events[0]; got.Reason != tc.reason || !strings.Contains(got.Message, tc.message) {
				t.Errorf("audit event reason %q message %q, want %q with %q", got.Reason, got.Message, tc.reason, tc.message)
			}
		})
	}
}

// chains[].transcription.compute and a `when` reading subject, end to end in
// issue mode: the grant domain B accepts carries the computed claims.
func TestComputedClaimsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	k1, _ := writeKey(t, dir, "k1.pem")
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		f.Issuer = config.Issuer{URL: "http://" + f.Listen.HTTP, Keys: []config.IssuerKey{{File: k1, State: "active"}}}
		c := &f.Chains[0]
		c.Mode = "issue"
		c.SubjectAudience = []string{"chainbroker"}
		c.Transcription = config.Transcription{
			SubjectClaim: "preferred_username",
			SubjectMap:   map[string]string{"alice": "alice@example.com"},
			Compute: map[string]string{
				"user_upper": `subject.preferred_username.upperAscii()`,
				"agent":      `{"name": caller.name, "scopes": request.scopes}`,
			},
		}
		for i := range f.Policy {
			for j := range f.Policy[i].Chains {
				f.Policy[i].Chains[j].When = `subject.preferred_username == "alice"`
			}
		}
	}})
	e.Sandbox.A.SetTokenExchange(false)
	issuer := e.App.Config.Issuer.URL
	if err := e.Sandbox.B.TrustIdentityProvider("chainbroker", issuer, issuer+"/.well-known/jwks.json", sandbox.DefaultTrust()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sandbox.B.LinkFor("chainbroker", "alice@example.com", sandbox.Alice); err != nil {
		t.Fatal(err)
	}
	subject := e.SubjectToken(t, sandbox.Alice)
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: []string{"profile"}})
	if err != nil {
		t.Fatal(err)
	}
	got := e.Sandbox.B.LastAccepted()
	agent, _ := got["agent"].(map[string]any)
	if got["user_upper"] != "ALICE" || agent["name"] != "anonymous" || fmt.Sprint(agent["scopes"]) != "[profile]" {
		t.Errorf("assertion B accepted: %v", got)
	}
	ev, err := e.Audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: resp.AuditId})
	if err != nil {
		t.Fatal(err)
	}
	if x := ev.Event; !slices.Equal(x.TranscribedClaims, []string{"agent", "user_upper"}) {
		t.Errorf("audit transcribed claims %v", x.TranscribedClaims)
	}
}
