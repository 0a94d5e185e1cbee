package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/store"
)

// TestSoakShort is the soak in the default test run: 16 s of load at
// concurrency 16 (sane on two cores under -race).
func TestSoakShort(t *testing.T) {
	run(t, settings{duration: 16 * time.Second, concurrency: 16, domainTimeout: time.Second, breakerFailures: 5})
}

type settings struct {
	duration    time.Duration
	concurrency int
	// domainTimeout is domain A's timeout; its slow phase delays 30 % of
	// its answers by 1.6 times that. TestSoakShort uses 1 s, TestSoakLong
	// SOAK_DOMAIN_TIMEOUT (default 500 ms): on a shared two-core machine,
	// under -race, a healthy call's p99 can approach 200-500 ms, and a
	// timeout that tight trips the circuit breaker in the normal phase.
	domainTimeout time.Duration
	// breakerFailures is domain A's circuit_breaker.failures (negative:
	// off); TestSoakLong takes SOAK_BREAKER_FAILURES, default 5.
	breakerFailures int
	report          string // JSON report file; "" for none
	heapProfile     string // heap profile written at the end; "" for none
}

// Tuning of the broker under soak besides settings: three attempts per
// chain, and a circuit breaker cooldown of 1 s.
const (
	slowFraction    = 0.3
	breakerCooldown = time.Second
	callTimeout     = 5 * time.Second
	minSuccessRate  = 0.99
	goroutineSlack  = 20
	// connGoroutineSlack: connection goroutines may vary by this much (or
	// double) between start and end, as the pools (bounded at 64 idle
	// connections per host in the broker) refill after the faults.
	connGoroutineSlack = 200
	heapSlack          = 16 << 20
	warmUp             = time.Second
	subjectTokens      = 32
	sandboxLifetime    = 30 * time.Second
	tokenRefresh       = sandboxLifetime / 3
	verifyWorkers      = 16
	grpcSpotChecks     = 200
	phaseRestartWait   = 15 * time.Second
)

// phase is one stretch of the soak. enter runs on the test goroutine when
// the phase begins; assert phases must reach minSuccessRate.
type phase struct {
	name   string
	frac   float64 // of the total duration
	enter  func(h *harness)
	assert bool
}

var phases = []phase{
	{"normal", 0.20, nil, true},
	{"a-slow", 0.15, func(h *harness) { h.proxy.Slow(slowFraction, h.domainTimeout*8/5) }, false},
	{"a-down", 0.15, func(h *harness) { h.proxy.Slow(0, 0); h.proxy.Close() }, false},
	{"a-recovering", 0.15, func(h *harness) {
		if err := h.proxy.Open(); err != nil {
			h.t.Fatal(err)
		}
	}, false},
	{"a-back", 0.15, nil, true},
	{"redis-restart", 0.10, func(h *harness) { h.redis.Restart() }, false},
	{"redis-back", 0.10, nil, true},
}

// stats are one phase's results. A call counts in the phase in which it
// ended: a fault that begins with a phase (Redis killed) fails the calls in
// flight at that moment, and they count in that phase.
type stats struct {
	Name      string         `json:"name"`
	Duration  time.Duration  `json:"duration_ns"`
	Calls     int            `json:"calls"`
	OK        int            `json:"ok"`
	Outcomes  map[string]int `json:"errors"`
	P50, P99  time.Duration  `json:"-"`
	P50ms     float64        `json:"p50_ms"`
	P99ms     float64        `json:"p99_ms"`
	Asserted  bool           `json:"asserted"`
	latencies []time.Duration
}

func (s *stats) rate() float64 {
	if s.Calls == 0 {
		return 0
	}
	return float64(s.OK) / float64(s.Calls)
}

type harness struct {
	t      *testing.T
	sb     *sandbox.Sandbox
	redis  *redistest.Server
	proxy  *apptest.Proxy
	app    *app.App
	chain  pb.ChainServiceClient
	audit  pb.AuditServiceClient
	tokens atomic.Pointer[[]string]

	logs *warnLog

	domainTimeout time.Duration

	mu  sync.Mutex
	cur *stats
	ids []string // audit ids of successful chains
}

func run(t *testing.T, s settings) {
	h := start(t, s)
	ctx := t.Context()

	// Token refresher: subject tokens live 300 s.
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	refreshed := make(chan struct{})
	go func() {
		defer close(refreshed)
		for {
			select {
			case <-refreshCtx.Done():
				return
			case <-time.After(tokenRefresh):
			}
			if toks, err := h.subjectTokens(refreshCtx); err == nil {
				h.tokens.Store(&toks)
			}
		}
	}()
	defer func() { stopRefresh(); <-refreshed }()

	// Warm up at full concurrency (connection pools, JWKS, caches), then
	// measure the quiet state.
	h.mu.Lock()
	h.cur = &stats{Name: "warm-up", Outcomes: map[string]int{}}
	h.mu.Unlock()
	stopWarm := h.load(s.concurrency)
	time.Sleep(warmUp)
	stopWarm()
	h.mu.Lock()
	warm := h.cur
	h.ids = nil
	h.mu.Unlock()
	if warm.OK == 0 {
		t.Fatalf("no chain succeeded during the warm-up: %v", warm.Outcomes)
	}
	startHeap, startG := quiet()

	var all []*stats
	next := func(p phase) *stats {
		st := &stats{Name: p.name, Outcomes: map[string]int{}, Asserted: p.assert}
		h.mu.Lock()
		h.cur = st
		h.mu.Unlock()
		all = append(all, st)
		return st
	}
	begin := time.Now()
	first := next(phases[0])
	stop := h.load(s.concurrency)
	phaseStart := begin
	for i, p := range phases {
		st := first
		if i > 0 {
			st = next(p)
			if p.enter != nil {
				p.enter(h)
			}
		}
		end := phaseStart.Add(time.Duration(p.frac * float64(s.duration)))
		time.Sleep(time.Until(end))
		st.Duration = time.Since(phaseStart)
		phaseStart = time.Now()
	}
	stop()
	total := time.Since(begin)
	_, endG := quiet()

	// Every success's audit event exists, once.
	h.mu.Lock()
	ids := h.ids
	h.ids = nil
	h.mu.Unlock()
	missing, dups := h.verify(ids)
	successes := len(ids)
	ids = nil
	for _, st := range all {
		st.summarize() // and drops the latencies
	}
	endHeap, _ := quiet()
	if s.heapProfile != "" {
		writeHeapProfile(t, s.heapProfile)
	}

	// Report.
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %v at concurrency %d (GOMAXPROCS %d, race %v, domain A timeout %v, slow answers +%v, breaker failures %d), %d successful chains\n",
		total.Round(time.Millisecond), s.concurrency, runtime.GOMAXPROCS(0), raceEnabled, s.domainTimeout, s.domainTimeout*8/5, s.breakerFailures, successes)
	fmt.Fprintf(&b, "%-14s %7s %8s %8s %9s %9s  %s\n", "phase", "time", "calls", "ok", "p50", "p99", "errors (gRPC code/reason)")
	for _, st := range all {
		fmt.Fprintf(&b, "%-14s %7s %8d %7.2f%% %9s %9s  %s\n", st.Name, st.Duration.Round(100*time.Millisecond),
			st.Calls, 100*st.rate(), st.P50.Round(100*time.Microsecond), st.P99.Round(100*time.Microsecond), tally(st.Outcomes))
	}
	fmt.Fprintf(&b, "heap in use: start %.1f MiB, end %.1f MiB\ngoroutines: start %v, end %v\n",
		mib(startHeap), mib(endHeap), startG, endG)
	fmt.Fprintf(&b, "audit: %d successes checked, %d without their event, %d audit ids returned twice\n", successes, missing, dups)
	if logText := h.redis.Log(1 << 20); strings.Contains(logText, "fsync") {
		for line := range strings.Lines(logText) {
			if strings.Contains(line, "fsync") {
				fmt.Fprintf(&b, "redis: %s", line)
			}
		}
	}
	if n, sample := h.logs.summary(); n > 0 {
		fmt.Fprintf(&b, "broker warnings and errors: %d lines; distinct messages:\n%s", n, sample)
	}
	t.Log("\n" + b.String())
	if s.report != "" {
		writeReport(t, s, total, all, startHeap, endHeap, startG, endG, successes, missing)
	}

	for _, st := range all {
		if st.Asserted && st.rate() < minSuccessRate {
			t.Errorf("phase %s: %.2f%% of %d chains succeeded, want at least %.0f%%", st.Name, 100*st.rate(), st.Calls, 100*minSuccessRate)
		}
		if st.Calls == 0 {
			t.Errorf("phase %s: no chain ran", st.Name)
		}
	}
	if missing > 0 {
		t.Errorf("%d successful chains have no audit event: a token was handed out without its record", missing)
	}
	if dups > 0 {
		t.Errorf("%d audit ids were returned for two successful chains", dups)
	}
	if endG.others() > startG.others()+goroutineSlack {
		t.Errorf("goroutines other than connections' grew from %d to %d (allowed +%d)", startG.others(), endG.others(), goroutineSlack)
	}
	if limit := max(2*startG.Conns, startG.Conns+connGoroutineSlack); endG.Conns > limit {
		t.Errorf("connection goroutines grew from %d to %d (allowed %d): a connection pool is not bounded", startG.Conns, endG.Conns, limit)
	}
	if endHeap > 2*startHeap+heapSlack {
		t.Errorf("heap in use grew from %.1f MiB to %.1f MiB (allowed 2x + %d MiB)", mib(startHeap), mib(endHeap), heapSlack>>20)
	}
}

// start brings up Redis (AOF, fsync every second: acknowledged writes
// survive a kill of redis-server), the sandbox with a fault proxy in front
// of domain A's token endpoint, and the broker.
func start(t *testing.T, s settings) *harness {
	t.Helper()
	h := &harness{t: t, domainTimeout: s.domainTimeout}
	// Short-lived tokens keep the in-process sandbox's own replay memory
	// (domain B remembers every jti until its exp) and the replay markers in
	// Redis proportional to a sandboxLifetime of traffic, so that the heap
	// comparison measures the broker, not the fixture's bookkeeping.
	h.proxy = apptest.NewProxy(t, "")
	h.proxy.KeepRequests(false) // the heap comparison measures the broker
	h.logs = &warnLog{}
	e := apptest.StartWith(t, apptest.Options{
		Redis:          true,
		RedisOptions:   redistest.Options{AOF: true, Fsync: "everysec"},
		SandboxOptions: sandbox.Options{TokenLifetime: sandboxLifetime},
		Logger:         slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Mutate: func(cfg *config.File) {
			h.proxy.Front(0, func(a *config.Domain) {
				a.Timeout = config.Duration(s.domainTimeout)
				a.MaxAttempts = 3
				a.CircuitBreaker = config.CircuitBreaker{Failures: s.breakerFailures, Cooldown: config.Duration(breakerCooldown)}
			})(cfg)
			cfg.Listen.ReadinessInterval = config.Duration(time.Second)
		},
	})
	h.sb, h.redis, h.app, h.chain, h.audit = e.Sandbox, e.Redis, e.App, e.Chain, e.Audit

	toks, err := h.subjectTokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h.tokens.Store(&toks)
	return h
}

func (h *harness) subjectTokens(ctx context.Context) ([]string, error) {
	out := make([]string, subjectTokens)
	for i := range out {
		user, pw := sandbox.Alice, sandbox.AlicePassword
		if i%2 == 1 {
			user, pw = sandbox.Bob, sandbox.BobPassword
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		tok, err := h.sb.A.SubjectToken(tctx, user, pw, "")
		cancel()
		if err != nil {
			return nil, err
		}
		out[i] = tok
	}
	return out, nil
}

// load starts n workers chaining back to back; the returned func stops them
// and waits.
func (h *harness) load(n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				toks := *h.tokens.Load()
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				began := time.Now()
				resp, err := h.chain.Chain(ctx, &pb.ChainRequest{SubjectToken: toks[i%len(toks)], TargetDomain: sandbox.DomainBName})
				cancel()
				took := time.Since(began)
				h.mu.Lock()
				st := h.cur
				st.Calls++
				st.latencies = append(st.latencies, took)
				if err == nil {
					st.OK++
					h.ids = append(h.ids, resp.AuditId)
				} else {
					st.Outcomes[outcome(err)]++
				}
				h.mu.Unlock()
				if err != nil {
					// Do not spin on instant failures (open circuit, refused).
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

// verify looks every id up in the store (all of them) and through
// GetAuditEvent (a sample); it returns how many are missing and how many
// ids occur twice in ids.
func (h *harness) verify(ids []string) (missing, dups int) {
	h.t.Helper()
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			dups++
		}
		seen[id] = true
	}
	var miss atomic.Int64
	work := make(chan string)
	var wg sync.WaitGroup
	var firstErr error
	var emu sync.Mutex
	for range verifyWorkers {
		wg.Go(func() {
			for id := range work {
				var err error
				for attempt := range 5 {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err = h.app.Store.Get(ctx, id)
					cancel()
					if !errors.Is(err, store.ErrUnavailable) {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
				}
				switch {
				case err == nil:
				case errors.Is(err, store.ErrNotFound):
					miss.Add(1)
				default:
					emu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					emu.Unlock()
				}
			}
		})
	}
	for id := range seen {
		work <- id
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		h.t.Fatalf("audit lookup: %v", firstErr)
	}
	for i, id := range ids {
		if i >= grpcSpotChecks {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := h.audit.GetAuditEvent(ctx, &pb.GetAuditEventRequest{Id: ids[len(ids)-1-i]})
		cancel()
		_ = id
		if err != nil {
			h.t.Errorf("GetAuditEvent(%s): %v", ids[len(ids)-1-i], err)
		} else if resp.Event.Outcome != pb.Outcome_OUTCOME_SUCCESS && resp.Event.Outcome != pb.Outcome_OUTCOME_CACHE_HIT {
			h.t.Errorf("GetAuditEvent(%s): outcome %v for a successful chain", resp.Event.Id, resp.Event.Outcome)
		}
	}
	return int(miss.Load()), dups
}

// goroutines counts the goroutines, telling apart those that serve one
// network connection each (HTTP keep-alive connections on both sides,
// gRPC and Redis connections): their number follows the connection pools,
// which the phases legitimately resize (a domain down empties them, load
// fills them up to their bounds), while any other growth is a leak.
type goroutines struct {
	Total, Conns int
}

func (g goroutines) others() int { return g.Total - g.Conns }

func (g goroutines) String() string {
	return fmt.Sprintf("%d (%d serving connections, %d others)", g.Total, g.Conns, g.others())
}

// connFrames mark a goroutine that serves one connection.
var connFrames = []string{
	"net/http.(*persistConn).readLoop", "net/http.(*persistConn).writeLoop", "net/http.(*conn).serve",
	"google.golang.org/grpc/internal/transport.", "github.com/redis/go-redis/v9/internal/pool.",
}

func countGoroutines() goroutines {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var g goroutines
	for stack := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.TrimSpace(stack) == "" {
			continue
		}
		g.Total++
		for _, f := range connFrames {
			if strings.Contains(stack, f) {
				g.Conns++
				break
			}
		}
	}
	return g
}

// quiet collects garbage and returns the heap in use and the goroutines
// once the load has stopped.
func quiet() (heapInUse uint64, g goroutines) {
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, countGoroutines()
}

// summarize computes the percentiles and drops the latencies.
func (s *stats) summarize() {
	if s.latencies == nil {
		return
	}
	slices.Sort(s.latencies)
	pct := func(p float64) time.Duration {
		if len(s.latencies) == 0 {
			return 0
		}
		return s.latencies[min(len(s.latencies)-1, int(p*float64(len(s.latencies))))]
	}
	s.P50, s.P99 = pct(0.50), pct(0.99)
	s.P50ms, s.P99ms = float64(s.P50)/1e6, float64(s.P99)/1e6
	s.latencies = nil
}

func outcome(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code().String() + "/" + info.Reason
		}
	}
	return st.Code().String()
}

func tally(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func writeReport(t *testing.T, s settings, total time.Duration, all []*stats, h0, h1 uint64, g0, g1 goroutines, ok, missing int) {
	rep := map[string]any{
		"duration_s": total.Seconds(), "concurrency": s.concurrency, "domain_timeout_ms": s.domainTimeout.Milliseconds(), "breaker_failures": s.breakerFailures, "gomaxprocs": runtime.GOMAXPROCS(0), "race": raceEnabled,
		"phases": all, "heap_inuse_start_mib": mib(h0), "heap_inuse_end_mib": mib(h1),
		"goroutines_start": g0.Total, "goroutines_end": g1.Total,
		"connection_goroutines_start": g0.Conns, "connection_goroutines_end": g1.Conns, "successes": ok, "successes_without_event": missing,
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(s.report, b, 0o644); err != nil {
		t.Errorf("SOAK_REPORT: %v", err)
	}
}

// warnLog keeps the broker's warning and error lines, counted by message
// (the text handler's msg= field), with one example of each.
type warnLog struct {
	mu      sync.Mutex
	lines   int
	byMsg   map[string]int
	example map[string]string
}

func (w *warnLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byMsg == nil {
		w.byMsg, w.example = map[string]int{}, map[string]string{}
	}
	line := string(p)
	w.lines++
	msg := line
	if i := strings.Index(line, " msg="); i >= 0 {
		msg = line[i+5:]
		if j := strings.Index(msg, " "); j >= 0 && !strings.HasPrefix(msg, "\"") {
			msg = msg[:j]
		} else if strings.HasPrefix(msg, "\"") {
			if j := strings.Index(msg[1:], "\""); j >= 0 {
				msg = msg[:j+2]
			}
		}
	}
	if i := strings.Index(line, " reason="); i >= 0 {
		r := line[i+8:]
		if j := strings.IndexAny(r, " \n"); j >= 0 {
			r = r[:j]
		}
		msg += " " + r
	}
	w.byMsg[msg]++
	if _, ok := w.example[msg]; !ok {
		w.example[msg] = strings.TrimSpace(line)
	}
	return len(p), nil
}

func (w *warnLog) summary() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for msg, n := range w.byMsg {
		ex := w.example[msg]
		if len(ex) > 700 {
			ex = ex[:700] + "..."
		}
		fmt.Fprintf(&b, "  %6d x %s\n         e.g. %s\n", n, msg, ex)
	}
	return w.lines, b.String()
}

func writeHeapProfile(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Errorf("SOAK_HEAPPROFILE: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Errorf("SOAK_HEAPPROFILE: %v", err)
	}
}
