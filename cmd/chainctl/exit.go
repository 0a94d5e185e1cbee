package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/apireason"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// Reason codes (google.rpc.ErrorInfo.reason, from the API's Reason enum)
// whose failures mean that the chain itself was refused, whatever their gRPC
// code: an authorization server said no, or the grant would not pass the
// target's checks (every ASSERTION_* reason, ASSERTION_REPLAYED included).
var refusedReasons = func() []string {
	out := []string{apireason.String(pb.Reason_REASON_TOKEN_EXCHANGE_REJECTED), apireason.String(pb.Reason_REASON_JWT_BEARER_REJECTED)}
	for _, r := range apireason.All() {
		if strings.HasPrefix(r, assertionReasonPrefix) {
			out = append(out, r)
		}
	}
	return out
}()

// assertionReasonPrefix marks the grant checks' reasons; one a newer broker
// adds is a refusal too.
const assertionReasonPrefix = "ASSERTION_"

// reasonRateLimited is the broker's per-caller rate limit (RESOURCE_EXHAUSTED
// with a RetryInfo): retrying later helps, like unavailability.
var reasonRateLimited = apireason.String(pb.Reason_REASON_RATE_LIMITED)

// metadataOrder is the order in which ErrorInfo metadata is printed; other
// keys follow, sorted.
var metadataOrder = []string{"field", "hop", "error", "error_description", "upstream_cause"}

// report prints err to stderr (redacted) and returns the exit code.
func (c *cli) report(err error) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(c.stderr, "chainctl: %s\n", c.redact(ue.msg))
		if c.command != "" {
			fmt.Fprintf(c.stderr, "Run 'chainctl %s -h' for usage.\n", c.command)
		} else {
			fmt.Fprintln(c.stderr, "Run 'chainctl -h' for usage.")
		}
		return exitUsage
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(c.stderr, "chainctl: %s\n", c.redact(err.Error()))
		return exitError
	}
	reason, meta := errorInfo(st)
	fmt.Fprintf(c.stderr, "chainctl: %s: %s\n", reason, c.redact(st.Message()))
	for _, k := range metadataKeys(meta) {
		fmt.Fprintf(c.stderr, "  %s: %s\n", k, c.redact(meta[k]))
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			fmt.Fprintf(c.stderr, "  retry_after: %s\n", ri.GetRetryDelay().AsDuration())
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		fmt.Fprintf(c.stderr, "  addr: %s\n", c.g.addr)
	case codes.DeadlineExceeded:
		fmt.Fprintf(c.stderr, "  timeout: %s\n", c.g.timeout)
	}
	return exitCode(st.Code(), reason)
}

// errorInfo returns the ErrorInfo reason and metadata of a status; without an
// ErrorInfo the reason is the gRPC code's name (UNAVAILABLE, ...).
func errorInfo(st *status.Status) (string, map[string]string) {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
			return info.GetReason(), info.GetMetadata()
		}
	}
	return codeName(st.Code()), nil
}

// codeName is the canonical upper-case name of a gRPC code (INVALID_ARGUMENT).
func codeName(c codes.Code) string {
	if n, ok := rpccode.Code_name[int32(c)]; ok {
		return n
	}
	return strings.ToUpper(c.String())
}

func metadataKeys(meta map[string]string) []string {
	var keys, rest []string
	for _, k := range metadataOrder {
		if _, ok := meta[k]; ok {
			keys = append(keys, k)
		}
	}
	for k := range meta {
		if !slices.Contains(metadataOrder, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

// exitCode maps a gRPC code and ErrorInfo reason to chainctl's exit code.
// Order matters: unavailability and the rate limit first (retrying may help,
// even when an authorization server said temporarily_unavailable), then refusals of the
// chain by reason (an upstream invalid_grant arrives as PERMISSION_DENIED and
// ASSERTION_REPLAYED too, but they are about the chain, not the caller), then
// the caller's own standing, then its request.
func exitCode(code codes.Code, reason string) int {
	switch {
	case code == codes.OK:
		return exitOK
	case code == codes.Unavailable || code == codes.DeadlineExceeded ||
		(code == codes.ResourceExhausted && reason == reasonRateLimited):
		return exitUnavailable
	case slices.Contains(refusedReasons, reason) || strings.HasPrefix(reason, assertionReasonPrefix) ||
		code == codes.FailedPrecondition:
		return exitRefused
	case code == codes.Unauthenticated || code == codes.PermissionDenied:
		return exitDenied
	case code == codes.InvalidArgument || code == codes.NotFound:
		return exitInvalid
	}
	return exitError
}
