// Package apptest starts "a broker on a sandbox" for tests: the sandbox's two
// authorization servers (domains A and B) and a broker built by app.Build
// from app.SandboxConfig and served by App.ServeOn, all on free loopback
// ports, with gRPC and REST clients to it and subject tokens from domain A.
// Everything is stopped when the test ends. Proxy (proxy.go) stands in front
// of a domain's token endpoint to record what the broker sends and to inject
// faults.
//
// With Options.ConfigFile the broker is started as `chainbroker serve` starts
// it, from a file: yaml.Marshal of app.SandboxFile, changed by Mutate, read
// back by app.LoadConfig; a test changes the file with WriteConfig and
// reloads it (App.Reload, App.WatchConfig). Tests that run `chainbroker
// serve` in a process of their own write the same configuration to its file
// (internal/e2e).
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/token"
)

// Options adjust StartWith. The zero value is Start(t, nil): the sandbox
// configuration as is, memory store, plaintext listeners.
type Options struct {
	// Mutate changes the configuration before the broker is built; its
	// listen.grpc and listen.http (and listen.admin with Admin) are already
	// the addresses of the listeners the broker will serve on.
	Mutate func(*config.File)
	// Redis puts the store on a throwaway redis-server (Env.Redis); the
	// test is skipped without redis-server on PATH, unless CI is set.
	Redis        bool
	RedisOptions redistest.Options // of that redis-server (AOF, ...)
	// Sandbox is a running sandbox to wire the broker to (a second replica
	// of a test's broker); nil starts one with SandboxOptions, closed when
	// the test ends.
	Sandbox        *sandbox.Sandbox
	SandboxOptions sandbox.Options // AAddr and BAddr default to free loopback ports
	// Admin serves an admin listener too (listen.admin, Env.AdminAddr).
	Admin bool
	// ConfigFile starts the broker from a configuration file, as
	// `chainbroker serve` does: StartWith writes yaml.Marshal of
	// app.SandboxFile (the file before defaults, as an operator writes it),
	// changed by Mutate, to Env.ConfigPath and builds the broker from
	// app.LoadConfig of it, with its Source: App.Reload (what SIGHUP does)
	// and App.WatchConfig read the file again. Env.WriteConfig changes it.
	ConfigFile bool
	// ConfigPath is where ConfigFile writes (through a symlink, when it is
	// one); "" is a file of t.TempDir().
	ConfigPath string
	// Logger receives the broker's log; nil discards it. LogLevel, when
	// set, is its handler's level, which a reload sets (app.Options).
	Logger   *slog.Logger
	LogLevel *slog.LevelVar
	// Tracer, Stdout: app.Options.
	Tracer trace.TracerProvider
	Stdout io.Writer
	// GRPCCreds and HTTPClient reach a broker serving TLS; nil: plaintext.
	GRPCCreds  credentials.TransportCredentials
	HTTPClient *http.Client
}

// Env is a sandbox and a broker serving on loopback, with clients.
type Env struct {
	Sandbox *sandbox.Sandbox
	App     *app.App
	Redis   *redistest.Server // nil with the memory store

	GRPCAddr, HTTPAddr string
	AdminAddr          string // "" without Options.Admin
	ConfigPath         string // the configuration file; "" without Options.ConfigFile
	HTTPURL            string // http:// (or https:// with tls:) and HTTPAddr
	HTTP               *http.Client

	Conn   *grpc.ClientConn
	Chain  pb.ChainServiceClient
	Audit  pb.AuditServiceClient
	Health healthpb.HealthClient

	t          testing.TB
	file       func() *config.File // Options.ConfigFile: the file's configuration, built afresh
	ownSandbox bool                // started by StartWith: closed by Close
	stop       context.CancelFunc
	served     chan struct{}
	serveErr   error // set before served is closed
	closeOnce  sync.Once
	closeErr   error
}

// Start starts a sandbox and a broker wired to it (app.SandboxConfig,
// changed by mutate when not nil) on free loopback ports. They stop when
// the test ends.
func Start(t testing.TB, mutate func(*config.File)) *Env {
	t.Helper()
	return StartWith(t, Options{Mutate: mutate})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Env {
	t.Helper()
	e := &Env{t: t, Sandbox: o.Sandbox, served: make(chan struct{})}
	if e.Sandbox == nil {
		e.Sandbox, e.ownSandbox = StartSandbox(t, o.SandboxOptions), true
	}
	redisURL := ""
	if o.Redis {
		e.Redis = redistest.New(t, o.RedisOptions)
		redisURL = e.Redis.URL()
	}
	// Listen first, so that the configuration knows its own addresses (the
	// broker's issuer URL is its REST listener).
	ls := server.Listeners{GRPC: listen(t), HTTP: listen(t)}
	if o.Admin {
		ls.Admin = listen(t)
		e.AdminAddr = ls.Admin.Addr().String()
	}
	e.GRPCAddr, e.HTTPAddr = ls.GRPC.Addr().String(), ls.HTTP.Addr().String()
	var (
		cfg *config.File
		src *app.Source
		err error
	)
	if o.ConfigFile {
		e.ConfigPath = o.ConfigPath
		if e.ConfigPath == "" {
			e.ConfigPath = filepath.Join(t.TempDir(), "chainbroker.yaml")
		}
		e.file = func() *config.File {
			a, b, c := app.SandboxDomains(e.Sandbox)
			f := app.SandboxFile(a, b, c, e.GRPCAddr, e.HTTPAddr, redisURL)
			f.Listen.Admin = e.AdminAddr
			if o.Mutate != nil {
				o.Mutate(f)
			}
			return f
		}
		err = writeFile(e.ConfigPath, e.file())
		if err == nil {
			cfg, src, err = app.LoadConfig(e.ConfigPath, LookupEnv)
		}
		if err != nil {
			closeListeners(ls)
			t.Fatal(err)
		}
	} else {
		cfg = app.SandboxConfig(e.Sandbox, e.GRPCAddr, e.HTTPAddr, redisURL)
		cfg.Listen.Admin = e.AdminAddr
		if o.Mutate != nil {
			o.Mutate(cfg)
		}
	}
	a, err := app.Build(context.Background(), cfg, app.Options{LookupEnv: LookupEnv, Logger: o.Logger, Tracer: o.Tracer, Stdout: o.Stdout,
		Source: src, LogLevel: o.LogLevel})
	if err != nil {
		closeListeners(ls)
		t.Fatal(err)
	}
	e.App = a
	e.HTTPURL = "http://" + e.HTTPAddr
	if cfg.TLS.CertFile != "" {
		e.HTTPURL = "https://" + e.HTTPAddr
	}
	e.HTTP = o.HTTPClient
	if e.HTTP == nil {
		e.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	}
	creds := o.GRPCCreds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	if e.Conn, err = grpc.NewClient(e.GRPCAddr, grpc.WithTransportCredentials(creds)); err != nil {
		closeListeners(ls)
		a.Close()
		t.Fatal(err)
	}
	e.Chain, e.Audit, e.Health = pb.NewChainServiceClient(e.Conn), pb.NewAuditServiceClient(e.Conn), healthpb.NewHealthClient(e.Conn)
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	go func() {
		e.serveErr = a.ServeOn(ctx, ls)
		close(e.served)
	}()
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// ConfigYAML is the configuration file of a broker started with
// Options.ConfigFile as StartWith wrote it (app.SandboxFile changed by
// Options.Mutate, built afresh), changed by each of mutate in turn.
func (e *Env) ConfigYAML(t testing.TB, mutate ...func(*config.File)) []byte {
	t.Helper()
	if e.file == nil {
		t.Fatal("apptest: ConfigYAML without Options.ConfigFile")
	}
	f := e.file()
	for _, m := range mutate {
		m(f)
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WriteConfig writes ConfigYAML(mutate...) to ConfigPath, in place (through
// a symlink): the broker reads it at its next Reload or WatchConfig tick.
func (e *Env) WriteConfig(t testing.TB, mutate ...func(*config.File)) {
	t.Helper()
	if err := os.WriteFile(e.ConfigPath, e.ConfigYAML(t, mutate...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(path string, f *config.File) error {
	b, err := yaml.Marshal(f)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// LookupEnv resolves the sandbox's client secrets, then the process
// environment (t.Setenv): what the broker of StartWith reads its secrets with.
func LookupEnv(name string) (string, bool) {
	if v, ok := app.SandboxEnv(name); ok {
		return v, ok
	}
	return os.LookupEnv(name)
}

// StartSandbox starts the sandbox's domains A and B (on free loopback ports
// unless opts names addresses) until the test ends.
func StartSandbox(t testing.TB, opts sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	if opts.AAddr == "" {
		opts.AAddr = "127.0.0.1:0"
	}
	if opts.BAddr == "" {
		opts.BAddr = "127.0.0.1:0"
	}
	sb, err := sandbox.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func closeListeners(ls server.Listeners) {
	for _, l := range []net.Listener{ls.GRPC, ls.HTTP, ls.Admin} {
		if l != nil {
			l.Close()
		}
	}
}

// Stop begins the broker's shutdown, as SIGTERM does: the context ServeOn
// serves under ends. Served tells when it is over.
func (e *Env) Stop() { e.stop() }

// Served is closed when ServeOn has returned; ServeErr is then its error.
func (e *Env) Served() <-chan struct{} { return e.served }

// ServeErr is ServeOn's error, once Served is closed.
func (e *Env) ServeErr() error {
	<-e.served
	return e.serveErr
}

// Close stops the broker and waits for ServeOn to return (failing the test
// if it does not, or if it failed), then closes the clients, the broker and
// the sandbox it started; it returns the broker's Close error. It runs when
// the test ends; a test that needs everything gone earlier (a goroutine
// count) calls it itself.
func (e *Env) Close() error {
	e.closeOnce.Do(func() {
		e.Conn.Close()
		e.HTTP.CloseIdleConnections()
		e.stop()
		l := e.App.Config.Listen
		select {
		case <-e.served:
			if e.serveErr != nil {
				e.t.Errorf("ServeOn: %v", e.serveErr)
			}
		case <-time.After(20*time.Second + l.ShutdownDelay.D() + l.ShutdownTimeout.D()):
			e.t.Error("ServeOn did not return after its context ended")
		}
		e.closeErr = e.App.Close()
		if e.ownSandbox {
			_ = e.Sandbox.Close()
		}
	})
	return e.closeErr
}

// Passwords of the sandbox's demo users, by user name.
var passwords = map[string]string{sandbox.Alice: sandbox.AlicePassword, sandbox.Bob: sandbox.BobPassword}

// SubjectToken is a fresh access token of a demo user (sandbox.Alice,
// sandbox.Bob) from domain A, by the password grant as a demo caller gets
// it. t is the calling (sub)test.
func (e *Env) SubjectToken(t testing.TB, user string) string {
	t.Helper()
	return SubjectToken(t, e.Sandbox, user)
}

// SubjectToken is Env.SubjectToken for any sandbox.
func SubjectToken(t testing.TB, sb *sandbox.Sandbox, user string) string {
	t.Helper()
	pw, ok := passwords[user]
	if !ok {
		pw = user
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok, err := sb.A.SubjectToken(ctx, user, pw, "")
	if err != nil {
		t.Fatalf("subject token for %s: %v", user, err)
	}
	return tok
}

// Post posts body as JSON to the REST listener and returns the status and
// the response body.
func (e *Env) Post(t testing.TB, path string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.HTTP.Post(e.HTTPURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Get gets path from the REST listener.
func (e *Env) Get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := e.HTTP.Get(e.HTTPURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// LastEvent is the newest audit event (the broker's caller must have the
// audit role, as the sandbox configuration's anonymous caller has).
func (e *Env) LastEvent(t testing.TB) *pb.AuditEvent {
	t.Helper()
	resp, err := e.Audit.ListAuditEvents(callCtx(t), &pb.ListAuditEventsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Events) != 1 {
		t.Fatalf("want 1 audit event, got %d", len(resp.Events))
	}
	return resp.Events[0]
}

// CheckBToken verifies an access token with domain B's JWKS, checks that B
// issued it, and returns its claims.
func (e *Env) CheckBToken(t testing.TB, access string) token.Claims {
	t.Helper()
	v := token.NewRemoteVerifier(token.RemoteKeys{URL: e.Sandbox.B.JWKSURI()}, nil)
	tok, err := v.Verify(callCtx(t), access)
	if err != nil {
		t.Fatalf("B's access token does not verify with B's JWKS: %v", err)
	}
	if tok.Claims.Issuer != e.Sandbox.B.Issuer() {
		t.Errorf("access token iss = %q, want domain B %q", tok.Claims.Issuer, e.Sandbox.B.Issuer())
	}
	return tok.Claims
}

// WaitHealth waits (up to 10 s) for the gRPC health of the chain service
// to be want.
func (e *Env) WaitHealth(t testing.TB, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := e.Health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: "chainbroker.v1.ChainService"})
		if err == nil && h.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health: %v %v, want %v", h, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
