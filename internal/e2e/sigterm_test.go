package e2e

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

// `chainbroker serve` receiving SIGTERM with a chain in flight (domain B
// answers after 1.5 s): health watchers see NOT_SERVING at once, the
// listeners close promptly so new chains are refused (on the existing
// connection and on new ones, over gRPC and REST) without reaching any
// domain, the in-flight chain completes successfully, and the process exits
// 0 well before its 10 s drain timeout.
func TestSIGTERMDrainsInFlightChains(t *testing.T) {
	const delay, drain = 1500 * time.Millisecond, 10 * time.Second
	sb := apptest.StartSandbox(t, sandbox.Options{})
	b := startBroker(t, "broker", brokerConfig(sb, cfgOptions{shutdownTimeout: drain}))

	// A watcher on its own connection, as a client-side health check or a
	// balancer would keep.
	watched, stopWatch := testutil.WatchHealth(t, b.grpcAddr)

	sb.B.SetMisbehaviour(sandbox.Misbehaviour{Delay: delay})
	subject := apptest.SubjectToken(t, sb, sandbox.Alice)
	bCalls := sb.B.JWTBearerCount()
	type result struct {
		resp *pb.ChainResponse
		err  error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := b.chain.Chain(callCtx(t, 15*time.Second), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sb.B.Name()})
		inFlight <- result{resp, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "the chain to reach domain B", func() bool { return sb.B.JWTBearerCount() > bCalls })

	sigterm := time.Now()
	b.signal(syscall.SIGTERM)

	select {
	case at := <-watched:
		t.Logf("health watcher saw NOT_SERVING %v after SIGTERM", at.Sub(sigterm).Round(time.Millisecond))
		if at.Sub(sigterm) > time.Second {
			t.Errorf("NOT_SERVING reached the watcher %v after SIGTERM", at.Sub(sigterm))
		}
	case <-time.After(2 * time.Second):
		t.Error("the health watcher did not see NOT_SERVING within 2s of SIGTERM")
	}
	stopWatch() // a watch stream is a call in flight: let the drain end

	// A fresh health check is never SERVING again: NOT_SERVING while the
	// listener still accepts, then no connection at all.
	closed := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if st := testutil.Health(t, b.grpcAddr); st == healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("a fresh health check answered SERVING %v after SIGTERM", time.Since(sigterm))
		}
		if c, err := net.DialTimeout("tcp", b.grpcAddr, 200*time.Millisecond); err != nil {
			closed = true
			break
		} else {
			c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !closed {
		t.Fatal("the gRPC listener still accepts connections 2s after SIGTERM")
	}
	t.Logf("gRPC listener closed %v after SIGTERM", time.Since(sigterm).Round(time.Millisecond))

	// New chains are refused, on the existing connection and a new one,
	// and reach no domain.
	exchanges := sb.A.ExchangeCount()
	fresh, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for name, client := range map[string]pb.ChainServiceClient{"existing connection": b.chain, "new connection": pb.NewChainServiceClient(fresh)} {
		_, err := client.Chain(callCtx(t, 3*time.Second), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sb.B.Name()})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("new chain on the %s after SIGTERM: %v, want UNAVAILABLE", name, err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+b.httpAddr+"/v1/chain", bytes.NewReader([]byte(`{"subject_token":"x","target_domain":"domain-b"}`)))
	req.Header.Set("X-Api-Key", apiKey)
	if resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("REST chain after SIGTERM answered HTTP %d, want the connection refused", resp.StatusCode)
	}
	if sb.A.ExchangeCount() != exchanges {
		t.Error("a chain started after SIGTERM reached domain A")
	}

	select {
	case r := <-inFlight:
		if r.err != nil || r.resp.AccessToken == "" || r.resp.AuditId == "" {
			t.Fatalf("the in-flight chain: %v (response %v)", r.err, r.resp)
		}
		t.Logf("in-flight chain completed %v after SIGTERM", time.Since(sigterm).Round(time.Millisecond))
	case <-time.After(drain):
		t.Fatal("the in-flight chain did not complete")
	}
	code := b.wait(drain)
	exited := time.Since(sigterm)
	t.Logf("process exited with %d, %v after SIGTERM", code, exited.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if exited > delay+3*time.Second {
		t.Errorf("exited %v after SIGTERM: the drain waited past the in-flight chain (timeout %v)", exited, drain)
	}
	if logs := b.logs.String(); !strings.Contains(logs, `"msg":"shutting down"`) {
		t.Errorf("no shutdown log line:\n%s", tailString(logs, 3000))
	}
}
