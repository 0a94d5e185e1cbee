// Package e2e holds multi-process tests: each runs real `chainbroker serve
// --config FILE` processes (built once per test binary from ./cmd/chainbroker)
// against the in-process sandbox and throwaway redis-servers
// (internal/redistest), all on loopback, and talks to them over gRPC as a
// client would. They cover what one process cannot show: replicas sharing
// Redis, a broker killed with SIGKILL, SIGTERM handling, Redis Cluster and
// Sentinel topologies configured through the YAML file.
package e2e

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

var (
	binDir    string // temporary directory of the built binary
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chainbroker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildTimeout bounds `go build ./cmd/chainbroker`.
const buildTimeout = 3 * time.Minute

// binary builds ./cmd/chainbroker once per test binary (on first use, so
// that `go test -list` or a run selecting no test builds nothing) and returns
// its path.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go not on PATH: %w", err)
			return
		}
		binPath = filepath.Join(binDir, "chainbroker")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		start := time.Now()
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", binPath, "github.com/chainbroker/chainbroker/cmd/chainbroker").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/chainbroker: %w\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "e2e: built chainbroker in %v\n", time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Caller credentials of every broker these tests start: one API key whose
// caller may run the sandbox chain and read the audit trail.
const (
	apiKey     = "e2e-agent-key-6f1d2c3b4a59"
	callerName = "e2e-agent"
)

// cfgOptions adjust brokerConfig.
type cfgOptions struct {
	// redis is the store.redis section; nil: the memory store.
	redis *config.Redis
	// tokenEndpointA/B replace the sandbox's token endpoints (proxies).
	tokenEndpointA, tokenEndpointB string
	// shutdownTimeout is listen.shutdown_timeout; 0: 10s.
	shutdownTimeout time.Duration
	// domainTimeout is domains[].timeout; 0: 5s.
	domainTimeout time.Duration
}

// brokerConfig wires a broker to the sandbox (app.SandboxFile): the chain
// domain-a -> domain-b with domain B's Keycloak defaults, an API key caller
// with the audit role, and the store of o. startBroker fills in listen.
func brokerConfig(sb *sandbox.Sandbox, o cfgOptions) *config.File {
	a, b, _ := app.SandboxDomains(sb) // not domain C: these tests chain into B
	a.TokenEndpoint = cmp.Or(o.tokenEndpointA, a.TokenEndpoint)
	b.TokenEndpoint = cmp.Or(o.tokenEndpointB, b.TokenEndpoint)
	f := app.SandboxFile(a, b, app.SandboxDomain{}, "", "", "")
	f.Listen.ShutdownTimeout = config.Duration(cmp.Or(o.shutdownTimeout, 10*time.Second))
	f.Listen.ReadinessInterval = config.Duration(time.Second)
	f.Log = config.Log{Level: "info", Format: "json"}
	f.Callers = config.Callers{APIKeys: []config.APIKey{{Name: callerName, SHA256: auth.HashAPIKey(apiKey)}}}
	f.Policy[0].Caller = callerName
	for i := range f.Domains {
		f.Domains[i].Timeout = config.Duration(cmp.Or(o.domainTimeout, 5*time.Second))
	}
	if o.redis != nil {
		f.Store = config.Store{Backend: "redis", Redis: *o.redis}
	}
	return f
}

// broker is one `chainbroker serve` process and a gRPC client to it.
type broker struct {
	t        *testing.T
	name     string
	cfgPath  string
	grpcAddr string
	httpAddr string
	logs     *testutil.Buffer
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	exitErr  error         // set before done is closed

	conn  *grpc.ClientConn
	chain pb.ChainServiceClient
	audit pb.AuditServiceClient
}

const (
	readyTimeout  = 20 * time.Second
	startAttempts = 3
)

// startBroker writes cfg (with free loopback listen addresses) to a file and
// runs `chainbroker serve --config FILE`, waiting until /readyz answers 200.
// Ports found taken at start-up are replaced and the start retried. The
// process is killed when the test ends; its log is printed if the test
// failed.
func startBroker(t *testing.T, name string, cfg *config.File) *broker {
	t.Helper()
	bin := binary(t)
	var lastErr error
	for range startAttempts {
		b := &broker{t: t, name: name, grpcAddr: testutil.FreeAddr(t), httpAddr: testutil.FreeAddr(t)}
		cfg.Listen.GRPC, cfg.Listen.HTTP = b.grpcAddr, b.httpAddr
		text, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b.cfgPath = filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(b.cfgPath, text, 0o600); err != nil {
			t.Fatal(err)
		}
		lastErr = b.start(bin)
		if lastErr == nil {
			b.dial()
			return b
		}
		if !strings.Contains(b.logs.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("%s: %v", name, lastErr)
	return nil
}

// restart starts a new process on the same configuration file (same
// addresses) after the previous one exited.
func (b *broker) restart() {
	b.t.Helper()
	select {
	case <-b.done:
	default:
		b.t.Fatalf("%s: restart while the process is running", b.name)
	}
	b.conn.Close()
	var err error
	for range startAttempts {
		// The listen ports were ours a moment ago.
		if err = b.start(binary(b.t)); err == nil || !strings.Contains(b.logs.String(), "address already in use") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("%s: restart: %v", b.name, err)
	}
	b.dial()
}

func (b *broker) start(bin string) error {
	b.logs = &testutil.Buffer{}
	cmd := exec.Command(bin, "serve", "--config", b.cfgPath)
	cmd.Env = append(os.Environ(), app.SandboxSecretAEnv+"="+sandbox.BrokerSecretA, app.SandboxSecretBEnv+"="+sandbox.BrokerSecretB)
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	b.cmd, b.done, b.exitErr = cmd, make(chan struct{}), nil
	done := b.done
	go func() {
		err := cmd.Wait()
		b.exitErr = err
		close(done)
	}()
	logs := b.logs
	b.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if b.t.Failed() {
			b.t.Logf("--- log of %s (pid %d):\n%s", b.name, cmd.Process.Pid, tailString(logs.String(), 6000))
		}
	})

	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("exited before ready (%v):\n%s", b.exitErr, tailString(b.logs.String(), 4000))
		default:
		}
		resp, err := http.Get("http://" + b.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("not ready within %v:\n%s", readyTimeout, tailString(b.logs.String(), 4000))
}

func (b *broker) dial() {
	conn, err := grpc.NewClient(b.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { conn.Close() })
	b.conn = conn
	b.chain = pb.NewChainServiceClient(conn)
	b.audit = pb.NewAuditServiceClient(conn)
}

// kill sends SIGKILL (a crash) and waits for the process to exit.
func (b *broker) kill() {
	b.t.Helper()
	_ = b.cmd.Process.Kill()
	b.wait(10 * time.Second)
}

// signal sends sig to the process.
func (b *broker) signal(sig os.Signal) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil {
		b.t.Fatalf("%s: signal %v: %v", b.name, sig, err)
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (b *broker) wait(d time.Duration) int {
	b.t.Helper()
	select {
	case <-b.done:
	case <-time.After(d):
		b.t.Fatalf("%s did not exit within %v", b.name, d)
	}
	var ee *exec.ExitError
	switch {
	case b.exitErr == nil:
		return 0
	case errors.As(b.exitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		b.t.Fatalf("%s: wait: %v", b.name, b.exitErr)
		return -1
	}
}

// callCtx is a bounded context carrying the test caller's API key.
func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey)
}

// chainOnce runs one chain for a fresh subject token of user.
func (b *broker) chainOnce(t *testing.T, sb *sandbox.Sandbox, user string) (*pb.ChainResponse, error) {
	t.Helper()
	subject := apptest.SubjectToken(t, sb, user)
	return b.chain.Chain(callCtx(t, 15*time.Second), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sb.B.Name()})
}

// listAll pages through the whole audit trail of b, newest first.
func (b *broker) listAll(t *testing.T, req *pb.ListAuditEventsRequest) []*pb.AuditEvent {
	t.Helper()
	var out []*pb.AuditEvent
	req.PageSize = 200
	for range 1000 {
		resp, err := b.audit.ListAuditEvents(callCtx(t, 10*time.Second), req)
		if err != nil {
			t.Fatalf("%s: ListAuditEvents: %v", b.name, err)
		}
		out = append(out, resp.Events...)
		if resp.NextPageToken == "" {
			return out
		}
		req.PageToken = resp.NextPageToken
	}
	t.Fatalf("%s: ListAuditEvents did not end", b.name)
	return nil
}

// reason returns a gRPC error's ErrorInfo reason ("" if none).
func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

// outcome names a chain's result for tallies: "OK" or "CODE/REASON".
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String() + "/" + reason(err)
}

func isUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
