package e2e

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Two broker processes sharing one Redis are one broker to their callers: an
// assertion accepted through replica 1 is refused as replayed through
// replica 2 (and never reaches domain B again), and the audit trail listed
// on either replica holds both replicas' events.
func TestTwoReplicasShareReplayAndAudit(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	sb := apptest.StartSandbox(t, sandbox.Options{})
	cfg := func() *config.File { return brokerConfig(sb, cfgOptions{redis: &config.Redis{URL: srv.URL()}}) }
	r1 := startBroker(t, "replica-1", cfg())
	r2 := startBroker(t, "replica-2", cfg())

	tests := []struct {
		name string
		// before runs ahead of the chain through replica 1, replay ahead of
		// the one through replica 2: together they make domain A hand out
		// the same grant (or the same jti) twice.
		before, replay sandbox.Misbehaviour
	}{
		// The second exchange answers the first one's token byte for byte.
		{"same assertion", sandbox.Misbehaviour{}, sandbox.Misbehaviour{ReuseAssertion: true}},
		// A fresh token (new signature, iat) with the same jti.
		{"same jti", sandbox.Misbehaviour{FixedJTI: "e2e-fixed-jti"}, sandbox.Misbehaviour{FixedJTI: "e2e-fixed-jti"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer sb.A.ResetMisbehaviour()
			sb.A.SetMisbehaviour(tt.before)
			first, err := r1.chainOnce(t, sb, sandbox.Alice)
			if err != nil {
				t.Fatalf("chain through replica 1: %v", err)
			}
			bCalls := sb.B.JWTBearerCount()

			sb.A.SetMisbehaviour(tt.replay)
			_, err = r2.chainOnce(t, sb, sandbox.Alice)
			if status.Code(err) != codes.PermissionDenied || reason(err) != "ASSERTION_REPLAYED" {
				t.Fatalf("the same grant through replica 2: %v, want PERMISSION_DENIED ASSERTION_REPLAYED", err)
			}
			if n := sb.B.JWTBearerCount() - bCalls; n != 0 {
				t.Errorf("the replayed grant reached domain B (%d calls)", n)
			}
			sb.A.ResetMisbehaviour()

			// Replica 2 writes a success of its own.
			second, err := r2.chainOnce(t, sb, sandbox.Alice)
			if err != nil {
				t.Fatalf("chain through replica 2: %v", err)
			}

			since := time.Now().Add(-time.Minute)
			var lists [2][]*pb.AuditEvent
			for i, r := range []*broker{r1, r2} {
				lists[i] = r.listAll(t, &pb.ListAuditEventsRequest{Caller: callerName})
				ids := auditIDs(lists[i])
				for _, want := range []string{first.AuditId, second.AuditId} {
					if !slices.Contains(ids, want) {
						t.Errorf("%s: audit trail lacks event %s (replica 1's %s, replica 2's %s)", r.name, want, first.AuditId, second.AuditId)
					}
				}
				replayed := 0
				for _, ev := range lists[i] {
					if ev.Reason == "ASSERTION_REPLAYED" && ev.Outcome == pb.Outcome_OUTCOME_FAILURE && ev.Time.AsTime().After(since) {
						replayed++
					}
				}
				if replayed < 1 {
					t.Errorf("%s: no ASSERTION_REPLAYED failure in the audit trail", r.name)
				}
			}
			if a, b := auditIDs(lists[0]), auditIDs(lists[1]); !slices.Equal(a, b) {
				t.Errorf("the replicas list different audit trails:\nreplica 1: %v\nreplica 2: %v", a, b)
			}
		})
	}
}

func auditIDs(events []*pb.AuditEvent) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.Id
	}
	return ids
}
