package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

// startServeEnv is a sandbox and a serving broker whose serving context
// the test ends itself (e.Stop: what SIGTERM does in cmd/chainbroker), with
// the drain timeout and shutdown delay given.
func startServeEnv(t *testing.T, o serveEnvOptions) *apptest.Env {
	t.Helper()
	opts := apptest.Options{Admin: o.admin, Mutate: func(f *config.File) {
		f.Listen.ShutdownTimeout = config.Duration(o.drain)
		f.Listen.ShutdownDelay = config.Duration(o.delay)
	}}
	if o.logs != nil {
		opts.Logger = slog.New(slog.NewJSONHandler(o.logs, nil))
	}
	return apptest.StartWith(t, opts)
}

func startShutdownEnv(t *testing.T, drain time.Duration) *apptest.Env {
	t.Helper()
	return startServeEnv(t, serveEnvOptions{drain: drain})
}

type serveEnvOptions struct {
	drain, delay time.Duration
	admin        bool             // serve an admin listener
	logs         *testutil.Buffer // the broker's JSON log; nil: discarded
}

// Graceful shutdown with chains in flight (domain B answers after 1.5 s), one
// over gRPC and one over REST. Cancelling Serve's context:
//   - turns gRPC health NOT_SERVING at once (a watcher is told; a fresh
//     health check never answers SERVING again),
//   - closes the listeners: a chain started afterwards is refused
//     (UNAVAILABLE on the existing and on a new gRPC connection, connection
//     refused over REST) and reaches no domain,
//   - lets both in-flight chains complete successfully,
//   - and Serve returns right after them, well before the 10 s drain timeout.
//
// Then, with everything closed, the goroutine count returns to what it was
// before the sandbox and the broker started: nothing leaks.
func TestGracefulShutdown(t *testing.T) {
	const delay, drain = 1500 * time.Millisecond, 10 * time.Second
	baseline := runtime.NumGoroutine()

	func() {
		e := startShutdownEnv(t, drain)
		defer e.Close()
		ctx := ctxT(t)

		watched, stopWatch := testutil.WatchHealth(t, e.GRPCAddr)

		subject, err := e.Sandbox.A.SubjectToken(ctx, sandbox.Alice, sandbox.AlicePassword, "")
		if err != nil {
			t.Fatal(err)
		}
		e.Sandbox.B.SetMisbehaviour(sandbox.Misbehaviour{Delay: delay})
		bCalls := e.Sandbox.B.JWTBearerCount()
		grpcDone := make(chan error, 1)
		go func() {
			resp, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
			if err == nil && resp.AccessToken == "" {
				err = status.Error(codes.Internal, "empty access token")
			}
			grpcDone <- err
		}()
		restDone := make(chan error, 1)
		go func() { restDone <- restChain(e.HTTPAddr, subject) }()
		testutil.WaitFor(t, 5*time.Second, "both chains to reach domain B", func() bool { return e.Sandbox.B.JWTBearerCount() >= bCalls+2 })

		start := time.Now()
		e.Stop()

		select {
		case at := <-watched:
			if d := at.Sub(start); d > 500*time.Millisecond {
				t.Errorf("the health watcher saw NOT_SERVING %v after shutdown began", d)
			}
		case <-time.After(2 * time.Second):
			t.Error("the health watcher did not see NOT_SERVING within 2s")
		}
		stopWatch() // a watch is a stream in flight; see TestShutdownNotHeldByHealthWatch

		closed := false
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
			if st := testutil.Health(t, e.GRPCAddr); st == healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("a fresh health check answered SERVING %v after shutdown began", time.Since(start))
			}
			c, err := net.DialTimeout("tcp", e.GRPCAddr, 200*time.Millisecond)
			if err != nil {
				closed = true
				break
			}
			c.Close()
			time.Sleep(10 * time.Millisecond)
		}
		if !closed {
			t.Fatal("the gRPC listener still accepts connections 2s after shutdown began")
		}

		// GracefulStop closes the listener, then sends GOAWAY on the open
		// connections: on a loaded machine a call can slip in between. Wait
		// for the existing connection to have seen the GOAWAY.
		testutil.WaitFor(t, 5*time.Second, "the existing connection to leave READY", func() bool {
			return e.Conn.GetState() != connectivity.Ready
		})
		exchanges := e.Sandbox.A.ExchangeCount()
		fresh, err := grpc.NewClient(e.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		for name, client := range map[string]pb.ChainServiceClient{"existing connection": e.Chain, "new connection": pb.NewChainServiceClient(fresh)} {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := client.Chain(cctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
			cancel()
			if status.Code(err) != codes.Unavailable {
				t.Errorf("chain on the %s after shutdown began: %v, want UNAVAILABLE", name, err)
			}
		}
		if err := restChain(e.HTTPAddr, subject); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("REST chain after shutdown began: %v, want the connection refused", err)
		}
		if e.Sandbox.A.ExchangeCount() != exchanges {
			t.Error("a chain started after shutdown began reached domain A")
		}

		for name, done := range map[string]chan error{"gRPC": grpcDone, "REST": restDone} {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("in-flight %s chain: %v", name, err)
				}
			case <-time.After(drain):
				t.Fatalf("in-flight %s chain did not complete", name)
			}
		}
		select {
		case <-e.Served():
			if err := e.ServeErr(); err != nil {
				t.Errorf("Serve: %v", err)
			}
			if d := time.Since(start); d > delay+2*time.Second {
				t.Errorf("Serve returned %v after shutdown began, long after the in-flight chains (drain timeout %v)", d, drain)
			}
			t.Logf("Serve returned %v after shutdown began", time.Since(start).Round(time.Millisecond))
		case <-time.After(drain + time.Second):
			t.Fatal("Serve did not return")
		}
	}()

	checkNoGoroutineLeak(t, baseline)
}

// A client watching gRPC health (client-side health checking, a balancer)
// holds a stream open for as long as it likes; it must not hold the drain:
// Serve returns well before the drain timeout when nothing else is in
// flight.
func TestShutdownNotHeldByHealthWatch(t *testing.T) {
	const drain = 5 * time.Second
	e := startShutdownEnv(t, drain)
	defer e.Close()
	watch, err := healthpb.NewHealthClient(e.Conn).Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v, %v", st, err)
	}
	start := time.Now()
	e.Stop()
	select {
	case <-e.Served():
		if err := e.ServeErr(); err != nil {
			t.Errorf("Serve: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Serve returned %v after shutdown began with only a health watch open: the watch held the drain (timeout %v)", d, drain)
		}
	case <-time.After(drain + 2*time.Second):
		t.Fatal("Serve did not return")
	}
}

// Issue #22.2: with listen.shutdown_delay, shutting down first fails
// readiness (/readyz 503, gRPC health NOT_SERVING) while calls are still
// served, over gRPC on a new connection and over REST, so that balancers
// and Kubernetes endpoints stop sending before anything is refused; only
// after the delay do the listeners close. The log gives the durations in
// readable units.
func TestShutdownDelayServesWhileNotReady(t *testing.T) {
	const delay, drain = 4 * time.Second, 5 * time.Second
	logs := &testutil.Buffer{}
	e := startServeEnv(t, serveEnvOptions{drain: drain, delay: delay, logs: logs})
	defer e.Close()
	ctx := ctxT(t)
	testutil.WaitFor(t, 10*time.Second, "the broker to serve", func() bool {
		return testutil.Health(t, e.GRPCAddr) == healthpb.HealthCheckResponse_SERVING
	})
	subject, err := e.Sandbox.A.SubjectToken(ctx, sandbox.Alice, sandbox.AlicePassword, "")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	e.Stop()
	testutil.WaitFor(t, 5*time.Second, "/readyz 503 once shutdown began", func() bool {
		code, _ := httpGet(t, "http://"+e.HTTPAddr+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	// Still within the delay: a call that has not even connected yet is
	// served. (Were the listeners closed, these would fail: the test needs
	// no clock.)
	fresh, err := grpc.NewClient(e.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for _, svc := range []string{"", "chainbroker.v1.ChainService"} {
		h, err := healthpb.NewHealthClient(fresh).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %q during the shutdown delay: %v %v, want NOT_SERVING", svc, h, err)
		}
	}
	if resp, err := pb.NewChainServiceClient(fresh).Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName}); err != nil || resp.AccessToken == "" {
		t.Errorf("gRPC chain on a new connection during the shutdown delay: %v", err)
	}
	if err := restChain(e.HTTPAddr, subject); err != nil {
		t.Errorf("REST chain during the shutdown delay: %v", err)
	}

	testutil.WaitFor(t, delay+drain+10*time.Second, "the gRPC listener to close", func() bool {
		c, err := net.DialTimeout("tcp", e.GRPCAddr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if d := time.Since(start); d < delay {
		t.Errorf("the gRPC listener closed %v after shutdown began, before the %v delay", d, delay)
	}
	select {
	case <-e.Served():
		if err := e.ServeErr(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(drain + 5*time.Second):
		t.Fatal("Serve did not return")
	}
	for _, want := range []string{`"shutdown_delay":"4s"`, `"drain_timeout":"5s"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the shutdown log lacks %s:\n%s", want, logs.String())
		}
	}
}

// httpGet answers a GET's status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	c.CloseIdleConnections()
	return resp.StatusCode, b.String()
}

// restChain posts one chain over REST; nil on HTTP 200.
func restChain(httpAddr, subject string) error {
	body := `{"subject_token":"` + subject + `","target_domain":"` + sandbox.DomainBName + `"}`
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post("http://"+httpAddr+"/v1/chain", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	c.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		return status.Errorf(codes.Unknown, "HTTP %d", resp.StatusCode)
	}
	return nil
}

// checkNoGoroutineLeak waits up to 5 s for the number of goroutines to fall
// back to baseline, and fails with every goroutine's stack if it does not.
func checkNoGoroutineLeak(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines 5s after everything was closed, %d before the test started; stacks:\n%s", n, baseline, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A REST call still in flight when the drain timeout expires is not cut off
// without an answer: it is ended and answers 503 SERVER_UNAVAILABLE (a
// retryable refusal naming the shutdown) before its connection closes; a
// gRPC call is cut with UNAVAILABLE; Serve returns soon after the timeout.
func TestDrainTimeoutAnswersServerUnavailable(t *testing.T) {
	const drain, upstreamDelay = 500 * time.Millisecond, 4 * time.Second
	logs := &testutil.Buffer{}
	e := startServeEnv(t, serveEnvOptions{drain: drain, logs: logs})
	defer e.Close()
	ctx := ctxT(t)
	subject, err := e.Sandbox.A.SubjectToken(ctx, sandbox.Alice, sandbox.AlicePassword, "")
	if err != nil {
		t.Fatal(err)
	}
	e.Sandbox.B.SetMisbehaviour(sandbox.Misbehaviour{Delay: upstreamDelay})
	bCalls := e.Sandbox.B.JWTBearerCount()
	type answer struct {
		code int
		body string
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		body := `{"subject_token":"` + subject + `","target_domain":"` + sandbox.DomainBName + `"}`
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Post("http://"+e.HTTPAddr+"/v1/chain", "application/json", strings.NewReader(body))
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		done <- answer{code: resp.StatusCode, body: b.String(), err: err}
	}()
	grpcDone := make(chan error, 1)
	go func() {
		_, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
		grpcDone <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "both chains to reach domain B", func() bool { return e.Sandbox.B.JWTBearerCount() >= bCalls+2 })

	start := time.Now()
	e.Stop()
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("the in-flight REST chain got no answer: %v", a.err)
		}
		if a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, `"reason":"SERVER_UNAVAILABLE"`) {
			t.Errorf("in-flight REST chain at the drain timeout: HTTP %d %s, want 503 SERVER_UNAVAILABLE", a.code, a.body)
		}
	case <-time.After(upstreamDelay):
		t.Fatal("the in-flight REST chain was not ended at the drain timeout")
	}
	// gRPC: the server stops and the call is cut; the client library
	// reports UNAVAILABLE (README: SERVER_UNAVAILABLE).
	select {
	case err := <-grpcDone:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("in-flight gRPC chain at the drain timeout: %v, want UNAVAILABLE", err)
		}
	case <-time.After(upstreamDelay):
		t.Fatal("the in-flight gRPC chain was not ended at the drain timeout")
	}
	select {
	case <-e.Served():
		t.Logf("Serve returned %v after shutdown began (drain timeout %v)", time.Since(start).Round(time.Millisecond), drain)
	case <-time.After(upstreamDelay):
		t.Fatal("Serve did not return")
	}
	if !strings.Contains(logs.String(), "http drain timeout: ending the calls in flight") {
		t.Errorf("no log line says the drain timeout ended calls:\n%s", logs.String())
	}
}
