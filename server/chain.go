package server

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/store"
)

// chainService implements pb.ChainServiceServer over a broker.
type chainService struct {
	pb.UnimplementedChainServiceServer
	brokers interface {
		brokerFor(context.Context) *broker.Broker
	} // the call's broker (*Server: the configuration it started with)
	log *slog.Logger
}

func (s *chainService) Chain(ctx context.Context, in *pb.ChainRequest) (*pb.ChainResponse, error) {
	ctx, cancel := answerBefore(ctx)
	defer cancel()
	res, err := s.brokers.brokerFor(ctx).Chain(ctx, broker.Request{
		RequestID:        RequestIDFromContext(ctx),
		Caller:           CallerFromContext(ctx),
		CallerMethod:     callerMethodFromContext(ctx),
		SubjectToken:     in.GetSubjectToken(),
		SubjectTokenType: in.GetSubjectTokenType(),
		SourceDomain:     in.GetSourceDomain(),
		TargetDomain:     in.GetTargetDomain(),
		Scopes:           in.GetScope(),
		Resources:        in.GetResource(),
		Audience:         in.GetAudience(),
		ActorToken:       in.GetActorToken(),
		ActorTokenType:   in.GetActorTokenType(),
		DPoPProof:        in.GetDpopProof(),
		SourceDPoPProof:  in.GetSourceDpopProof(),
	})
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	expires := res.ExpiresIn
	if expires < 0 || expires > 1<<31-1 {
		expires = 0 // nonsense from upstream: "not said" rather than a lie
	}
	out := &pb.ChainResponse{
		AccessToken:     res.AccessToken,
		IssuedTokenType: res.IssuedTokenType,
		TokenType:       res.TokenType,
		ExpiresIn:       int32(expires),
		Scope:           res.Scope,
		AuditId:         res.AuditID,
		Hops:            hopsToProto(res.Hops),
		Profile:         res.Profile.String(),
	}
	if a := res.AWSCredentials; a != nil {
		out.AwsCredentials = &pb.AwsCredentials{AccessKeyId: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey,
			SessionToken: a.SessionToken, Expiration: timestamppb.New(a.Expiration)}
	}
	return out, nil
}

func (s *chainService) ListDomains(ctx context.Context, _ *pb.ListDomainsRequest) (*pb.ListDomainsResponse, error) {
	out := &pb.ListDomainsResponse{}
	caller, b := CallerFromContext(ctx), s.brokers.brokerFor(ctx)
	for _, d := range b.DomainsFor(caller) {
		out.Domains = append(out.Domains, &pb.Domain{
			Name:             d.Name,
			Issuer:           d.Issuer,
			TokenEndpoint:    d.TokenEndpoint,
			JwksUri:          d.JWKSURI,
			ClientId:         d.Creds.ClientID,
			ClientAuthMethod: string(d.Creds.Method),
			Kind:             d.Kind.String(),
		})
	}
	for _, c := range b.ChainsFor(caller) {
		out.Chains = append(out.Chains, &pb.Chain{
			SourceDomain:  c.Source,
			TargetDomain:  c.Target,
			Audience:      c.Audience,
			DefaultScopes: c.DefaultScopes,
			Mode:          string(c.Mode),
			Profile:       c.Profile.String(),
		})
	}
	return out, nil
}

// Headroom kept before a caller's deadline: a tenth of the time left, at
// most maxHeadroom.
const maxHeadroom = 500 * time.Millisecond

// answerBefore shortens the call's deadline by a headroom, so that when the
// work runs out of time the broker still answers — REQUEST_DEADLINE_EXCEEDED
// with its ErrorInfo, the failure audited — before the caller's own deadline
// fires: a gRPC client past its deadline only sees its library's bare
// DEADLINE_EXCEEDED. A call without a deadline keeps its context as is
// (there is nothing to shorten; the transport cancels it when the call
// ends).
func answerBefore(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, dl.Add(-min(time.Until(dl)/10, maxHeadroom)))
}

func hopsToProto(hops []store.Hop) []*pb.Hop {
	out := make([]*pb.Hop, 0, len(hops))
	for _, h := range hops {
		out = append(out, &pb.Hop{
			Domain:           h.Domain,
			Endpoint:         h.Endpoint,
			GrantType:        h.GrantType,
			Duration:         durationpb.New(h.Duration),
			AssertionJtiHash: h.AssertionJTIHash,
		})
	}
	return out
}
