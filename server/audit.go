package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/store"
)

// auditService implements pb.AuditServiceServer over an audit log.
type auditService struct {
	pb.UnimplementedAuditServiceServer
	audit   store.AuditLog
	brokers interface {
		brokerFor(context.Context) *broker.Broker
	} // policy: who holds the audit role
	log *slog.Logger
}

// authorize admits callers holding the audit role.
func (s *auditService) authorize(ctx context.Context) error {
	if caller := CallerFromContext(ctx); !s.brokers.brokerFor(ctx).HasRole(caller, broker.RoleAudit) {
		return errorStatus(codes.PermissionDenied, reasonAuditNotAllowed,
			"caller "+strconv.Quote(caller)+" does not hold the audit role", nil)
	}
	return nil
}

const maxFilterLen = 1024

func (s *auditService) ListAuditEvents(ctx context.Context, in *pb.ListAuditEventsRequest) (*pb.ListAuditEventsResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	f := store.Filter{
		Subject:      in.GetSubject(),
		Caller:       in.GetCaller(),
		SourceDomain: in.GetSourceDomain(),
		TargetDomain: in.GetTargetDomain(),
		Outcome:      store.Outcome(in.GetOutcome()),
	}
	for name, v := range map[string]string{"subject": f.Subject, "caller": f.Caller, "source_domain": f.SourceDomain,
		"target_domain": f.TargetDomain, "page_token": in.GetPageToken()} {
		if len(v) > maxFilterLen {
			return nil, invalidArgument(name, "too long")
		}
	}
	if _, ok := pb.Outcome_name[int32(in.GetOutcome())]; !ok {
		return nil, invalidArgument("outcome", fmt.Sprintf("unknown outcome %d; valid: OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_CACHE_HIT (REST also: success, failure, cache_hit)", in.GetOutcome()))
	}
	if in.GetPageSize() < 0 {
		return nil, invalidArgument("page_size", "must not be negative")
	}
	if in.GetPageSize() > store.MaxPageSize {
		return nil, invalidArgument("page_size", fmt.Sprintf("%d is over the maximum of %d", in.GetPageSize(), store.MaxPageSize))
	}
	if ts := in.GetStartTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, invalidArgument("start_time", err.Error())
		}
		f.Start = ts.AsTime()
	}
	if ts := in.GetEndTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, invalidArgument("end_time", err.Error())
		}
		f.End = ts.AsTime()
	}
	ctx, cancel := answerBefore(ctx)
	defer cancel()
	events, next, err := s.audit.List(ctx, f, int(in.GetPageSize()), in.GetPageToken())
	if errors.Is(err, store.ErrInvalidArgument) { // the filter and size are checked above: the token is at fault
		return nil, invalidArgument("page_token", "not a page token of this audit trail; list again without it")
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	out := &pb.ListAuditEventsResponse{NextPageToken: next, Events: make([]*pb.AuditEvent, 0, len(events))}
	for i := range events {
		out.Events = append(out.Events, eventToProto(&events[i]))
	}
	return out, nil
}

func (s *auditService) GetAuditEvent(ctx context.Context, in *pb.GetAuditEventRequest) (*pb.GetAuditEventResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	if in.GetId() == "" {
		return nil, invalidArgument("id", "required")
	}
	if len(in.GetId()) > maxFilterLen {
		return nil, invalidArgument("id", "too long")
	}
	ctx, cancel := answerBefore(ctx)
	defer cancel()
	e, err := s.audit.Get(ctx, in.GetId())
	if errors.Is(err, store.ErrInvalidArgument) {
		return nil, invalidArgument("id", "not an audit event id")
	}
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &pb.GetAuditEventResponse{Event: eventToProto(&e)}, nil
}

func eventToProto(e *store.Event) *pb.AuditEvent {
	return &pb.AuditEvent{
		Id:                       e.ID,
		Time:                     timestamppb.New(e.Time),
		Caller:                   e.Caller,
		Subject:                  e.Subject,
		SourceDomain:             e.SourceDomain,
		TargetDomain:             e.TargetDomain,
		Scopes:                   e.Scopes,
		Outcome:                  pb.Outcome(e.Outcome),
		Reason:                   e.Reason,
		UpstreamError:            e.UpstreamError,
		UpstreamErrorDescription: e.UpstreamErrorDescription,
		Hops:                     hopsToProto(e.Hops),
		SubjectTokenHash:         e.SubjectTokenHash,
		AssertionJtiHash:         e.AssertionJTIHash,
		AssertionIssuer:          e.AssertionIssuer,
		AssertionAudience:        e.AssertionAudience,
		Message:                  e.Message,
		Mode:                     e.Mode,
		MappedSubject:            e.MappedSubject,
		TranscribedClaims:        e.TranscribedClaims,
		SubjectVerified:          e.SubjectVerified,
		UnverifiedSubject:        e.UnverifiedSubject,
		Actor:                    e.Actor,
		ActorTokenHash:           e.ActorTokenHash,
		Profile:                  e.Profile,
		DpopJkt:                  e.DPoPJKT,
		AwsAccessKeyIdHash:       e.AWSAccessKeyIDHash,
	}
}
