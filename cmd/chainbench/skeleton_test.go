package main

import (
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// The skeleton chains against the real sandbox and a real redis-server,
// writes its marker and audit record, and refuses a grant it cannot verify.
func TestSkeletonChains(t *testing.T) {
	ctx := t.Context()
	sb, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	srv := redistest.New(t, redistest.Options{})
	rdb := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	serve := func(jwks string) pb.ChainServiceClient {
		s := &skeleton{
			hops: &baselineTarget{client: newHTTPClient(4), aToken: sb.A.TokenEndpoint(), bToken: sb.B.TokenEndpoint(),
				audience: sb.B.Issuer(), clientID: sandbox.BrokerClientID, aSecret: sandbox.BrokerSecretA, bSecret: sandbox.BrokerSecretB},
			keys:  token.NewRemoteVerifier(token.RemoteKeys{URL: jwks, Timeout: 2 * time.Second}, []string{"RS256"}),
			redis: rdb,
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		pb.RegisterChainServiceServer(g, s)
		go func() { _ = g.Serve(lis) }()
		t.Cleanup(g.Stop)
		target, err := newGRPCTarget(lis.Addr().String(), "", sandbox.DomainBName, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(target.close)
		return target.clients[0]
	}
	subject, err := sb.A.SubjectToken(ctx, sandbox.Alice, sandbox.AlicePassword, "")
	if err != nil {
		t.Fatal(err)
	}

	resp, err := serve(sb.A.JWKSURI()).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if err != nil || resp.GetAccessToken() == "" {
		t.Fatalf("Chain: %v, %v", resp, err)
	}
	if n, err := rdb.XLen(ctx, "skeleton:audit").Result(); err != nil || n != 1 {
		t.Errorf("audit records: %d, %v; want 1", n, err)
	}
	if keys, err := rdb.Keys(ctx, "skeleton:replay:*").Result(); err != nil || len(keys) != 1 {
		t.Errorf("replay markers: %v, %v; want 1", keys, err)
	}

	// B's keys do not verify A's grant: refused before hop 2.
	_, err = serve(sb.B.JWKSURI()).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("grant checked with the wrong keys: %v, want PermissionDenied", err)
	}
}
