package main

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/chainbroker/chainbroker/apireason"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// The exit-code table's reasons are values of the API's Reason enum, and
// every refusal of the chain (the hops' rejections, every ASSERTION_*
// reason) exits 5 whatever its gRPC code, the rate limit 6.
func TestExitCodeReasonsFromEnum(t *testing.T) {
	for _, r := range append(refusedReasons, reasonRateLimited) {
		if _, ok := apireason.Parse(r); !ok {
			t.Errorf("exit-code table names %q, which is not a value of enum Reason", r)
		}
	}
	refusals := 0
	for _, r := range apireason.All() {
		refusal := strings.HasPrefix(r, "ASSERTION_") || r == "TOKEN_EXCHANGE_REJECTED" || r == "JWT_BEARER_REJECTED"
		if !refusal {
			continue
		}
		refusals++
		for _, c := range []codes.Code{codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition} {
			if got := exitCode(c, r); got != exitRefused {
				t.Errorf("exitCode(%v, %s) = %d, want %d", c, r, got, exitRefused)
			}
		}
	}
	if refusals < 19 {
		t.Errorf("%d refusal reasons in the enum, want at least 19", refusals)
	}
	if got := exitCode(codes.ResourceExhausted, apireason.String(pb.Reason_REASON_RATE_LIMITED)); got != exitUnavailable {
		t.Errorf("RATE_LIMITED exits %d, want %d", got, exitUnavailable)
	}
	if got := exitCode(codes.PermissionDenied, apireason.String(pb.Reason_REASON_CHAIN_NOT_ALLOWED)); got != exitDenied {
		t.Errorf("CHAIN_NOT_ALLOWED exits %d, want %d", got, exitDenied)
	}
	if got := exitCode(codes.FailedPrecondition, "ASSERTION_OF_A_NEWER_BROKER"); got != exitRefused {
		t.Errorf("an unknown ASSERTION_ reason exits %d, want %d", got, exitRefused)
	}
}
