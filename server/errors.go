package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chainbroker/chainbroker/apireason"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/store"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every chainbroker error.
const ErrorDomain = "chainbroker"

// reasonCodes maps each broker reason to its gRPC code. Reasons absent here
// (none should be) become INTERNAL.
var reasonCodes = map[broker.Reason]codes.Code{
	broker.ReasonRequestInvalid:       codes.InvalidArgument,
	broker.ReasonDomainUnknown:        codes.InvalidArgument,
	broker.ReasonSourceUndetermined:   codes.InvalidArgument,
	broker.ReasonChainNotAllowed:      codes.PermissionDenied,
	broker.ReasonPolicyDenied:         codes.PermissionDenied,
	broker.ReasonScopeNotAllowed:      codes.PermissionDenied,
	broker.ReasonResourceNotAllowed:   codes.PermissionDenied,
	broker.ReasonAudienceNotAllowed:   codes.PermissionDenied,
	broker.ReasonActorTokenNotAllowed: codes.PermissionDenied,
	broker.ReasonSubjectNotAllowed:    codes.PermissionDenied,
	broker.ReasonSubjectTokenInvalid:  codes.InvalidArgument,
	broker.ReasonSubjectTokenExpired:  codes.InvalidArgument,
	broker.ReasonSubjectTokenAudience: codes.InvalidArgument,
	broker.ReasonSubjectUnmapped:      codes.PermissionDenied,

	broker.ReasonTokenExchangeRejected: codes.PermissionDenied, // refined by upstream error below
	broker.ReasonJWTBearerRejected:     codes.PermissionDenied,
	broker.ReasonUpstreamUnavailable:   codes.Unavailable,
	broker.ReasonUpstreamBadResponse:   codes.Unavailable,
	broker.ReasonKeysUnavailable:       codes.Unavailable,
	broker.ReasonUpstreamCircuitOpen:   codes.Unavailable,
	broker.ReasonKeysRefreshing:        codes.Unavailable,

	// A grant the target would refuse: the domains' configurations disagree.
	broker.ReasonAssertionMalformed:         codes.FailedPrecondition,
	broker.ReasonAssertionAlgNotAllowed:     codes.FailedPrecondition,
	broker.ReasonAssertionTypeInvalid:       codes.FailedPrecondition,
	broker.ReasonAssertionKeyUnknown:        codes.FailedPrecondition,
	broker.ReasonAssertionSignatureInvalid:  codes.FailedPrecondition,
	broker.ReasonAssertionIssuerUntrusted:   codes.FailedPrecondition,
	broker.ReasonAssertionAudienceMultiple:  codes.FailedPrecondition,
	broker.ReasonAssertionAudienceInvalid:   codes.FailedPrecondition,
	broker.ReasonAssertionExpirationMissing: codes.FailedPrecondition,
	broker.ReasonAssertionExpired:           codes.FailedPrecondition,
	broker.ReasonAssertionNotYetValid:       codes.FailedPrecondition,
	broker.ReasonAssertionLifetimeTooLong:   codes.FailedPrecondition,
	broker.ReasonAssertionJTIMissing:        codes.FailedPrecondition,
	broker.ReasonAssertionSubjectMissing:    codes.FailedPrecondition,
	broker.ReasonAssertionIssuedAtMissing:   codes.FailedPrecondition,
	broker.ReasonAssertionClientIDMismatch:  codes.FailedPrecondition,
	broker.ReasonAssertionReplayed:          codes.PermissionDenied,
	broker.ReasonAssertionIssuedTokenType:   codes.FailedPrecondition,
	broker.ReasonAssertionScopeWider:        codes.FailedPrecondition,
	broker.ReasonAssertionResourceWider:     codes.FailedPrecondition,
	broker.ReasonAssertionCnfMismatch:       codes.FailedPrecondition,

	broker.ReasonDPoPProofInvalid:   codes.InvalidArgument,
	broker.ReasonDPoPProofReplayed:  codes.InvalidArgument,
	broker.ReasonDPoPNonceRequired:  codes.FailedPrecondition, // metadata dpop_nonce: make a new proof with it
	broker.ReasonDPoPBindingMissing: codes.FailedPrecondition,

	broker.ReasonStoreUnavailable: codes.Unavailable,
	broker.ReasonInternal:         codes.Internal,

	broker.ReasonRequestDeadlineExceeded: codes.DeadlineExceeded,
	broker.ReasonRequestCancelled:        codes.Canceled,

	broker.ReasonAWSProviderMismatch: codes.FailedPrecondition,
	broker.ReasonAWSAudienceInvalid:  codes.FailedPrecondition,
	broker.ReasonAWSSubjectMissing:   codes.FailedPrecondition,
	broker.ReasonAWSRejected:         codes.PermissionDenied,

	broker.ReasonAzureIssuerMismatch:  codes.FailedPrecondition,
	broker.ReasonAzureSubjectMismatch: codes.FailedPrecondition,
	broker.ReasonAzureAudienceInvalid: codes.FailedPrecondition,
	broker.ReasonAzureClaimTooLong:    codes.FailedPrecondition,
	broker.ReasonAzureRejected:        codes.PermissionDenied,

	broker.ReasonGCPKeyIDMissing:         codes.FailedPrecondition,
	broker.ReasonGCPAlgNotAllowed:        codes.FailedPrecondition,
	broker.ReasonGCPLifetimeTooLong:      codes.FailedPrecondition,
	broker.ReasonGCPAudienceInvalid:      codes.FailedPrecondition,
	broker.ReasonGCPSubjectInvalid:       codes.FailedPrecondition,
	broker.ReasonGCPRejected:             codes.PermissionDenied,
	broker.ReasonGCPImpersonationRefused: codes.PermissionDenied,
}

// Reasons of the server's edge: callers refused before any service saw
// their request (authentication, rate limit, REST routing, body and query
// checks), and the audit service's. Their strings come from the API's Reason
// enum (proto/chainbroker/v1/reason.proto), without its REASON_ prefix.
var (
	reasonUnauthenticated      = apireason.String(pb.Reason_REASON_UNAUTHENTICATED)        // no acceptable credentials (401)
	reasonRateLimited          = apireason.String(pb.Reason_REASON_RATE_LIMITED)           // the caller's rate limit (429)
	reasonAuditNotAllowed      = apireason.String(pb.Reason_REASON_AUDIT_NOT_ALLOWED)      // the caller lacks the audit role (403)
	reasonNotFound             = apireason.String(pb.Reason_REASON_NOT_FOUND)              // no such audit event, or no such REST path (404)
	reasonMethodNotAllowed     = apireason.String(pb.Reason_REASON_METHOD_NOT_ALLOWED)     // the REST path exists with other methods: Allow lists them (405)
	reasonRequestTooLarge      = apireason.String(pb.Reason_REASON_REQUEST_TOO_LARGE)      // a REST body over MaxRequestBytes (413)
	reasonMediaTypeUnsupported = apireason.String(pb.Reason_REASON_MEDIA_TYPE_UNSUPPORTED) // a REST body that is not JSON (415)
	reasonServerUnavailable    = apireason.String(pb.Reason_REASON_SERVER_UNAVAILABLE)     // the server is shutting down (503)
)

// edgeReasons lists the reasons the server's edge returns besides the
// broker's, for documentation and exhaustive tests: with broker.Reasons(),
// every value of the Reason enum (TestReasonEnum).
func edgeReasons() []string {
	return []string{reasonUnauthenticated, reasonRateLimited, reasonAuditNotAllowed,
		reasonNotFound, reasonMethodNotAllowed, reasonRequestTooLarge, reasonMediaTypeUnsupported, reasonServerUnavailable}
}

// MaxDescriptionBytes bounds an authorization server's error_description
// wherever the broker passes it on (ErrorInfo metadata, messages, logs and
// the audit trail), ellipsis included.
const MaxDescriptionBytes = broker.MaxUpstreamDescriptionBytes

// upstreamCodes refines the code of an authorization server's refusal by its
// OAuth error: the caller's request, the broker's configuration, or a refusal.
var upstreamCodes = map[string]codes.Code{
	"invalid_scope":           codes.InvalidArgument,
	"invalid_target":          codes.InvalidArgument,
	"invalid_request":         codes.InvalidArgument,
	"invalid_client":          codes.FailedPrecondition,
	"unauthorized_client":     codes.FailedPrecondition,
	"unsupported_grant_type":  codes.FailedPrecondition,
	"invalid_grant":           codes.PermissionDenied,
	"access_denied":           codes.PermissionDenied,
	"temporarily_unavailable": codes.Unavailable,
}

// toStatus turns any error of a service into a gRPC status error, in one
// place: broker errors keep their reason and safe message, with an ErrorInfo
// (domain chainbroker) carrying the hop, the field and the upstream OAuth
// error; anything unknown is logged once and becomes a generic INTERNAL.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		code   codes.Code
		msg    string
		reason string
		meta   = map[string]string{}
	)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), errServerStopping) && (errors.Is(err, context.Canceled) || endedReason(err)) {
		// The drain timeout ended the call (REST), not its caller: a
		// retryable refusal, another replica can take it.
		return infoStatus(status.New(codes.Unavailable, "the server is shutting down and ended the call before it completed; retry"),
			reasonServerUnavailable, nil).Err()
	}
	if r, ok := callEnded(ctx, err); ok {
		// The caller's deadline or cancellation, whatever failed because of
		// it (an upstream call, the store): not the domain's fault.
		ended := &broker.Error{Reason: r, Message: callEndedMessage(r), Err: err}
		if e, ok := broker.AsError(err); ok {
			ended.Hop = e.Hop
		}
		err = ended
	}
	if e, ok := broker.AsError(err); ok {
		reason, msg = string(e.Reason), e.Message
		code, ok = reasonCodes[e.Reason]
		if !ok {
			code = codes.Internal
		}
		if e.Field != "" {
			meta["field"] = e.Field
		}
		if e.Hop != "" {
			meta["hop"] = e.Hop
		}
		if e.DPoPNonce != "" {
			meta["dpop_nonce"] = e.DPoPNonce // bounded by the broker
		}
		if e.Upstream != nil {
			meta["error"] = broker.BoundText(e.Upstream.Code, broker.MaxUpstreamCodeBytes)
			if e.Upstream.Description != "" {
				meta["error_description"] = broker.BoundText(e.Upstream.Description, MaxDescriptionBytes)
			}
			if e.UpstreamCause != "" {
				meta["upstream_cause"] = e.UpstreamCause
			}
			// The upstream error refines the code of a refusal only: an
			// outage (UPSTREAM_UNAVAILABLE) may carry one too, e.g. a 429
			// with invalid_grant, and stays UNAVAILABLE.
			if c, ok := upstreamCodes[e.Upstream.Code]; ok && (e.Reason == broker.ReasonTokenExchangeRejected || e.Reason == broker.ReasonJWTBearerRejected) {
				code = c
			}
		}
		if code == codes.Internal {
			log.ErrorContext(ctx, "internal error", "reason", reason, "error", err)
			msg = "internal error"
		}
	} else {
		switch {
		case errors.Is(err, store.ErrNotFound):
			code, reason, msg = codes.NotFound, reasonNotFound, "not found"
		case errors.Is(err, store.ErrInvalidArgument):
			// The store's text names the backend: the caller gets a generic
			// message (the services name the field before they get here).
			code, reason, msg = codes.InvalidArgument, string(broker.ReasonRequestInvalid), "invalid argument"
		case errors.Is(err, store.ErrUnavailable):
			code, reason, msg = codes.Unavailable, string(broker.ReasonStoreUnavailable), "the store is unavailable"
			log.WarnContext(ctx, "store unavailable", "error", err)
		case errors.Is(err, context.DeadlineExceeded):
			code, reason = codes.DeadlineExceeded, string(broker.ReasonRequestDeadlineExceeded)
			msg = callEndedMessage(broker.ReasonRequestDeadlineExceeded)
		case errors.Is(err, context.Canceled):
			code, reason = codes.Canceled, string(broker.ReasonRequestCancelled)
			msg = callEndedMessage(broker.ReasonRequestCancelled)
		default:
			log.ErrorContext(ctx, "internal error", "error", err)
			code, reason, msg = codes.Internal, string(broker.ReasonInternal), "internal error"
		}
	}
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}}
	if e, ok := broker.AsError(err); ok && e.RetryAfter > 0 {
		// REST turns it into Retry-After (retryAfterErrorHandler).
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	if withInfo, derr := st.WithDetails(details...); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// errServerStopping is the cause with which the drain timeout ends the REST
// calls still in flight.
var errServerStopping = errors.New("server: the drain timeout expired")

// endedReason reports whether err is the broker's report of its call's
// context ending.
func endedReason(err error) bool {
	e, ok := broker.AsError(err)
	return ok && (e.Reason == broker.ReasonRequestDeadlineExceeded || e.Reason == broker.ReasonRequestCancelled)
}

// callEnded reports whether err is the consequence of the call's own context
// ending (the caller's deadline or cancellation), and the reason to give.
func callEnded(ctx context.Context, err error) (broker.Reason, bool) {
	if endedReason(err) {
		return "", false // already said
	}
	switch cerr := ctx.Err(); {
	case cerr == nil:
		return "", false
	case !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled):
		return "", false // a failure of its own that happened as the deadline expired
	default:
		return broker.EndedReason(cerr), true
	}
}

func callEndedMessage(r broker.Reason) string {
	if r == broker.ReasonRequestCancelled {
		return "the call was cancelled before the broker answered"
	}
	return "the call's deadline expired before the broker could answer"
}

// invalidArgument is an INVALID_ARGUMENT naming a request field.
func invalidArgument(field, msg string) error {
	return toStatus(context.Background(), slog.New(slog.DiscardHandler),
		&broker.Error{Reason: broker.ReasonRequestInvalid, Field: field, Message: field + ": " + msg})
}

// gatewayStatus maps an error the REST gateway produced itself (the request
// never reached a service, or the gateway stopped waiting for it) to a
// status with its ErrorInfo, and the HTTP status to answer (0: the code's).
func gatewayStatus(st *status.Status) (*status.Status, int) {
	switch st.Code() {
	case codes.DeadlineExceeded:
		r := broker.ReasonRequestDeadlineExceeded
		return infoStatus(status.New(codes.DeadlineExceeded, callEndedMessage(r)), string(r), nil), 0
	case codes.Canceled:
		r := broker.ReasonRequestCancelled
		return infoStatus(status.New(codes.Canceled, callEndedMessage(r)), string(r), nil), 0
	case codes.InvalidArgument:
		field, msg := describeDecodeError(st.Message())
		return infoStatus(status.New(codes.InvalidArgument, msg), string(broker.ReasonRequestInvalid), fieldMeta(field)), 0
	default:
		return infoStatus(status.New(codes.Internal, "internal error"), string(broker.ReasonInternal), nil), 0
	}
}
