package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/apireason"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
)

func errorInfo(t *testing.T, err error) (codes.Code, string, *errdetails.ErrorInfo) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status error: %v", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), st.Message(), info
		}
	}
	t.Fatalf("no ErrorInfo in %v", st)
	return 0, "", nil
}

func TestToStatus(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		reason  string
		meta    map[string]string
		wantMsg string
		hideMsg string // must not appear in the message
	}{
		{"invalid field", &broker.Error{Reason: broker.ReasonRequestInvalid, Field: "subject_token", Message: "subject_token: required"},
			codes.InvalidArgument, "REQUEST_INVALID", map[string]string{"field": "subject_token"}, "subject_token: required", ""},
		{"unknown target", &broker.Error{Reason: broker.ReasonDomainUnknown, Field: "target_domain", Message: "x"},
			codes.InvalidArgument, "DOMAIN_UNKNOWN", map[string]string{"field": "target_domain"}, "x", ""},
		{"replayed", &broker.Error{Reason: broker.ReasonAssertionReplayed, Hop: broker.HopTokenExchange, Message: "m"},
			codes.PermissionDenied, "ASSERTION_REPLAYED", map[string]string{"hop": "token_exchange"}, "m", ""},
		{"audience multiple", &broker.Error{Reason: broker.ReasonAssertionAudienceMultiple, Message: "m"},
			codes.FailedPrecondition, "ASSERTION_AUDIENCE_MULTIPLE", map[string]string{}, "m", ""},
		{"hop 2 invalid_grant", &broker.Error{Reason: broker.ReasonJWTBearerRejected, Hop: broker.HopJWTBearer, Message: "m",
			Upstream: &oauth.Error{StatusCode: 400, Code: "invalid_grant", Description: "User not found"}},
			codes.PermissionDenied, "JWT_BEARER_REJECTED",
			map[string]string{"hop": "jwt_bearer", "error": "invalid_grant", "error_description": "User not found"}, "m", ""},
		{"hop 2 known refusal names its cause", &broker.Error{Reason: broker.ReasonJWTBearerRejected, Hop: broker.HopJWTBearer, Message: "m",
			Upstream: &oauth.Error{StatusCode: 400, Code: "invalid_grant", Description: "User is not enabled"}, UpstreamCause: broker.CauseTargetUserDisabled},
			codes.PermissionDenied, "JWT_BEARER_REJECTED",
			map[string]string{"hop": "jwt_bearer", "error": "invalid_grant", "error_description": "User is not enabled", "upstream_cause": "target_user_disabled"}, "m", ""},
		{"hop 1 invalid_client", &broker.Error{Reason: broker.ReasonTokenExchangeRejected, Hop: broker.HopTokenExchange, Message: "m",
			Upstream: &oauth.Error{StatusCode: 401, Code: "invalid_client"}},
			codes.FailedPrecondition, "TOKEN_EXCHANGE_REJECTED", map[string]string{"hop": "token_exchange", "error": "invalid_client"}, "m", ""},
		{"hop 1 invalid_scope", &broker.Error{Reason: broker.ReasonTokenExchangeRejected, Message: "m",
			Upstream: &oauth.Error{StatusCode: 400, Code: "invalid_scope"}},
			codes.InvalidArgument, "TOKEN_EXCHANGE_REJECTED", map[string]string{"error": "invalid_scope"}, "m", ""},
		{"upstream down", &broker.Error{Reason: broker.ReasonUpstreamUnavailable, Hop: broker.HopTokenExchange, Message: "domain-a is unavailable",
			Err: fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", oauth.ErrUnavailable)},
			codes.Unavailable, "UPSTREAM_UNAVAILABLE", map[string]string{"hop": "token_exchange"}, "domain-a is unavailable", "connection refused"},
		{"store down", &broker.Error{Reason: broker.ReasonStoreUnavailable, Message: "m", Err: store.ErrUnavailable},
			codes.Unavailable, "STORE_UNAVAILABLE", map[string]string{}, "m", ""},
		{"internal hides cause", &broker.Error{Reason: broker.ReasonInternal, Message: "secret detail", Err: errors.New("boom")},
			codes.Internal, "INTERNAL", map[string]string{}, "internal error", "secret detail"},
		{"unknown error", errors.New("database password is hunter2"),
			codes.Internal, "INTERNAL", map[string]string{}, "internal error", "hunter2"},
		{"store not found", fmt.Errorf("get: %w", store.ErrNotFound), codes.NotFound, "NOT_FOUND", map[string]string{}, "not found", ""},
		{"store bad token", fmt.Errorf("store/memory: list: malformed page token: %w", store.ErrInvalidArgument),
			codes.InvalidArgument, "REQUEST_INVALID", map[string]string{}, "invalid argument", "store/"},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "REQUEST_DEADLINE_EXCEEDED", map[string]string{}, "deadline expired", ""},
		{"cancelled", context.Canceled, codes.Canceled, "REQUEST_CANCELLED", map[string]string{}, "cancelled", ""},
		{"huge description", &broker.Error{Reason: broker.ReasonTokenExchangeRejected, Message: "m",
			Upstream: &oauth.Error{StatusCode: 400, Code: "invalid_grant", Description: "ab" + strings.Repeat("é", 600)}},
			codes.PermissionDenied, "TOKEN_EXCHANGE_REJECTED",
			map[string]string{"error": "invalid_grant", "error_description": "ab" + strings.Repeat("é", 253) + "…"}, "m", ""},
		{"store unavailable", fmt.Errorf("list: %w", store.ErrUnavailable), codes.Unavailable, "STORE_UNAVAILABLE", map[string]string{}, "the store is unavailable", ""},
		// An outage may carry an OAuth error (a 429 with invalid_grant): it
		// stays UNAVAILABLE; only refusals take their code from the upstream.
		{"outage with an upstream error", &broker.Error{Reason: broker.ReasonUpstreamUnavailable, Hop: broker.HopTokenExchange, Message: "m",
			Upstream: &oauth.Error{StatusCode: 429, Code: "invalid_grant"}},
			codes.Unavailable, "UPSTREAM_UNAVAILABLE", map[string]string{"hop": "token_exchange", "error": "invalid_grant"}, "m", ""},
		{"keys refreshing", &broker.Error{Reason: broker.ReasonKeysRefreshing, Message: "kid k2 is not in domain-a's cached JWKS", RetryAfter: 7 * time.Second},
			codes.Unavailable, "SOURCE_KEYS_REFRESHING", map[string]string{}, "kid k2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, msg, info := errorInfo(t, toStatus(context.Background(), log, tt.err))
			if code != tt.code {
				t.Errorf("code = %v, want %v", code, tt.code)
			}
			if info.Reason != tt.reason || info.Domain != ErrorDomain {
				t.Errorf("ErrorInfo = %s/%s, want %s/%s", info.Domain, info.Reason, ErrorDomain, tt.reason)
			}
			if len(info.Metadata) != len(tt.meta) {
				t.Errorf("metadata = %v, want %v", info.Metadata, tt.meta)
			}
			for k, v := range tt.meta {
				if info.Metadata[k] != v {
					t.Errorf("metadata[%s] = %q, want %q", k, info.Metadata[k], v)
				}
			}
			if !contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", msg, tt.wantMsg)
			}
			if tt.hideMsg != "" && contains(msg, tt.hideMsg) {
				t.Errorf("message %q leaks %q", msg, tt.hideMsg)
			}
		})
	}
}

// A failure caused by the call's own context ending is the caller's
// deadline or cancellation, not the upstream's or the store's fault.
// A broker error with RetryAfter carries a RetryInfo (REST: Retry-After).
func TestToStatusRetryInfo(t *testing.T) {
	err := toStatus(context.Background(), slog.New(slog.DiscardHandler),
		&broker.Error{Reason: broker.ReasonKeysRefreshing, Message: "m", RetryAfter: 7 * time.Second})
	st, _ := status.FromError(err)
	var got time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			got = ri.GetRetryDelay().AsDuration()
		}
	}
	if got != 7*time.Second {
		t.Fatalf("RetryInfo delay = %v, want 7s (details %v)", got, st.Details())
	}
}

func TestToStatusCallEnded(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	upstream := func(cause error) error {
		return &broker.Error{Reason: broker.ReasonUpstreamUnavailable, Hop: broker.HopJWTBearer, Message: "domain-b is unavailable",
			Err: fmt.Errorf("%w: %w", oauth.ErrUnavailable, cause)}
	}
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		code   codes.Code
		reason string
	}{
		{"deadline during a hop", expired, upstream(context.DeadlineExceeded), codes.DeadlineExceeded, "REQUEST_DEADLINE_EXCEEDED"},
		{"cancelled during a hop", cancelled, upstream(context.Canceled), codes.Canceled, "REQUEST_CANCELLED"},
		{"store timeout while the call lives", context.Background(), &broker.Error{Reason: broker.ReasonStoreUnavailable, Message: "m",
			Err: fmt.Errorf("%w: %w", store.ErrUnavailable, context.DeadlineExceeded)}, codes.Unavailable, "STORE_UNAVAILABLE"},
		{"the domain's own timeout", context.Background(), upstream(context.DeadlineExceeded), codes.Unavailable, "UPSTREAM_UNAVAILABLE"},
		{"a refusal as the deadline expires", expired, &broker.Error{Reason: broker.ReasonChainNotAllowed, Message: "m"},
			codes.PermissionDenied, "CHAIN_NOT_ALLOWED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, info := errorInfo(t, toStatus(tt.ctx, log, tt.err))
			if code != tt.code || info.Reason != tt.reason {
				t.Errorf("%v %s, want %v %s", code, info.Reason, tt.code, tt.reason)
			}
			if tt.reason == "REQUEST_DEADLINE_EXCEEDED" && info.Metadata["hop"] != "jwt_bearer" {
				t.Errorf("hop %q not kept", info.Metadata["hop"])
			}
		})
	}
}

func TestBoundText(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("a", 512), strings.Repeat("a", 513), strings.Repeat("é", 300),
		strings.Repeat("€", 200), "a" + strings.Repeat("\xff", 600)} {
		got := broker.BoundText(s, MaxDescriptionBytes)
		if len(got) > MaxDescriptionBytes || !utf8.ValidString(got) {
			t.Errorf("BoundText(%d bytes) = %d bytes, valid %v", len(s), len(got), utf8.ValidString(got))
		}
		if len(s) <= MaxDescriptionBytes && utf8.ValidString(s) && got != s {
			t.Errorf("BoundText changed a short text")
		}
	}
}

// Every reason the broker defines has a deliberate code.
func TestEveryReasonMapped(t *testing.T) {
	for _, r := range broker.Reasons() {
		if _, ok := reasonCodes[r]; !ok {
			t.Errorf("reason %s has no gRPC code", r)
		}
	}
}

// store.Outcome and pb.Outcome share their numbering.
func TestOutcomeNumbering(t *testing.T) {
	for o, want := range map[store.Outcome]pb.Outcome{
		store.OutcomeUnspecified: pb.Outcome_OUTCOME_UNSPECIFIED,
		store.OutcomeSuccess:     pb.Outcome_OUTCOME_SUCCESS,
		store.OutcomeFailure:     pb.Outcome_OUTCOME_FAILURE,
		store.OutcomeCacheHit:    pb.Outcome_OUTCOME_CACHE_HIT,
	} {
		if pb.Outcome(o) != want {
			t.Errorf("store outcome %v = %d, proto %v = %d", o, o, want, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// The README's error table names every reason the broker can return, and
// every value of the API's Reason enum, in its first column; and it names
// no reason the enum lacks.
func TestReadmeDocumentsEveryReason(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	reasons := edgeReasons()
	for _, r := range broker.Reasons() {
		reasons = append(reasons, string(r))
	}
	for _, r := range reasons {
		if !strings.Contains(string(readme), "`"+r+"`") {
			t.Errorf("README.md does not document reason %s", r)
		}
	}

	// The table: "| reason | gRPC (HTTP) | meaning |" and its rows.
	tabled := map[string]bool{}
	code := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	in := false
	for line := range strings.Lines(string(readme)) {
		switch {
		case strings.HasPrefix(line, "| reason |"):
			in = true
		case in && !strings.HasPrefix(line, "|"):
			in = false
		case in:
			first := strings.SplitN(line, "|", 3)[1]
			for _, m := range code.FindAllStringSubmatch(first, -1) {
				tabled[m[1]] = true
			}
		}
	}
	if len(tabled) == 0 {
		t.Fatal("README.md has no \"| reason | gRPC (HTTP) | meaning |\" table")
	}
	for _, r := range apireason.All() {
		if !tabled[r] {
			t.Errorf("README.md's reason table has no row for %s (enum Reason in proto/chainbroker/v1/reason.proto)", r)
		}
	}
	for r := range tabled {
		if _, ok := apireason.Parse(r); !ok {
			t.Errorf("README.md's reason table names %s, which is not a value of enum Reason", r)
		}
	}
}

// The API's Reason enum is exactly the broker's reasons (each with a gRPC
// code in reasonCodes) and the server's edge reasons, with the wire strings
// they have always had.
func TestReasonEnum(t *testing.T) {
	inEnum := map[string]bool{}
	for _, r := range apireason.All() {
		inEnum[r] = true
	}
	seen := map[string]string{}
	for _, r := range broker.Reasons() {
		if !inEnum[string(r)] {
			t.Errorf("broker reason %s has no value REASON_%s in enum Reason (proto/chainbroker/v1/reason.proto)", r, r)
		}
		if _, ok := reasonCodes[r]; !ok {
			t.Errorf("broker reason %s is not mapped in server/errors.go reasonCodes", r)
		}
		seen[string(r)] = "broker.Reasons()"
	}
	for _, r := range edgeReasons() {
		if r == "" {
			t.Error("an edge reason is REASON_UNSPECIFIED")
		}
		if by, dup := seen[r]; dup {
			t.Errorf("edge reason %s is also in %s", r, by)
		}
		seen[r] = "edgeReasons()"
	}
	for _, r := range apireason.All() {
		if seen[r] == "" {
			t.Errorf("enum value REASON_%s is neither a broker reason nor in edgeReasons() (server/errors.go)", r)
		}
	}
	// The wire strings scripts match: a few, spelled out.
	for r, want := range map[pb.Reason]string{
		pb.Reason_REASON_REQUEST_INVALID:        "REQUEST_INVALID",
		pb.Reason_REASON_ASSERTION_IAT_MISSING:  "ASSERTION_IAT_MISSING",
		pb.Reason_REASON_SOURCE_KEYS_REFRESHING: "SOURCE_KEYS_REFRESHING",
		pb.Reason_REASON_UNAUTHENTICATED:        "UNAUTHENTICATED",
		pb.Reason_REASON_RATE_LIMITED:           "RATE_LIMITED",
	} {
		if got := apireason.String(r); got != want {
			t.Errorf("%v is %q on the wire, want %q", r, got, want)
		}
	}
}
