package server_test

// The one harness of this package's tests: a broker built from a
// broker.Config (its domains answered by the test's own token endpoints),
// a Server for it, served on loopback listeners until the test ends. The
// app-level harness (internal/apptest: the sandbox and app.Build) is not
// used here: server's tests configure the broker themselves, and
// internal/app imports server.

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/token"
)

// domainKeys is a fresh signing key of the given algorithm and a verifier
// of its public JWKS: a source domain's keys.
func domainKeys(alg string) (*token.Signer, *token.Verifier, error) {
	signer, err := token.GenerateSigner(alg)
	if err != nil {
		return nil, nil, err
	}
	jwks, err := token.PublicJWKS(signer)
	if err != nil {
		return nil, nil, err
	}
	keys, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		return nil, nil, err
	}
	return signer, keys, nil
}

// newServer builds a broker from bc and a Server for it from sc, with
// anonymous callers (auth.Anonymous) and a 5 s drain unless sc sets them.
func newServer(tb testing.TB, bc broker.Config, sc server.Config) *server.Server {
	tb.Helper()
	br, err := broker.New(bc)
	if err != nil {
		tb.Fatal(err)
	}
	sc.Broker = br
	if sc.Auth == nil {
		if sc.Auth, err = auth.New(auth.Config{AllowAnonymous: true}); err != nil {
			tb.Fatal(err)
		}
	}
	if sc.ShutdownTimeout == 0 {
		sc.ShutdownTimeout = 5 * time.Second
	}
	srv, err := server.New(sc)
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}

// serving is a Server serving gRPC and REST on loopback, with a gRPC
// client connection (plaintext; it connects on first use).
type serving struct {
	grpcAddr, httpAddr string
	base               string // http:// and httpAddr
	conn               *grpc.ClientConn
	chain              pb.ChainServiceClient
	audit              pb.AuditServiceClient
}

// serve serves srv on fresh loopback listeners until the test ends, then
// checks that Serve returned without error.
func serve(tb testing.TB, srv *server.Server) *serving {
	tb.Helper()
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		return l
	}
	grpcLis, httpLis := listen(), listen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLis, httpLis) }()
	s := &serving{grpcAddr: grpcLis.Addr().String(), httpAddr: httpLis.Addr().String()}
	s.base = "http://" + s.httpAddr
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	s.conn, s.chain, s.audit = conn, pb.NewChainServiceClient(conn), pb.NewAuditServiceClient(conn)
	tb.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return s
}

// waitREST waits (up to 20 s) for GET /v1/domains to answer 200 over
// plaintext REST.
func (s *serving) waitREST(tb testing.TB) {
	tb.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := c.Get(s.base + "/v1/domains")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("server not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
