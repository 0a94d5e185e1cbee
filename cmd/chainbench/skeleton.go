package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// modeSkeleton is the child serving the skeleton broker.
const modeSkeleton = "skeleton"

// skeleton is the least a broker built like this one must do per chain, and
// nothing more: a gRPC ChainService whose Chain makes the token exchange at
// A, verifies the grant's signature with A's JWKS (the token package, as
// the floor does), marks its jti in Redis (SET NX), makes the jwt-bearer
// call at B, appends a fixed audit record (XADD) and answers. No policy, no
// input or claims checks beyond the signature, no metrics, logs, traces,
// retries, breaker or cache, and a plain go-redis client. Its CPU per chain
// is the floor of the design (one gRPC call in, two HTTP calls out, one
// verification, two acknowledged Redis writes) on the machine that runs it.
type skeleton struct {
	pb.UnimplementedChainServiceServer
	hops  *baselineTarget
	keys  *token.Verifier
	redis *goredis.Client
}

func (s *skeleton) Chain(ctx context.Context, req *pb.ChainRequest) (*pb.ChainResponse, error) {
	assertion, err := s.hops.exchange(ctx, req.GetSubjectToken())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	tok, err := s.keys.Verify(ctx, assertion)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	if err := s.redis.SetArgs(ctx, "skeleton:replay:"+tok.Claims.JTI, "1", goredis.SetArgs{Mode: "NX", TTL: 10 * time.Minute}).Err(); err != nil {
		return nil, status.Error(codes.FailedPrecondition, "replay mark: "+err.Error())
	}
	access, err := s.hops.jwtBearer(ctx, assertion)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if err := s.redis.XAdd(ctx, &goredis.XAddArgs{Stream: "skeleton:audit", MaxLen: 100_000, Approx: true,
		Values: []any{"e", `{"outcome":1,"subject":"` + tok.Claims.Subject + `"}`}}).Err(); err != nil {
		return nil, status.Error(codes.Unavailable, "audit: "+err.Error())
	}
	return &pb.ChainResponse{AccessToken: access, TokenType: "Bearer"}, nil
}

// skeletonInfo is what the skeleton child prints on its first stdout line.
type skeletonInfo struct{ GRPC string }

// runSkeleton serves the skeleton until told to stop.
func runSkeleton(args []string) error {
	fs := flag.NewFlagSet(modeSkeleton, flag.ContinueOnError)
	aToken := fs.String("a-token", "", "domain A's token endpoint")
	aJWKS := fs.String("a-jwks", "", "domain A's JWKS URL")
	bToken := fs.String("b-token", "", "domain B's token endpoint")
	audience := fs.String("audience", "", "the audience asked of A (B's issuer)")
	redisAddr := fs.String("redis", "", "Redis address")
	conc := fs.Int("max-conc", 256, "concurrency to size the connection pools for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *aToken == "" || *aJWKS == "" || *bToken == "" || *redisAddr == "" {
		return errors.New("skeleton: -a-token, -a-jwks, -b-token and -redis are required")
	}
	ctx, cancel := childContext()
	defer cancel()
	rdb := goredis.NewClient(&goredis.Options{Addr: *redisAddr, MaxRetries: -1, Protocol: 2, PoolSize: *conc})
	defer rdb.Close()
	s := &skeleton{
		hops: &baselineTarget{client: newHTTPClient(*conc), aToken: *aToken, bToken: *bToken, audience: *audience,
			clientID: sandbox.BrokerClientID, aSecret: sandbox.BrokerSecretA, bSecret: sandbox.BrokerSecretB},
		keys:  token.NewRemoteVerifier(token.RemoteKeys{URL: *aJWKS}, []string{"RS256"}),
		redis: rdb,
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pb.RegisterChainServiceServer(srv, s)
	if err := json.NewEncoder(os.Stdout).Encode(skeletonInfo{GRPC: lis.Addr().String()}); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("skeleton: %w", err)
	}
	return nil
}
