package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// hydraDomain returns cfg's Hydra domain; the test fails if there is none.
func hydraDomain(t *testing.T, cfg *config.File) *config.Domain {
	t.Helper()
	d := cfg.Domain(domainHydra)
	if d == nil {
		t.Fatalf("no domain %q in the broker configuration", domainHydra)
	}
	return d
}

// brokerProc is a running `chainbroker serve` and its clients.
type brokerProc struct {
	proc    *process
	httpURL string // http://127.0.0.1:P (REST)
	apiKey  string // the caller's credential, sent as x-api-key
	chain   pb.ChainServiceClient
	audit   pb.AuditServiceClient
}

// startBroker writes cfg (with free loopback ports) to a temporary file,
// runs `chainbroker serve --config FILE` with env (the client secrets), waits
// for /readyz and connects a gRPC client that authenticates every call with
// apiKey (one of cfg.Callers.APIKeys).
func startBroker(t *testing.T, file *config.File, env []string, apiKey string) *brokerProc {
	t.Helper()
	cfg := *file // the listen addresses are this broker's
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		cfg.Listen.GRPC, cfg.Listen.HTTP = loopback(freePort(t)), loopback(freePort(t))
		b, err := yaml.Marshal(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "chainbroker.yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		p := startProcess(t, "chainbroker", dir, env, bins.broker, "serve", "--config", path)
		bp := &brokerProc{proc: p, httpURL: "http://" + cfg.Listen.HTTP, apiKey: apiKey}
		err = p.waitHealthy(bp.httpURL + "/readyz")
		if errors.Is(err, errAddrInUse) && attempt < 3 {
			continue
		}
		if err != nil {
			t.Fatalf("%v\nconfiguration:\n%s", err, b)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- chainbroker configuration ---\n%s", b)
			}
		})
		withKey := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey), method, req, reply, cc, opts...)
		}
		conn, err := grpc.NewClient(cfg.Listen.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(withKey))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		bp.chain, bp.audit = pb.NewChainServiceClient(conn), pb.NewAuditServiceClient(conn)
		return bp
	}
}

// chainREST calls POST /v1/chain and returns the HTTP status and the body,
// which must be JSON.
func (b *brokerProc) chainREST(t *testing.T, req map[string]any) (int, []byte) {
	t.Helper()
	js, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, b.httpURL+"/v1/chain", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("X-Api-Key", b.apiKey)
	status, body := do(t, hreq)
	if !json.Valid(body) {
		t.Fatalf("POST /v1/chain: HTTP %d, not JSON: %s", status, body)
	}
	return status, body
}

// lastEvent returns the newest audit event.
func (b *brokerProc) lastEvent(t *testing.T) *pb.AuditEvent {
	t.Helper()
	resp, err := b.audit.ListAuditEvents(ctxT(t), &pb.ListAuditEventsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvents()) != 1 {
		t.Fatalf("ListAuditEvents: %d events, want 1", len(resp.GetEvents()))
	}
	return resp.GetEvents()[0]
}
