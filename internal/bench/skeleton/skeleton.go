// Package skeleton is chainbench's skeleton broker: the least a broker built
// like chainbroker must do per chain (see skeleton), run as a child process
// (Run) and measured as the broker is, as the design's floor.
package skeleton

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/chainbroker/chainbroker/auth"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/proc"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/store"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
	"github.com/chainbroker/chainbroker/token"
)

// Mode is the child serving the skeleton broker.
const Mode = "skeleton"

// skeleton is the least a broker built like this one must do per chain, and
// nothing more: a gRPC ChainService whose Chain makes the token exchange at
// A, verifies the grant's signature with A's JWKS (the token package, as
// the floor does), marks its jti in Redis (SET NX), makes the jwt-bearer
// call at B, appends the chain's audit event and answers as the design's
// API answers (B's token with its type, lifetime and scope, the audit id and
// the hops taken; a hit, the same without hops). No policy, no
// input or claims checks beyond the signature, no metrics, logs, traces,
// retries, breaker or cache. Its CPU per chain is the floor of the design
// (one gRPC call in, two HTTP calls out, one verification, two acknowledged
// Redis writes) on the machine that runs it.
//
// The audit event is, by default (AuditIndexed), what the design records
// for a chain: a store.Event with the chain's fields (caller, subject,
// domains, the two hops, the hashes of the subject token and the grant's
// jti, the grant's issuer and audience, mode and profile), written with the
// store package's Redis backend, so in the stream and its indexes (subject,
// caller, source, target, outcome) in one script, and the replay mark with
// the same store's Mark (the design's key layout). With AuditFixed it is
// the floor as first defined, before the audit trail had indexes: a fixed
// 16-byte record (XADD) and a plain SET NX, with a plain go-redis client.
//
// With cache set it is also the least a token cache built this way does per
// hit: the key is the SHA-256 of the target and the subject token, looked up
// in process memory (no Redis read, no decryption); a hit appends its audit
// event (the hit's: outcome cache_hit, no hops; acknowledged before the
// answer, as the broker's is) and answers with the remaining lifetime. A
// miss chains as above and keeps B's token for the sandbox's token
// lifetime, less a margin.
type skeleton struct {
	pb.UnimplementedChainServiceServer
	hops  *load.Baseline
	keys  *token.Verifier
	redis *goredis.Client
	store *redisstore.Store // AuditIndexed: the replay mark and the audit event; nil with AuditFixed

	// What the broker's events say of these chains (chainbench's broker
	// configuration: anonymous callers on loopback, source domain A).
	caller, source string

	cache  bool
	mu     sync.RWMutex
	tokens map[[sha256.Size]byte]skeletonToken
}

type skeletonToken struct {
	access, issuedType, tokenType, scope string // B's answer, as the broker's cache keeps it
	exp                                  time.Time
	subject                              string // the grant's sub, for the hits' audit events
}

// profile is the answer's profile, as the broker fills it for chainbench's
// chains (broker.ProfileJWTGrant: spelled here, the floor does not import
// the broker).
const profile = "jwt_grant"

// The skeleton's audit modes (-audit).
const (
	// AuditIndexed: the design's audit event through the store (the default).
	AuditIndexed = "indexed"
	// AuditFixed: a fixed record with XADD and a plain SET NX, the floor as
	// first defined.
	AuditFixed = "fixed"
)

// skeletonCacheFor is how long the skeleton keeps B's token: the sandbox's
// token lifetime less a margin, as a cache honouring exp would.
const skeletonCacheFor = sandbox.DefaultTokenLifetime - 30*time.Second

func (s *skeleton) Chain(ctx context.Context, req *pb.ChainRequest) (*pb.ChainResponse, error) {
	if !s.cache {
		resp, _, err := s.chain(ctx, req)
		return resp, err
	}
	key := sha256.Sum256([]byte(req.GetTargetDomain() + "\x00" + req.GetSubjectToken()))
	s.mu.RLock()
	hit, ok := s.tokens[key]
	s.mu.RUnlock()
	if left := time.Until(hit.exp); ok && left > 0 {
		ev := s.event(req, store.OutcomeCacheHit, hit.subject)
		id, err := s.audit(ctx, &ev)
		if err != nil {
			return nil, err
		}
		return &pb.ChainResponse{AccessToken: hit.access, IssuedTokenType: hit.issuedType, TokenType: hit.tokenType,
			ExpiresIn: int32(left / time.Second), Scope: hit.scope, AuditId: id, Hops: []*pb.Hop{}, Profile: profile}, nil
	}
	resp, sub, err := s.chain(ctx, req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.tokens[key] = skeletonToken{access: resp.GetAccessToken(), issuedType: resp.GetIssuedTokenType(), tokenType: resp.GetTokenType(),
		scope: resp.GetScope(), exp: time.Now().Add(skeletonCacheFor), subject: sub}
	s.mu.Unlock()
	return resp, nil
}

// event is the audit event of a chain of req with this outcome and subject,
// its fields as the broker fills them for chainbench's chains.
func (s *skeleton) event(req *pb.ChainRequest, outcome store.Outcome, subject string) store.Event {
	sum := sha256.Sum256([]byte(req.GetSubjectToken()))
	return store.Event{
		Time: time.Now(), Caller: s.caller, Subject: subject, SubjectVerified: subject != "",
		SourceDomain: s.source, TargetDomain: req.GetTargetDomain(), Outcome: outcome,
		SubjectTokenHash: hex.EncodeToString(sum[:]), Mode: "token_exchange", Profile: "jwt_grant",
	}
}

// audit appends ev (AuditIndexed) or the fixed record (AuditFixed) and
// returns its id.
func (s *skeleton) audit(ctx context.Context, ev *store.Event) (string, error) {
	var id string
	var err error
	if s.store != nil {
		id, err = s.store.Append(ctx, ev)
	} else {
		id, err = s.redis.XAdd(ctx, &goredis.XAddArgs{Stream: "skeleton:audit", MaxLen: 100_000, Approx: true,
			Values: []any{"e", `{"outcome":"` + ev.Outcome.String() + `"}`}}).Result()
	}
	if err != nil {
		return "", status.Error(codes.Unavailable, "audit: "+err.Error())
	}
	return id, nil
}

// mark is the grant's replay mark.
func (s *skeleton) mark(ctx context.Context, target string, c *token.Claims) error {
	if s.store != nil {
		return s.store.Mark(ctx, store.ReplayKey{Target: target, Issuer: c.Issuer, JTI: c.JTI}, c.Expiry)
	}
	return s.redis.SetArgs(ctx, "skeleton:replay:"+c.JTI, "1", goredis.SetArgs{Mode: "NX", TTL: 10 * time.Minute}).Err()
}

// chain is the whole chain: two hops, one verification, two Redis writes.
// It returns the grant's subject too.
func (s *skeleton) chain(ctx context.Context, req *pb.ChainRequest) (*pb.ChainResponse, string, error) {
	start := time.Now()
	assertion, err := s.hops.Exchange(ctx, req.GetSubjectToken())
	if err != nil {
		return nil, "", status.Error(codes.Unavailable, err.Error())
	}
	hop1 := time.Since(start)
	tok, err := s.keys.Verify(ctx, assertion)
	if err != nil {
		return nil, "", status.Error(codes.PermissionDenied, err.Error())
	}
	if err := s.mark(ctx, req.GetTargetDomain(), &tok.Claims); err != nil {
		return nil, "", status.Error(codes.FailedPrecondition, "replay mark: "+err.Error())
	}
	start = time.Now()
	ans, err := s.hops.JWTBearerAnswer(ctx, assertion)
	if err != nil {
		return nil, "", status.Error(codes.Unavailable, err.Error())
	}
	ev := s.event(req, store.OutcomeSuccess, tok.Claims.Subject)
	jti := sha256.Sum256([]byte(tok.Claims.JTI))
	ev.AssertionJTIHash = hex.EncodeToString(jti[:])
	ev.Hops = []store.Hop{
		{Domain: s.source, Endpoint: s.hops.AToken, GrantType: oauth.GrantTypeTokenExchange, Duration: hop1, AssertionJTIHash: ev.AssertionJTIHash},
		{Domain: req.GetTargetDomain(), Endpoint: s.hops.BToken, GrantType: oauth.GrantTypeJWTBearer, Duration: time.Since(start), AssertionJTIHash: ev.AssertionJTIHash},
	}
	ev.AssertionIssuer = tok.Claims.Issuer
	ev.AssertionAudience = tok.Claims.Audience
	id, err := s.audit(ctx, &ev)
	if err != nil {
		return nil, "", err
	}
	// The answer the design's API gives (docs/design.md, "The API"): B's
	// token and what B said of it, the audit id and the hops taken.
	if ans.IssuedTokenType == "" {
		ans.IssuedTokenType = oauth.TokenTypeAccessToken
	}
	expires := ans.ExpiresIn
	if expires < 0 || expires > 1<<31-1 {
		expires = 0 // nonsense from B: "not said", as the broker answers it
	}
	hops := make([]*pb.Hop, len(ev.Hops))
	for i, h := range ev.Hops {
		hops[i] = &pb.Hop{Domain: h.Domain, Endpoint: h.Endpoint, GrantType: h.GrantType,
			Duration: durationpb.New(h.Duration), AssertionJtiHash: h.AssertionJTIHash}
	}
	return &pb.ChainResponse{AccessToken: ans.AccessToken, IssuedTokenType: ans.IssuedTokenType, TokenType: ans.TokenType,
		ExpiresIn: int32(expires), Scope: ans.Scope, AuditId: id, Hops: hops, Profile: profile,
	}, tok.Claims.Subject, nil
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
	audit := fs.String("audit", AuditIndexed, "the audit event and replay mark: "+AuditIndexed+" (the design's event, through the store) or "+AuditFixed+" (a fixed record, plain SET NX)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *aToken == "" || *aJWKS == "" || *bToken == "" || *redisAddr == "" {
		return errors.New("skeleton: -a-token, -a-jwks, -b-token and -redis are required")
	}
	if *audit != AuditIndexed && *audit != AuditFixed {
		return fmt.Errorf("skeleton: -audit %q: want %s or %s", *audit, AuditIndexed, AuditFixed)
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
		caller: auth.Anonymous, source: sandbox.DomainAName,
	}
	if *audit == AuditIndexed {
		st, err := redisstore.NewUniversal(&goredis.UniversalOptions{Addrs: []string{*redisAddr}, PoolSize: *conc},
			redisstore.Options{KeyPrefix: "skeleton"})
		if err != nil {
			return err
		}
		defer st.Close()
		s.store = st
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
