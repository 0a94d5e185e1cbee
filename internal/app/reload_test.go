package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/sandbox"
)

// reloadFile is the configuration file of the reload tests, written as an
// operator would: API key callers (key: NAME-key), the policy, domains A and
// B of the sandbox, and the chain A -> B.
type reloadFile struct {
	grpc, http string
	sb         *sandbox.Sandbox
	callers    []string // API key callers
	grants     []string // callers granted A -> B
	noChain    bool     // leave the chain (and every grant) out
	noDomainB  bool     // leave domain B out (and the chain)
	domainA    string   // more keys of domain A, one per line, YAML flow or block at 4 spaces
	domainB    string   // idem for domain B
	bToken     string   // domain B's token endpoint; default the sandbox's
	extra      string   // top-level YAML appended
	extraDoms  string   // more domains, as YAML list items at 2 spaces
	extraChain string   // more chains, idem
}

func (f reloadFile) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: {grpc: %q, http: %q, shutdown_timeout: 5s}\n", f.grpc, f.http)
	b.WriteString("callers:\n  api_keys:\n")
	for _, c := range f.callers {
		fmt.Fprintf(&b, "    - {name: %s, sha256: %s}\n", c, auth.HashAPIKey(c+"-key"))
	}
	b.WriteString("policy:\n")
	for _, c := range f.callers {
		if slices.Contains(f.grants, c) && !f.noChain && !f.noDomainB {
			fmt.Fprintf(&b, "  - {caller: %s, roles: [audit], chains: [{source: domain-a, target: domain-b, scopes: [\"*\"]}]}\n", c)
		} else {
			fmt.Fprintf(&b, "  - {caller: %s}\n", c)
		}
	}
	fmt.Fprintf(&b, `domains:
  - name: domain-a
    issuer: %q
    token_endpoint: %q
    jwks_uri: %q
    verify_subject_token: true
    allow_insecure_http: true
    client: {client_id: %s, client_secret_env: %s}
%s`, f.sb.A.Issuer(), f.sb.A.TokenEndpoint(), f.sb.A.JWKSURI(), sandbox.BrokerClientID, SandboxSecretAEnv, indent(f.domainA))
	if !f.noDomainB {
		bToken := f.bToken
		if bToken == "" {
			bToken = f.sb.B.TokenEndpoint()
		}
		fmt.Fprintf(&b, `  - name: domain-b
    issuer: %q
    token_endpoint: %q
    jwks_uri: %q
    allow_insecure_http: true
    client: {client_id: %s, client_secret_env: %s}
%s`, f.sb.B.Issuer(), bToken, f.sb.B.JWKSURI(), sandbox.BrokerClientID, SandboxSecretBEnv, indent(f.domainB))
	}
	b.WriteString(f.extraDoms)
	if chainAB := !f.noChain && !f.noDomainB; chainAB || f.extraChain != "" {
		b.WriteString("chains:\n")
		if chainAB {
			b.WriteString("  - {source: domain-a, target: domain-b}\n")
		}
		b.WriteString(f.extraChain)
	}
	b.WriteString(f.extra)
	return b.String()
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for l := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// reloadEnv is a broker started from a file, as `chainbroker serve` starts
// it, serving on loopback, with the sandbox's domains.
type reloadEnv struct {
	sb       *sandbox.Sandbox
	app      *App
	file     reloadFile
	path     string
	logs     *testutil.Buffer
	level    *slog.LevelVar
	conn     *grpc.ClientConn
	chainSvc pb.ChainServiceClient
	httpURL  string
	ctx      context.Context // the serving context
}

// newReloadEnv writes the file that edit makes of the base (callers agent
// and viewer, agent granted A -> B), loads it with LoadConfig and serves.
// path, when not "", is where the file goes (a symlink layout).
func newReloadEnv(t *testing.T, edit func(*reloadFile)) *reloadEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sb, err := sandbox.Start(ctx, sandbox.Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &reloadEnv{sb: sb, logs: &testutil.Buffer{}, level: new(slog.LevelVar), ctx: ctx,
		path: filepath.Join(t.TempDir(), "chainbroker.yaml"), httpURL: "http://" + httpLis.Addr().String()}
	e.file = reloadFile{grpc: grpcLis.Addr().String(), http: httpLis.Addr().String(), sb: sb,
		callers: []string{"agent", "viewer"}, grants: []string{"agent"}}
	if edit != nil {
		edit(&e.file)
	}
	e.write(t, e.file)
	cfg, src, err := LoadConfig(e.path, testLookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: e.level}))
	a, err := Build(ctx, cfg, Options{LookupEnv: testLookupEnv, Logger: log, Source: src, LogLevel: e.level})
	if err != nil {
		t.Fatal(err)
	}
	e.app = a
	served := make(chan error, 1)
	go func() { served <- a.Server.Serve(ctx, grpcLis, httpLis) }()
	if e.conn, err = grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	e.chainSvc = pb.NewChainServiceClient(e.conn)
	t.Cleanup(func() {
		e.conn.Close()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after cancel")
		}
		a.Close()
		sb.Close()
	})
	return e
}

// write writes f to the configuration file (in place).
func (e *reloadEnv) write(t *testing.T, f reloadFile) {
	t.Helper()
	e.file = f
	if err := os.WriteFile(e.path, []byte(f.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// edit writes the current file changed by change.
func (e *reloadEnv) edit(t *testing.T, change func(*reloadFile)) {
	t.Helper()
	f := e.file
	f.callers, f.grants = slices.Clone(f.callers), slices.Clone(f.grants)
	change(&f)
	e.write(t, f)
}

// reload is what SIGHUP does (cmd/chainbroker calls Reload on it).
func (e *reloadEnv) reload(t *testing.T) error {
	t.Helper()
	return e.app.Reload(ctxT(t), "SIGHUP")
}

func (e *reloadEnv) subject(t *testing.T) string {
	t.Helper()
	s, err := e.sb.A.SubjectToken(ctxT(t), sandbox.Alice, sandbox.AlicePassword, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chainAs chains subject A -> B as caller (API key NAME-key).
func (e *reloadEnv) chainAs(ctx context.Context, caller, subject string) error {
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", caller+"-key")
	_, err := e.chainSvc.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
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
	resp, err := http.Get(e.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
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
	e := newReloadEnv(t, nil)
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
	e.edit(t, func(f *reloadFile) {
		f.callers = append(f.callers, "agent2")
		f.grants = []string{"agent2"}
		f.extra = "log: {level: debug}\n"
	})
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
	good := e.file
	e.edit(t, func(f *reloadFile) {
		f.grants = []string{"agent", "agent2"}
		f.domainB = "timeout: soon"
		f.extra = "log: {level: debug}\nrate_limit: {requests_per_secnd: 3}\n"
	})
	err := e.reload(t)
	var re *ReloadError
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
	e.write(t, good)
	e.edit(t, func(f *reloadFile) {
		f.grants = []string{"agent", "agent2"}
		f.extra = "log: {level: debug, format: text}\nstore: {audit_retention: 1h}\n"
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
	e.write(t, good)
	e.edit(t, func(f *reloadFile) {
		f.grants = []string{"agent", "agent2"}
		f.extraDoms = fmt.Sprintf("  - {name: domain-c, issuer: %q, discovery: true, allow_insecure_http: true, timeout: 2s, client: {client_id: c, auth_method: none}}\n", dead.URL)
	})
	if err := e.reload(t); err == nil || !strings.Contains(err.Error(), "domains[2]: discovery of") {
		t.Fatalf("failed discovery: %v", err)
	}
	want("failed discovery refused", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})

	// Domain B removed (with the chain): refused at once; added back: works.
	// (A configuration needs a chain: A -> C, which no caller may use.)
	withC := func(f *reloadFile) {
		f.extraDoms = "  - {name: domain-c, issuer: https://c.example, token_endpoint: https://c.example/token, client: {client_id: c, auth_method: none}}\n"
		f.extraChain = "  - {source: domain-a, target: domain-c}\n"
	}
	e.write(t, good)
	e.edit(t, func(f *reloadFile) { withC(f); f.noDomainB = true })
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("domain B removed", map[string]string{"agent2": "DOMAIN_UNKNOWN"})
	e.write(t, good)
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("domain B back", map[string]string{"agent": "CHAIN_NOT_ALLOWED", "agent2": "OK"})
	// The chain alone removed.
	e.edit(t, func(f *reloadFile) { withC(f); f.noChain = true })
	if err := e.reload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	want("chain removed", map[string]string{"agent2": "CHAIN_NOT_ALLOWED"})
	// The caller removed.
	e.write(t, good)
	e.edit(t, func(f *reloadFile) { f.callers, f.grants = []string{"agent", "viewer"}, []string{"agent"} })
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
	e := newReloadEnv(t, nil)
	// The ConfigMap layout: chainbroker.yaml -> ..data/chainbroker.yaml,
	// ..data -> ..v1, and an update swaps ..data to ..v2 with a rename.
	dir := t.TempDir()
	version := 0
	publish := func(content string) {
		t.Helper()
		version++
		v := filepath.Join(dir, fmt.Sprintf("..v%d", version))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "chainbroker.yaml"), []byte(content), 0o600); err != nil {
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
	publish(e.file.yaml())
	link := filepath.Join(dir, "chainbroker.yaml")
	if err := os.Symlink(filepath.Join("..data", "chainbroker.yaml"), link); err != nil {
		t.Fatal(err)
	}
	e.app.live.src.Path = link // before the watch starts: the same file, through the layout
	ctx, stop := context.WithCancel(e.ctx)
	watched := make(chan struct{})
	go func() { e.app.WatchConfig(ctx, 20*time.Millisecond); close(watched) }()
	t.Cleanup(func() { stop(); <-watched })

	subject := e.subject(t)
	waitOutcome := func(step, caller, want string) {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, step, func() bool { return outcome(e.chainAs(ctxT(t), caller, subject)) == want })
	}
	waitOutcome("start", "agent", "OK")

	// Symlink swap: viewer granted, agent not.
	f := e.file
	f.grants = []string{"viewer"}
	publish(f.yaml())
	waitOutcome("the swapped file applied", "viewer", "OK")
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "CHAIN_NOT_ALLOWED" {
		t.Errorf("agent after the swap: %s", got)
	}

	// In place: an invalid content, counted once.
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte(f.yaml()+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "the invalid file counted", func() bool { return e.metric(t, reloadsError) == 1 })
	if got := outcome(e.chainAs(ctxT(t), "viewer", subject)); got != "OK" {
		t.Errorf("viewer after the invalid file: %s", got)
	}
	// Then a valid content in place: agent granted again.
	f.grants = []string{"agent"}
	if err := os.WriteFile(target, []byte(f.yaml()), 0o600); err != nil {
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
	e := newReloadEnv(t, func(f *reloadFile) {
		f.domainA = "max_attempts: 1\ncircuit_breaker: {failures: 2, cooldown: 1h}"
	})
	subject := e.subject(t)
	e.sb.A.SetMisbehaviour(sandbox.Misbehaviour{Status: http.StatusServiceUnavailable})
	for i := range 2 {
		if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "UPSTREAM_UNAVAILABLE" {
			t.Fatalf("failure %d: %s", i, got)
		}
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "UPSTREAM_CIRCUIT_OPEN" {
		t.Fatalf("after 2 failures: %s", got)
	}
	_, b0 := e.app.Current()
	keys0 := b0.Domains()
	exchanges := e.sb.A.ExchangeCount()

	// Policy and callers change; the domains do not.
	e.edit(t, func(f *reloadFile) {
		f.callers = append(f.callers, "agent2")
		f.grants = append(f.grants, "agent2")
	})
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent2", subject)); got != "UPSTREAM_CIRCUIT_OPEN" {
		t.Errorf("an unchanged domain's open circuit after the reload: %s, want UPSTREAM_CIRCUIT_OPEN", got)
	}
	if e.sb.A.ExchangeCount() != exchanges {
		t.Error("the open circuit was reset: domain A was called")
	}
	_, b1 := e.app.Current()
	if b1 == b0 {
		t.Fatal("the reload did not build a new broker")
	}
	for i, d := range b1.Domains() {
		if d.Keys != keys0[i].Keys {
			t.Errorf("domain %s: a new JWKS verifier for an unchanged domain", d.Name)
		}
	}

	// Domain A changed: a new verifier and a closed circuit; B kept.
	e.sb.A.ResetMisbehaviour()
	e.edit(t, func(f *reloadFile) {
		f.domainA = "max_attempts: 1\ncircuit_breaker: {failures: 2, cooldown: 1h}\ntimeout: 9s"
	})
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	_, b2 := e.app.Current()
	if d := b2.Domains(); d[0].Keys == keys0[0].Keys || d[1].Keys != keys0[1].Keys {
		t.Error("want a new verifier for domain A (changed), the same for domain B")
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Errorf("a changed domain keeps no circuit state: %s, want OK", got)
	}
	if !strings.Contains(e.logs.String(), `"domains_rebuilt":["domain-a"],"domains_kept":["domain-b"]`) {
		t.Errorf("the reload's log line does not say which domains were kept:\n%s", e.logs.String())
	}
}

// callers.jwt keeps its verifier (and key cache) across a reload that does
// not change it, and gets a new one when it changes.
func TestReloadKeepsCallerJWTKeys(t *testing.T) {
	ci := newCallerIssuer(t)
	jwt := func(aud string) string {
		return fmt.Sprintf("  jwt: {issuer: %q, jwks_uri: %q, audience: %s, allow_insecure_http: true}\n", callerIssuerName, ci.url, aud)
	}
	e := newReloadEnv(t, nil)
	// The callers block is generated; put callers.jwt in by rewriting it.
	write := func(aud string, grants ...string) {
		t.Helper()
		f := e.file
		f.grants = grants
		y := strings.Replace(f.yaml(), "callers:\n", "callers:\n"+jwt(aud), 1)
		y = strings.Replace(y, "policy:\n", "policy:\n  - {caller: svc-1, chains: [{source: domain-a, target: domain-b}]}\n", 1)
		if err := os.WriteFile(e.path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		e.file = f
		if err := e.reload(t); err != nil {
			t.Fatal(err)
		}
	}
	write("chainbroker", "agent")
	subject := e.subject(t)
	svc := func() string {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+ci.token(t, "svc-1", "chainbroker", time.Minute))
		_, err := e.chainSvc.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		return outcome(err)
	}
	if got := svc(); got != "OK" {
		t.Fatalf("svc-1: %s", got)
	}
	hits := ci.hits.Load()
	keys := e.app.live.cur.Load().jwtKeys
	write("chainbroker", "viewer") // callers.jwt unchanged
	if got := svc(); got != "OK" {
		t.Fatalf("svc-1 after the reload: %s", got)
	}
	if e.app.live.cur.Load().jwtKeys != keys || ci.hits.Load() != hits {
		t.Error("an unchanged callers.jwt lost its verifier: the JWKS was fetched again")
	}
	write("other-audience", "viewer")
	if e.app.live.cur.Load().jwtKeys == keys {
		t.Error("a changed callers.jwt kept its verifier")
	}
	if got := svc(); got != "UNAUTHENTICATED" {
		t.Errorf("svc-1's token for the old audience: %s", got)
	}
}

// tokenGate sits in front of a token endpoint and holds each request until
// released, telling when one arrived.
type tokenGate struct {
	srv     *httptest.Server
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

func newTokenGate(t *testing.T, target string) *tokenGate {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &tokenGate{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.arrived <- struct{}{}
		<-g.release
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	t.Cleanup(g.open)
	return g
}

func (g *tokenGate) open() { g.once.Do(func() { close(g.release) }) }

// A chain in flight during a reload finishes under the configuration it
// started with; the next one uses the new configuration.
func TestReloadChainInFlightKeepsItsConfiguration(t *testing.T) {
	e := newReloadEnv(t, nil)
	gate := newTokenGate(t, e.sb.B.TokenEndpoint())
	e.edit(t, func(f *reloadFile) { f.bToken = gate.srv.URL + mustPath(t, e.sb.B.TokenEndpoint()) })
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	subject := e.subject(t)
	done := make(chan error, 1)
	go func() { done <- e.chainAs(ctxT(t), "agent", subject) }()
	select {
	case <-gate.arrived: // hop 2 under way
	case err := <-done:
		t.Fatalf("the chain ended before hop 2: %v", err)
	}
	e.edit(t, func(f *reloadFile) { f.grants = nil })
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", e.subject(t))); got != "CHAIN_NOT_ALLOWED" {
		t.Errorf("a chain after the reload: %s, want CHAIN_NOT_ALLOWED", got)
	}
	gate.open()
	if err := <-done; err != nil {
		t.Errorf("the chain in flight during the reload: %v, want it to finish under its configuration", err)
	}
}

func mustPath(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

// Chains run without pause while the configuration is reloaded, by SIGHUP's
// handler and by the file watcher at once: every chain sees one whole
// configuration (agent granted and agent2 unknown, or the reverse), never
// a mix nor an error of its own (run with -race).
func TestReloadRaceWithChainsInFlight(t *testing.T) {
	e := newReloadEnv(t, nil)
	v1 := e.file
	v2 := e.file
	v2.callers = []string{"agent2", "viewer"}
	v2.grants = []string{"agent2"}
	ctx, stop := context.WithCancel(e.ctx)
	watched := make(chan struct{})
	go func() { e.app.WatchConfig(ctx, 5*time.Millisecond); close(watched) }()
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
		f := v1
		if i%2 == 0 {
			f = v2
		}
		e.write(t, f)
		if err := e.reload(t); err != nil {
			t.Errorf("reload %d: %v", i, err)
		}
	}
	e.write(t, v1)
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
	e := newReloadEnv(t, nil)
	subject := e.subject(t)
	for i := range 3 {
		if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
			t.Fatalf("chain %d before the reload: %s", i, got)
		}
	}
	e.edit(t, func(f *reloadFile) {
		f.domainB = "cache: {enabled: true}"
		f.extra = fmt.Sprintf("cache: {keys: [{id: k1, secret_env: %s}]}\nrate_limit: {requests_per_second: 0.001, burst: 2}\n", cacheKeyEnv)
	})
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	bearer := e.sb.B.JWTBearerCount()
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Fatalf("first chain after the reload: %s", got)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" || e.sb.B.JWTBearerCount() != bearer+1 {
		t.Errorf("second chain after the reload: %s, %d grants presented to B (want 1: a cache hit)", got, e.sb.B.JWTBearerCount()-bearer)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "RATE_LIMITED" {
		t.Errorf("third chain after the reload: %s, want RATE_LIMITED (burst 2)", got)
	}
	// The rate limit removed: the next call passes.
	e.edit(t, func(f *reloadFile) { f.extra = fmt.Sprintf("cache: {keys: [{id: k1, secret_env: %s}]}\n", cacheKeyEnv) })
	if err := e.reload(t); err != nil {
		t.Fatal(err)
	}
	if got := outcome(e.chainAs(ctxT(t), "agent", subject)); got != "OK" {
		t.Errorf("after the rate limit was removed: %s", got)
	}
}
