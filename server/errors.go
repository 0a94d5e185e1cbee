package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/broker"
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

	broker.ReasonStoreUnavailable: codes.Unavailable,
	broker.ReasonInternal:         codes.Internal,
}

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
		if e.Upstream != nil {
			meta["error"] = e.Upstream.Code
			if e.Upstream.Description != "" {
				meta["error_description"] = e.Upstream.Description
			}
			if c, ok := upstreamCodes[e.Upstream.Code]; ok {
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
			code, reason, msg = codes.NotFound, "NOT_FOUND", "not found"
		case errors.Is(err, store.ErrInvalidArgument):
			code, reason, msg = codes.InvalidArgument, string(broker.ReasonRequestInvalid), err.Error()
		case errors.Is(err, store.ErrUnavailable):
			code, reason, msg = codes.Unavailable, string(broker.ReasonStoreUnavailable), "the store is unavailable"
			log.WarnContext(ctx, "store unavailable", "error", err)
		case errors.Is(err, context.DeadlineExceeded):
			code, reason, msg = codes.DeadlineExceeded, "DEADLINE_EXCEEDED", "deadline exceeded"
		case errors.Is(err, context.Canceled):
			code, reason, msg = codes.Canceled, "CANCELED", "canceled"
		default:
			log.ErrorContext(ctx, "internal error", "error", err)
			code, reason, msg = codes.Internal, string(broker.ReasonInternal), "internal error"
		}
	}
	st := status.New(code, msg)
	if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); derr == nil {
		st = withInfo
	}
	return st.Err()
}

// invalidArgument is an INVALID_ARGUMENT naming a request field.
func invalidArgument(field, msg string) error {
	return toStatus(context.Background(), slog.New(slog.DiscardHandler),
		&broker.Error{Reason: broker.ReasonRequestInvalid, Field: field, Message: field + ": " + msg})
}
