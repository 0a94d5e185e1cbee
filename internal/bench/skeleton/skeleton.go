// Package skeleton is chainbench's skeleton broker: the least a broker built
// like chainbroker must do per chain (see skeleton), run as a child process
// (Run) and measured as the broker is, as the design's floor.
package skeleton

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/proc"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// Mode is the child serving the skeleton broker.
const Mode = "skeleton"

// skeleton is the least a broker built like this one must do per chain, and
// nothing more: a gRPC ChainService whose Chain makes the token exchange at
// A, verifies the grant's signature with A's JWKS (the token package, as
// the floor does), marks its jti in Redis (SET NX), makes the jwt-bearer
// call at B, appends a fixed audit record (XADD) and answers. No policy, no
// input or claims checks beyond the signature, no metrics, logs, traces,
// retries, breaker or cache, and a plain go-redis client. Its CPU per chain
// is the floor of the design (one gRPC call in, two HTTP calls out, one
// verification, two acknowledged Redis writes) on the machine that runs it.
//
// With cache set it is also the least a token cache built this way does per
// hit: the key is the SHA-256 of the target and the subject token, looked up
// in process memory (no Redis read, no decryption); a hit appends a fixed
// audit record (XADD, acknowledged before the answer, as the broker's is)
// and answers with the remaining lifetime. A miss chains as above and keeps
// B's token for the sandbox's token lifetime, less a margin.
type skeleton struct {
	pb.UnimplementedChainServiceServer
	hops  *load.Baseline
	keys  *token.Verifier
	redis *goredis.Client

	cache  bool
	mu     sync.RWMutex
	tokens map[[sha256.Size]byte]skeletonToken
}

type skeletonToken struct {
	access string
	exp    time.Time
}

// skeletonCacheFor is how long the skeleton keeps B's token: the sandbox's
// token lifetime less a margin, as a cache honouring exp would.
const skeletonCacheFor = sandbox.DefaultTokenLifetime - 30*time.Second

func (s *skeleton) Chain(ctx context.Context, req *pb.ChainRequest) (*pb.ChainResponse, error) {
	if !s.cache {
		return s.chain(ctx, req)
	}
	key := sha256.Sum256([]byte(req.GetTargetDomain() + "\x00" + req.GetSubjectToken()))
	s.mu.RLock()
	hit, ok := s.tokens[key]
	s.mu.RUnlock()
	if left := time.Until(hit.exp); ok && left > 0 {
		if err := s.audit(ctx, "CACHE_HIT"); err != nil {
			return nil, err
		}
		return &pb.ChainResponse{AccessToken: hit.access, TokenType: "Bearer", ExpiresIn: int32(left / time.Second)}, nil
	}
	resp, err := s.chain(ctx, req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.tokens[key] = skeletonToken{access: resp.GetAccessToken(), exp: time.Now().Add(skeletonCacheFor)}
	s.mu.Unlock()
	return resp, nil
}

// audit appends the skeleton's fixed audit record.
func (s *skeleton) audit(ctx context.Context, outcome string) error {
	if err := s.redis.XAdd(ctx, &goredis.XAddArgs{Stream: "skeleton:audit", MaxLen: 100_000, Approx: true,
		Values: []any{"e", `{"outcome":"` + outcome + `"}`}}).Err(); err != nil {
		return status.Error(codes.Unavailable, "audit: "+err.Error())
	}
	return nil
}

// chain is the whole chain: two hops, one verification, two Redis writes.
func (s *skeleton) chain(ctx context.Context, req *pb.ChainRequest) (*pb.ChainResponse, error) {
	assertion, err := s.hops.Exchange(ctx, req.GetSubjectToken())
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
	access, err := s.hops.JWTBearer(ctx, assertion)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if err := s.audit(ctx, "OK"); err != nil {
		return nil, err
	}
	return &pb.ChainResponse{AccessToken: access, TokenType: "Bearer"}, nil
}

// Info is what the skeleton child prints on its first stdout line.
type Info struct{ GRPC string }

// Run serves the skeleton until told to stop.
func Run(args []string) error {
	fs := flag.NewFlagSet(Mode, flag.ContinueOnError)
	aToken := fs.String("a-token", "", "domain A's token endpoint")
	aJWKS := fs.String("a-jwks", "", "domain A's JWKS URL")
	bToken := fs.String("b-token", "", "domain B's token endpoint")
	audience := fs.String("audience", "", "the audience asked of A (B's issuer)")
	redisAddr := fs.String("redis", "", "Redis address")
	conc := fs.Int("max-conc", 256, "concurrency to size the connection pools for")
	cache := fs.Bool("cache", false, "keep B's tokens in memory and answer repeated chains from them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *aToken == "" || *aJWKS == "" || *bToken == "" || *redisAddr == "" {
		return errors.New("skeleton: -a-token, -a-jwks, -b-token and -redis are required")
	}
	ctx, cancel := proc.ChildContext()
	defer cancel()
	rdb := goredis.NewClient(&goredis.Options{Addr: *redisAddr, MaxRetries: -1, Protocol: 2, PoolSize: *conc})
	defer rdb.Close()
	s := &skeleton{
		hops: &load.Baseline{Client: load.NewHTTPClient(*conc), AToken: *aToken, BToken: *bToken, Audience: *audience,
			ClientID: sandbox.BrokerClientID, ASecret: sandbox.BrokerSecretA, BSecret: sandbox.BrokerSecretB},
		keys:   token.NewRemoteVerifier(token.RemoteKeys{URL: *aJWKS}, []string{"RS256"}),
		redis:  rdb,
		cache:  *cache,
		tokens: map[[sha256.Size]byte]skeletonToken{},
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pb.RegisterChainServiceServer(srv, s)
	if err := json.NewEncoder(os.Stdout).Encode(Info{GRPC: lis.Addr().String()}); err != nil {
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
