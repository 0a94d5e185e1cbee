package server_test

// Benchmarks of the transport edge: a chain over gRPC and over REST (the
// gateway, which calls the service directly) against a real Server on loopback,
// with the broker's two hops answered in memory, so that the figures are the
// server's and the broker's own cost: interceptors (request id, metrics,
// authentication), proto and JSON conversion, the broker's validation
// (RS256), replay mark and audit append on the memory store. The same chain
// with the sandbox's authorization servers over HTTP is benchmarked in
// internal/app (BenchmarkChainGRPC, BenchmarkChainREST).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/telemetry"
	"github.com/chainbroker/chainbroker/token"
)

const (
	benchIssuerA = "https://a.example/realms/domain-a"
	benchIssuerB = "https://b.example/realms/domain-b"
	benchGrants  = 512 // pre-signed grants: RS256 signing costs more than a chain
)

var benchFixture = sync.OnceValues(func() (*benchKeys, error) {
	s, v, err := domainKeys("RS256")
	if err != nil {
		return nil, err
	}
	k := &benchKeys{verifier: v}
	now := time.Now()
	claims := func(jti string) map[string]any {
		return map[string]any{
			"iss": benchIssuerA, "sub": "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c", "aud": benchIssuerB, "azp": "chainbroker",
			"typ": "Bearer", "iat": now.Unix(), "exp": now.Add(300 * time.Second).Unix(), "jti": jti,
			"scope": "profile email", "preferred_username": "alice",
		}
	}
	for i := range benchGrants {
		g, err := s.Sign(claims(fmt.Sprintf("jti-%d", i)), token.SignOptions{Typ: token.TypeJWT})
		if err != nil {
			return nil, err
		}
		k.grants = append(k.grants, g)
	}
	sc := claims("subject")
	sc["aud"] = []string{"chainbroker", "account"}
	sc["azp"] = "sandbox-agent"
	if k.subject, err = s.Sign(sc, token.SignOptions{Typ: token.TypeJWT}); err != nil {
		return nil, err
	}
	return k, nil
})

type benchKeys struct {
	verifier *token.Verifier
	grants   []string
	subject  string
}

type benchServer struct {
	grpc    pb.ChainServiceClient
	conn    *grpc.ClientConn
	restURL string
	http    *http.Client
	subject string
}

// startBenchServer serves a broker (domain A -> domain B, anonymous caller,
// memory store, metrics on) on loopback gRPC and REST listeners.
func startBenchServer(b *testing.B) *benchServer {
	b.Helper()
	keys, err := benchFixture()
	if err != nil {
		b.Fatal(err)
	}
	replay := brokertest.NewSwappableReplay()
	st := memory.New(memory.Options{})
	metrics := telemetry.NewMetrics()
	srv := newServer(b, broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: benchIssuerA, TokenEndpoint: benchIssuerA + "/protocol/openid-connect/token", Keys: keys.verifier,
				Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "a"}},
			{Name: "domain-b", Issuer: benchIssuerB, TokenEndpoint: benchIssuerB + "/protocol/openid-connect/token",
				Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "b"}},
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: &brokertest.PoolEndpoint{Grants: keys.grants, Wrapped: replay.Reset},
		Replay:   replay,
		Audit:    st,
		Observer: metrics,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: auth.Anonymous,
			Chains: []broker.ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}}}}}},
	}, server.Config{Audit: st, Metrics: metrics})
	served := serve(b, srv)
	s := &benchServer{
		grpc: served.chain, conn: served.conn,
		restURL: served.base + "/v1/chain",
		http:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		subject: keys.subject,
	}
	b.Cleanup(s.http.CloseIdleConnections)
	// Wait for the REST listener and warm both paths.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.chainREST(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("server not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.chainGRPC(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}

func (s *benchServer) chainGRPC(ctx context.Context) error {
	resp, err := s.grpc.Chain(ctx, &pb.ChainRequest{SubjectToken: s.subject, TargetDomain: "domain-b"})
	if err != nil {
		return err
	}
	if resp.GetAccessToken() == "" {
		return fmt.Errorf("no access_token")
	}
	return nil
}

// errReplayedAtWrap: a grant reused when the pool started over while another
// goroutine still held it (parallel runs only).
var errReplayedAtWrap = fmt.Errorf("replayed at pool wrap")

func (s *benchServer) chainREST(ctx context.Context) error {
	body := `{"subject_token":"` + s.subject + `","target_domain":"domain-b"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.restURL, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusForbidden && bytes.Contains(out, []byte("ASSERTION_REPLAYED")) {
		return errReplayedAtWrap
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(out, []byte(`"access_token"`)) {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, out)
	}
	return nil
}

func benchServerChain(b *testing.B, rest, parallel bool) {
	s := startBenchServer(b)
	do := s.chainGRPC
	if rest {
		do = s.chainREST
	}
	ctx := context.Background()
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			if err := do(ctx); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.SetParallelism(8) // 8 callers per core
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := do(ctx); err != nil && err != errReplayedAtWrap && status.Code(err) != codes.PermissionDenied {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkServerChainGRPC is one caller chaining over gRPC, hops in memory.
func BenchmarkServerChainGRPC(b *testing.B) { benchServerChain(b, false, false) }

// BenchmarkServerChainREST is one caller chaining over REST, hops in memory.
func BenchmarkServerChainREST(b *testing.B) { benchServerChain(b, true, false) }

// BenchmarkServerChainGRPCParallel is 8 callers per core over gRPC.
func BenchmarkServerChainGRPCParallel(b *testing.B) { benchServerChain(b, false, true) }

// BenchmarkServerChainRESTParallel is 8 callers per core over REST.
func BenchmarkServerChainRESTParallel(b *testing.B) { benchServerChain(b, true, true) }
