package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store/memory"
)

// TestGRPCCallsRunOnPooledGoroutines: the gRPC server runs its calls on the
// call pool (sequential calls on one goroutine, idle between calls), REST
// calls on net/http's goroutines, and the pool's goroutines end with Serve.
func TestGRPCCallsRunOnPooledGoroutines(t *testing.T) {
	st := memory.New(memory.Options{})
	srv := newServer(t, broker.Config{
		Domains: []broker.Domain{{Name: "domain-b", Issuer: "https://domain-b.example", TokenEndpoint: "https://domain-b.example/token",
			Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "s"}}},
		Endpoint: oauth.NewClient(oauth.ClientOptions{Timeout: time.Second}),
		Replay:   st, Audit: st,
	}, server.Config{Audit: st})
	t.Cleanup(func() { // after serve's cleanup, which waits for Serve to return
		if started, idle := server.CallPoolSize(srv); started != 0 || idle != 0 {
			t.Errorf("after Serve returned: %d pooled goroutines started, %d idle; want none", started, idle)
		}
	})
	s := serve(t, srv)
	s.waitREST(t)
	if started, idle := server.CallPoolSize(srv); started != 0 || idle != 0 {
		t.Fatalf("after REST calls only: %d pooled goroutines started, %d idle; want none", started, idle)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := s.chain.ListDomains(ctx, &pb.ListDomainsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if started, idle := server.CallPoolSize(srv); started != 1 || idle != 1 {
		t.Errorf("after three sequential gRPC calls: %d pooled goroutines started, %d idle; want 1, 1", started, idle)
	}
}
