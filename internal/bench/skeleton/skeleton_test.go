package skeleton

import (
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// The skeleton chains against the real sandbox and a real redis-server,
// writes its marker and audit record, and refuses a grant it cannot verify.
func TestSkeletonChains(t *testing.T) {
	ctx := t.Context()
	sb := apptest.StartSandbox(t, sandbox.Options{})
	srv := redistest.New(t, redistest.Options{})
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	serve := func(jwks string, cache bool) pb.ChainServiceClient {
		s := &skeleton{
			hops: &load.Baseline{Client: load.NewHTTPClient(4), AToken: sb.A.TokenEndpoint(), BToken: sb.B.TokenEndpoint(),
				Audience: sb.B.Issuer(), ClientID: sandbox.BrokerClientID, ASecret: sandbox.BrokerSecretA, BSecret: sandbox.BrokerSecretB},
			keys:   token.NewRemoteVerifier(token.RemoteKeys{URL: jwks, Timeout: 2 * time.Second}, []string{"RS256"}),
			redis:  rdb,
			cache:  cache,
			tokens: map[[32]byte]skeletonToken{},
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		pb.RegisterChainServiceServer(g, s)
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(g.Stop)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return pb.NewChainServiceClient(conn)
	}
	subject := apptest.SubjectToken(t, sb, sandbox.Alice)

	resp, err := serve(sb.A.JWKSURI(), false).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if err != nil || resp.GetAccessToken() == "" {
		t.Fatalf("Chain: %v, %v", resp, err)
	}
	if n, err := rdb.XLen(ctx, "skeleton:audit").Result(); err != nil || n != 1 {
		t.Errorf("audit records: %d, %v; want 1", n, err)
	}
	if keys, err := rdb.Keys(ctx, "skeleton:replay:*").Result(); err != nil || len(keys) != 1 {
		t.Errorf("replay markers: %v, %v; want 1", keys, err)
	}

	// With the cache: the first chain is a miss (a second marker), the next
	// a hit answered from memory with B's token and one more audit record.
	cached := serve(sb.A.JWKSURI(), true)
	miss, err := cached.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if err != nil || miss.GetAccessToken() == "" {
		t.Fatalf("Chain (miss): %v, %v", miss, err)
	}
	hit, err := cached.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if err != nil || hit.GetAccessToken() != miss.GetAccessToken() || hit.GetExpiresIn() <= 0 {
		t.Fatalf("Chain (hit): %v, %v; want the miss's token with a lifetime", hit, err)
	}
	if n, err := rdb.XLen(ctx, "skeleton:audit").Result(); err != nil || n != 3 {
		t.Errorf("audit records after a miss and a hit: %d, %v; want 3", n, err)
	}
	if keys, err := rdb.Keys(ctx, "skeleton:replay:*").Result(); err != nil || len(keys) != 2 {
		t.Errorf("replay markers after a miss and a hit: %v, %v; want 2", keys, err)
	}
	// Another target is another key: a miss.
	if _, err := cached.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "other"}); err != nil {
		t.Fatal(err)
	}
	if keys, err := rdb.Keys(ctx, "skeleton:replay:*").Result(); err != nil || len(keys) != 3 {
		t.Errorf("replay markers after another target: %v, %v; want 3", keys, err)
	}

	// B's keys do not verify A's grant: refused before hop 2.
	_, err = serve(sb.B.JWKSURI(), false).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("grant checked with the wrong keys: %v, want PermissionDenied", err)
	}
}
