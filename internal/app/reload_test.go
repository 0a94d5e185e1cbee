package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

// The reload tests' broker reads its configuration from a file, as
// `chainbroker serve` does (apptest.Options.ConfigFile): yaml.Marshal of
// app.SandboxFile with API key callers (key NAME-key) instead of anonymous
// ones, and each change to it is a Go value written with WriteConfig.

// callers makes the API key callers of names (key NAME-key) the only
// callers, each with a policy entry; those of granted may chain A -> B (any
// scope) and read the audit trail.
func callers(names []string, granted ...string) func(*config.File) {
	return func(f *config.File) {
		f.Callers, f.Policy = config.Callers{}, nil
		for _, n := range names {
			f.Callers.APIKeys = append(f.Callers.APIKeys, config.APIKey{Name: n, SHA256: auth.HashAPIKey(n + "-key")})
			p := config.PolicyEntry{Caller: n}
			if slices.Contains(granted, n) {
				p.Roles = []string{"audit"}
				p.Chains = []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"}}}
			}
			f.Policy = append(f.Policy, p)
		}
	}
}

// baseFile is the file every reload test starts from: callers agent and
// viewer, agent granted A -> B.
func baseFile(f *config.File) {
	f.Listen.ShutdownTimeout = config.Duration(5 * time.Second)
	callers([]string{"agent", "viewer"}, "agent")(f)
}

// rawYAML is y with changes no config.File can hold (an invalid value, an
// unknown key), made on its YAML tree.
func rawYAML(t *testing.T, y []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// reloadEnv is a broker started from a configuration file, serving on
// loopback, with the sandbox's domains.
type reloadEnv struct {
	*apptest.Env
	logs  *testutil.Buffer
	level *slog.LevelVar
	cur   []func(*config.File) // the changes to baseFile the file was last written with
}

// newReloadEnv starts a broker from the file baseFile, changed by initial,
// makes. path, when not "", is where the file goes (a symlink layout).
func newReloadEnv(t *testing.T, path string, initial ...func(*config.File)) *reloadEnv {
	t.Helper()
	e := &reloadEnv{logs: &testutil.Buffer{}, level: new(slog.LevelVar)}
	e.Env = apptest.StartWith(t, apptest.Options{
		ConfigFile: true,
		ConfigPath: path,
		Mutate: func(f *config.File) {
			baseFile(f)
			for _, m := range initial {
				m(f)
			}
		},
		Logger:   slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: e.level})),
		LogLevel: e.level,
	})
	return e
}

// write writes the file the changes make (in place).
func (e *reloadEnv) write(t *testing.T, changes ...func(*config.File)) {
	t.Helper()
	e.cur = changes
	e.WriteConfig(t, changes...)
}

// edit writes the current file changed by change.
func (e *reloadEnv) edit(t *testing.T, change func(*config.File)) {
	t.Helper()
	e.write(t, append(slices.Clone(e.cur), change)...)
}

// reload is what SIGHUP does (cmd/chainbroker calls Reload on it).
func (e *reloadEnv) reload(t *testing.T) error {
	t.Helper()
	return e.App.Reload(ctxT(t), "SIGHUP")
}

func (e *reloadEnv) subject(t *testing.T) string {
	t.Helper()
	return e.SubjectToken(t, sandbox.Alice)
}

// chainAs chains subject A -> B as caller (API key NAME-key).
func (e *reloadEnv) chainAs(ctx context.Context, caller, subject string) error {
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", caller+"-key")
	_, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	return err
}

// outcome is "OK" or the call's reason.
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	if r := reason(err); r != "" {
		return r
	}
	return status.Code(err).String()
}

// metric reads one sample of the running broker's /metrics.
func (e *reloadEnv) metric(t *testing.T, sample string) float64 {
	t.Helper()
	code, body := e.Get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", sample)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const (
	reloadsOK    = `chainbroker_config_reloads_total{result="ok"}`
	reloadsError = `chainbroker_config_reloads_total{result="error"}`
)

// A reload changes callers, policy, chains and domains of a running broker
// at once, with no restart; an invalid file, a failed discovery and a
// change to a restart-only key are refused as a whole, keeping the running
// configuration, each problem logged by YAML path and counted.
func TestReloadAppliesAndRefuses(t *testing.T) {
	e := newReloadEnv(t, "")
	subject := e.subject(t)
	want := func(step string, want map[string]string) {
		t.Helper()
		for _, caller := range slices.Sorted(func(yield func(string) bool) {
			for k := range want {
				if !yield(k) {
					return
				}
			}
		}) {
			if got := outcome(e.chainAs(ctxT(t), caller, subject)); got != want[caller] {
				t.Errorf("%s: %s chains: %s, want %s", step, caller, got, want[caller])
			}
		}
	}
	want("start", map[string]string{"agent": "OK", "agent2": "UNAUTHENTICATED", "viewer": "CHAIN_NOT_ALLOWED"})
	if e.metric(t, reloadsOK) != 0 || e.metric(t, reloadsError) != 0 || e.metric(t, "chainbroker_config_hash") == 0 {
		t.Error("metrics at start-up: want no reloads and the file's hash")
	}
	hash0 := e.metric(t, "chainbroker_config_hash")

	// A caller added and granted, the grant of another removed, log level.
	three := []string{"agent", "viewer", "agent2"}
	debug := func(f *config.File) { f.Log.Level = "debug" }
	good := []func(*config.File){callers(three, "agent2"), debug}
	e.write(t, good...)
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("grants swapped", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})
	if e.level.Level() != slog.LevelDebug {
		t.Errorf("log level after the reload: %v", e.level.Level())
	}
	if e.metric(t, reloadsOK) != 1 || e.metric(t, "chainbroker_config_hash") == hash0 {
		t.Error("metrics: want 1 ok reload and a new hash")
	}
	if !strings.Contains(e.logs.String(), `"msg":"configuration reloaded"`) {
		t.Error("no log line for the applied reload")
	}

	// An invalid file: every problem by YAML path; nothing changes.
	bothGranted := callers(three, "agent", "agent2")
	invalid := rawYAML(t, e.ConfigYAML(t, append(slices.Clone(good), bothGranted)...), func(m map[string]any) {
		m["domains"].([]any)[1].(map[string]any)["timeout"] = "soon"
		m["rate_limit"] = map[string]any{"requests_per_secnd": 3}
	})
	if err := os.WriteFile(e.ConfigPath, invalid, 0o600); err != nil {
		t.Fatal(err)
	}
	err := e.reload(t)
	var re *app.ReloadError
	if !errors.As(err, &re) || len(re.Problems) != 2 {
		t.Fatalf("invalid file: %v, want a ReloadError with 2 problems", err)
	}
	for _, p := range []string{"domains[1].timeout", "rate_limit.requests_per_secnd: unknown key"} {
		if !strings.Contains(e.logs.String(), p) {
			t.Errorf("the log does not name %q:\n%s", p, e.logs.String())
		}
	}
	want("invalid file refused", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})
	if e.metric(t, reloadsError) != 1 || e.metric(t, reloadsOK) != 1 || e.metric(t, "chainbroker_config_last_reload_successful") != 0 {
		t.Error("metrics: want 1 error reload, still 1 ok, last reload unsuccessful")
	}

	// A restart-only key changed along with the policy: refused as a whole.
	e.write(t, good...)
	e.edit(t, func(f *config.File) {
		bothGranted(f)
		f.Log = config.Log{Level: "debug", Format: "text"}
		f.Store.AuditRetention = config.Duration(time.Hour)
	})
	err = e.reload(t)
	if !errors.As(err, &re) || !slices.Equal(re.RestartKeys, []string{"store.audit_retention", "log.format"}) {
		t.Fatalf("restart-only change: %v, want a ReloadError naming store.audit_retention and log.format", err)
	}
	for _, k := range re.RestartKeys {
		if !strings.Contains(e.logs.String(), `"key":"`+k+`"`) {
			t.Errorf("the log does not name the key %s", k)
		}
	}
	want("restart-only change refused", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})
	if e.metric(t, reloadsError) != 2 {
		t.Error("metrics: want 2 error reloads")
	}

	// A new domain whose discovery fails: refused, by its YAML path.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	e.write(t, good...)
	e.edit(t, func(f *config.File) {
		bothGranted(f)
		f.Domains = append(f.Domains, config.Domain{Name: "domain-x", Issuer: dead.URL, Discovery: true, AllowInsecureHTTP: true,
			Timeout: config.Duration(2 * time.Second), Client: config.Client{ClientID: "c", AuthMethod: "none"}})
	})
	if err := e.reload(t); err == nil || !strings.Contains(err.Error(), "domains[3]: discovery of") {
		t.Fatalf("failed discovery: %v", err)
	}
	want("failed discovery refused", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})

	// Domain B removed (with the chain): refused at once; added back: works.
	// (A configuration needs a chain: A -> X, which no caller may use.)
	withC := func(f *config.File) {
		callers(three)(f) // nobody granted A -> B
		f.Domains = append(f.Domains, config.Domain{Name: "domain-x", Issuer: "https://x.example", TokenEndpoint: "https://x.example/token",
			Client: config.Client{ClientID: "c", AuthMethod: "none"}})
		f.Chains = []config.Chain{{Source: "domain-a", Target: "domain-x"}}
	}
	e.write(t, good...)
	e.edit(t, func(f *config.File) {
		withC(f)
		f.Domains = slices.DeleteFunc(f.Domains, func(d config.Domain) bool { return d.Name == "domain-b" })
	})
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("domain B removed", map[string]string{"agent2": "DOMAIN_UNKNOWN"})
	e.write(t, good...)
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("domain B back", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})
	// The chain alone removed.
	e.edit(t, withC)
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("chain removed", map[string]string{"agent2": "CHAIN_NOT_ALLOWED"})
	// The caller removed.
	e.write(t, debug)
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("caller removed", map[string]string{"agent": "OK", "agent2": "UNAUTHENTICATED"})
	if got := e.metric(t, reloadsOK); got != 5 {
		t.Errorf("%v ok reloads, want 5", got)
	}
	if e.metric(t, "chainbroker_config_last_reload_successful") != 1 {
		t.Error("the last reload succeeded")
	}
	if strings.Contains(e.logs.String(), "agent-key") || strings.Contains(e.logs.String(), subject) {
		t.Error("a caller key or a token was logged")
	}
}

// The file is watched: a change applies without a signal, whether the file
// is rewritten in place or, as in a Kubernetes ConfigMap volume, replaced
// by swapping the symlink of its directory; an invalid content is counted
// once and not retried until the file changes again.
func TestReloadOnFileChange(t *testing.T) {
	// The ConfigMap layout: chainbroker.yaml -> ..data/chainbroker.yaml,
	// ..data -> ..v1, and an update swaps ..data to ..v2 with a rename.
	dir := t.TempDir()
	version := 0
	publish := func(content []byte) {
		t.Helper()
		version++
		v := filepath.Join(dir, "..v"+strconv.Itoa(version))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "chainbroker.yaml"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(v), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(nil) // the broker's first file is written through the link
	link := filepath.Join(dir, "chainbroker.yaml")
	if err := os.Symlink(filepath.Join("..data", "chainbroker.yaml"), link); err != nil {
		t.Fatal(err)
	}
	e := newReloadEnv(t, link)
	ctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { e.App.WatchConfig(ctx, 20*time.Millisecond); close(watched) }()
	t.Cleanup(func() { stop(); <-watched })

	subject := e.subject(t)
	waitOutcome := func(step, caller, want string) {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, step, func() bool { return outcome(e.chainAs(ctxT(t), caller, subject)) == want })
	}
	waitOutcome("start", "agent", "OK")

	// Symlink swap: viewer granted, agent not.
	viewerGranted := callers([]string{"agent", "viewer"}, "viewer")
	publish(e.ConfigYAML(t, viewerGranted))
	waitOutcome("the swapped file applied", "viewer", "OK")
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "CHAIN_NOT_ALLOWED" {
		t.Errorf("agent after the swap: %s", got)
	}

	// In place: an invalid content, counted once.
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatal(err)
	}
	invalid := rawYAML(t, e.ConfigYAML(t, viewerGranted), func(m map[string]any) { m["bogus"] = 1 })
	if err := os.WriteFile(target, invalid, 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the invalid file counted", func() bool { return e.metric(t, reloadsError) == 1 })
	if got := outcome(e.chainAs(ctxT(t), "viewer", subject)); got != "OK" {
		t.Errorf("viewer after the invalid file: %s", got)
	}
	// Then a valid content in place: agent granted again.
	if err := os.WriteFile(target, e.ConfigYAML(t), 0o600); err != nil {
		t.Fatal(err)
	}
	waitOutcome("the rewritten file applied", "agent", "OK")
	if got := e.metric(t, reloadsError); got != 1 {
		t.Errorf("%v error reloads: an invalid content was retried without a change", got)
	}
	if got := e.metric(t, reloadsOK); got != 2 {
		t.Errorf("%v ok reloads, want 2", got)
	}
	if !strings.Contains(e.logs.String(), `"trigger":"file change"`) {
		t.Error("reloads by the watcher are not logged as such")
	}
}

// A reload keeps what it does not change: an open circuit breaker and the
// JWKS verifier (key cache) of an unchanged domain, and the caller JWT
// verifier; a changed domain starts afresh.
func TestReloadKeepsUnchangedDomains(t *testing.T) {
	e := newReloadEnv(t, "", func(f *config.File) {
		f.Domains[0].MaxAttempts = 1
		f.Domains[0].CircuitBreaker = config.CircuitBreaker{Failures: 2, Cooldown: config.Duration(time.Hour)}
	})
	subject := e.subject(t)
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Status: http.StatusServiceUnavailable})
	for i := range 2 {
		if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "UPSTREAM_UNAVAILABLE" {
			t.Fatalf("failure %d: %s", i, got)
		}
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "UPSTREAM_CIRCUIT_OPEN" {
		t.Fatalf("after 2 failures: %s", got)
	}
	_, b0 := e.App.Current()
	keys0 := b0.Domains()
	exchanges := e.Sandbox.A.ExchangeCount()

	// Policy and callers change; the domains do not.
	e.edit(t, callers([]string{"agent", "viewer", "agent2"}, "agent", "agent2"))
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent2", subject)); got != "UPSTREAM_CIRCUIT_OPEN" {
		t.Errorf("an unchanged domain's open circuit after the reload: %s, want UPSTREAM_CIRCUIT_OPEN", got)
	}
	if e.Sandbox.A.ExchangeCount() != exchanges {
		t.Error("the open circuit was reset: domain A was called")
	}
	_, b1 := e.App.Current()
	if b1 == b0 {
		t.Fatal("the reload did not build a new broker")
	}
	for i, d := range b1.Domains() {
		if d.Keys != keys0[i].Keys {
			t.Errorf("domain %s: a new JWKS verifier for an unchanged domain", d.Name)
		}
	}

	// Domain A changed: a new verifier and a closed circuit; B kept.
	e.Sandbox.A.ResetMisbehaviour()
	e.edit(t, func(f *config.File) { f.Domains[0].Timeout = config.Duration(9 * time.Second) })
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	_, b2 := e.App.Current()
	if d := b2.Domains(); d[0].Keys == keys0[0].Keys || d[1].Keys != keys0[1].Keys {
		t.Error("want a new verifier for domain A (changed), the same for domain B")
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Errorf("a changed domain keeps no circuit state: %s, want OK", got)
	}
	if !strings.Contains(e.logs.String(), `"domains_rebuilt":["domain-a"],"domains_kept":["domain-b","domain-c"]`) {
		t.Errorf("the reload's log line does not say which domains were kept:\n%s", e.logs.String())
	}
}

// callers.jwt keeps its verifier (and key cache) across a reload that does
// not change it, and gets a new one when it changes.
func TestReloadKeepsCallerJWTKeys(t *testing.T) {
	ci := newCallerIssuer(t)
	e := newReloadEnv(t, "")
	// callers.jwt with audience aud, svc-1 (a JWT caller) granted A -> B,
	// and the API key callers agent and viewer, those of granted granted.
	write := func(aud string, granted ...string) {
		t.Helper()
		e.write(t, callers([]string{"agent", "viewer"}, granted...), func(f *config.File) {
			f.Callers.JWT = &config.CallerJWT{Issuer: callerIssuerName, JWKSURI: ci.url, Audience: aud, AllowInsecureHTTP: true}
			f.Policy = append([]config.PolicyEntry{{Caller: "svc-1", Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b"}}}}, f.Policy...)
		})
		if err := e.reload(t); err != nil {
			t.Fatal(err)
		}
	}
	write("chainbroker", "agent")
	subject := e.subject(t)
	svc := func() string {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+ci.token(t, "svc-1", "chainbroker", time.Minute))
		_, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		return outcome(err)
	}
	if got := svc(); got != "OK" {
		t.Fatalf("svc-1: %s", got)
	}
	hits := ci.hits.Load()
	keys := app.CallerJWTKeys(e.App)
	write("chainbroker", "viewer") // callers.jwt unchanged
	if got := svc(); got != "OK" {
		t.Fatalf("svc-1 after the reload: %s", got)
	}
	if app.CallerJWTKeys(e.App) != keys || ci.hits.Load() != hits {
		t.Error("an unchanged callers.jwt lost its verifier: the JWKS was fetched again")
	}
	write("other-audience", "viewer")
	if app.CallerJWTKeys(e.App) == keys {
		t.Error("a changed callers.jwt kept its verifier")
	}
	if got := svc(); got != "UNAUTHENTICATED" {
		t.Errorf("svc-1's token for the old audience: %s", got)
	}
}

// A chain in flight during a reload finishes under the configuration it
// started with; the next one uses the new configuration.
func TestReloadChainInFlightKeepsItsConfiguration(t *testing.T) {
	e := newReloadEnv(t, "")
	gate := apptest.NewProxy(t, "")
	e.edit(t, gate.Front(1, nil)) // domain B's token endpoint behind the proxy
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	subject := e.subject(t)
	arrived := gate.Hold()
	done := make(chan error, 1)
	go func() { done <- e.chainAs(ctxT(t), "agent", subject) }()
	select {
	case <-arrived: // hop 2 under way
	case err := <-done:
		t.Fatalf("the chain ended before hop 2: %v", err)
	}
	e.edit(t, callers([]string{"agent", "viewer"})) // nobody granted
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", e.subject(t))); got != "CHAIN_NOT_ALLOWED" {
		t.Errorf("a chain after the reload: %s, want CHAIN_NOT_ALLOWED", got)
	}
	gate.Release()
	if err := <-done; err != nil {
		t.Errorf("the chain in flight during the reload: %v, want it to finish under its configuration", err)
	}
}

// Chains run without pause while the configuration is reloaded, by SIGHUP's
// handler and by the file watcher at once: every chain sees one whole
// configuration (agent granted and agent2 unknown, or the reverse), never
// a mix nor an error of its own (run with -race).
func TestReloadRaceWithChainsInFlight(t *testing.T) {
	e := newReloadEnv(t, "")
	v2 := callers([]string{"agent2", "viewer"}, "agent2") // v1: the base file
	ctx, stop := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { e.App.WatchConfig(ctx, 5*time.Millisecond); close(watched) }()
	defer func() { stop(); <-watched }()

	subject := e.subject(t)
	var (
		wg       sync.WaitGroup
		running  atomic.Bool
		chains   atomic.Int64
		mu       sync.Mutex
		outcomes = map[string]int{}
	)
	running.Store(true)
	for w := range 4 {
		wg.Go(func() {
			caller := []string{"agent", "agent2"}[w%2]
			for running.Load() {
				got := caller + ":" + outcome(e.chainAs(ctxT(t), caller, subject))
				chains.Add(1)
				mu.Lock()
				outcomes[got]++
				mu.Unlock()
			}
		})
	}
	for i := range 30 {
		if i%2 == 0 {
			e.write(t, v2)
		} else {
			e.write(t)
		}
		if err := e.reload(t); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	e.write(t)
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	running.Store(false)
	wg.Wait()
	allowed := []string{"agent:OK", "agent:UNAUTHENTICATED", "agent2:OK", "agent2:UNAUTHENTICATED"}
	for o, n := range outcomes {
		if !slices.Contains(allowed, o) {
			t.Errorf("%d chains ended %s", n, o)
		}
	}
	if chains.Load() == 0 {
		t.Fatal("no chain ran")
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Errorf("agent under the final configuration: %s", got)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent2", subject)); got != "UNAUTHENTICATED" {
		t.Errorf("agent2 under the final configuration: %s", got)
	}
	t.Logf("%d chains during 31 reloads: %v", chains.Load(), outcomes)
}

// Rate limits and the token cache (its keys and a target's cache) reload
// too: turned on by a reload, they apply to the next call.
func TestReloadRateLimitAndCache(t *testing.T) {
	t.Setenv(cacheKeyEnv, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	e := newReloadEnv(t, "")
	subject := e.subject(t)
	for i := range 3 {
		if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
			t.Fatalf("chain %d before the reload: %s", i, got)
		}
	}
	e.edit(t, func(f *config.File) {
		f.Domains[1].Cache = config.DomainCache{Enabled: true}
		f.Cache = config.Cache{Keys: []config.CacheKey{{ID: "k1", SecretEnv: cacheKeyEnv}}}
		f.RateLimit = config.RateLimit{RequestsPerSecond: 0.001, Burst: 2}
	})
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	bearer := e.Sandbox.B.JWTBearerCount()
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Fatalf("first chain after the reload: %s", got)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" || e.Sandbox.B.JWTBearerCount() != bearer+1 {
		t.Errorf("second chain after the reload: %s, %d grants presented to B (want 1: a cache hit)", got, e.Sandbox.B.JWTBearerCount()-bearer)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "RATE_LIMITED" {
		t.Errorf("third chain after the reload: %s, want RATE_LIMITED (burst 2)", got)
	}
	// The rate limit removed: the next call passes.
	e.edit(t, func(f *config.File) { f.RateLimit = config.RateLimit{} })
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Errorf("after the rate limit was removed: %s", got)
	}
}
