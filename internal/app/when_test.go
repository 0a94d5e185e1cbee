package app

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/sandbox"
)

// policy[].chains[].when, end to end: read from the configuration, wired into
// the broker's policy, given the caller's name and authentication method by
// the server; a false condition is PERMISSION_DENIED / POLICY_DENIED, audited
// with the condition's position.
func TestPolicyWhenEndToEnd(t *testing.T) {
	ci := newCallerIssuer(t)
	e := newEnv(t, envOptions{mutate: func(f *config.File) {
		securedConfig(ci)(f)
		f.Policy = []config.PolicyEntry{
			{Caller: "agent", Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"},
				When: `caller.method == "api_key" && caller.name == "agent" && !("admin" in request.scopes) && request.profile == "token_exchange"`}}},
			{Caller: "svc-1", Roles: []string{"audit"}, Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b",
				When: `caller.method == "api_key"`}}},
		}
	}})
	subject := e.subjectToken(t, sandbox.Alice, sandbox.AlicePassword)
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
			aCalls := e.sb.A.ExchangeCount()
			_, err := e.chain.Chain(ctx, tc.req)
			if status.Code(err) != tc.code || reason(err) != tc.reason {
				t.Fatalf("got %v %q (%v), want %v %q", status.Code(err), reason(err), err, tc.code, tc.reason)
			}
			if tc.code == codes.OK {
				return
			}
			if e.sb.A.ExchangeCount() != aCalls {
				t.Error("a refused call reached domain A")
			}
			ev, err := e.audit.ListAuditEvents(svc, &pb.ListAuditEventsRequest{PageSize: 1})
			if err != nil || len(ev.Events) != 1 {
				t.Fatalf("audit: %v", err)
			}
			if got := ev.Events[0]; got.Reason != tc.reason || !strings.Contains(got.Message, tc.message) {
				t.Errorf("audit event reason %q message %q, want %q with %q", got.Reason, got.Message, tc.reason, tc.message)
			}
		})
	}
}
