package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/export"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/store"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
)

const (
	group   = "siem"
	waitFor = 60 * time.Second // generous: a loaded 2-core machine
)

// fixture is a real redis-server with a Store on it.
type fixture struct {
	srv    *redistest.Server
	st     *redisstore.Store
	raw    *goredis.Client
	prefix string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := redistest.New(t, redistest.Options{})
	st, err := redisstore.NewFromURL(srv.URL(), redisstore.Options{KeyPrefix: "exp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = raw.Close() })
	return &fixture{srv: srv, st: st, raw: raw, prefix: "exp"}
}

func (f *fixture) stream() string { return f.prefix + ":{audit}:events" }

// appendEvents appends n events and returns their ids in order.
func (f *fixture) appendEvents(t *testing.T, n int, tag string) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		id, err := f.st.Append(t.Context(), &store.Event{
			Caller: "svc", Subject: fmt.Sprintf("%s-%d", tag, i), SourceDomain: "a", TargetDomain: "b",
			Outcome: store.OutcomeSuccess, SubjectTokenHash: "deadbeef", Scopes: []string{"read"},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (f *fixture) group(t *testing.T, consumer string) *redisstore.AuditGroup {
	t.Helper()
	g, err := f.st.AuditGroup(group, consumer)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// pending is the number of entries read and not acknowledged in the group.
func (f *fixture) pending(t *testing.T) int64 {
	t.Helper()
	p, err := f.raw.XPending(t.Context(), f.stream(), group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// recorder is a sink that keeps what it accepted; fail makes Write refuse
// while it returns true.
type recorder struct {
	mu       sync.Mutex
	accepted []string // event ids, in order
	batches  []int
	attempts atomic.Int64
	fail     func(attempt int64) bool
}

func (r *recorder) Write(_ context.Context, events []store.Event) error {
	n := r.attempts.Add(1)
	if r.fail != nil && r.fail(n) {
		return errors.New("sink down")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range events {
		r.accepted = append(r.accepted, e.ID)
	}
	r.batches = append(r.batches, len(events))
	return nil
}

func (r *recorder) Close() error { return nil }

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted)
}

// run starts an exporter and returns a stop function that waits for it.
func run(t *testing.T, opts export.Options) (stop func()) {
	t.Helper()
	opts.MinBackoff = cmpOr(opts.MinBackoff, 5*time.Millisecond)
	opts.MaxBackoff = cmpOr(opts.MaxBackoff, 50*time.Millisecond)
	opts.Block = cmpOr(opts.Block, 100*time.Millisecond)
	e, err := export.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(waitFor):
				t.Fatal("exporter did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func cmpOr(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// poll waits until cond holds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readLines parses the complete lines of path; a last line still being
// written (no newline yet) is left out.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	var out []map[string]any
	for line := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", len(out)+1, err, line)
		}
		out = append(out, m)
	}
	return out
}

// sameIDs: got holds each of want exactly once, in any order.
func sameIDs(got, want []string) bool {
	got, want = slices.Clone(got), slices.Clone(want)
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

func lineIDs(lines []map[string]any) []string {
	ids := make([]string, 0, len(lines))
	for _, l := range lines {
		id, _ := l["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// The file sink gets every event once, in stream order, as JSON lines in a
// 0600 file; batches are bounded; nothing stays pending; a restart under
// the same name goes on where the last run stopped (appending).
func TestExportToFileResumes(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	first := f.appendEvents(t, 250, "first")

	sink, err := export.OpenJSONLinesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, export.Options{Source: f.group(t, "c1"), Sink: sink, BatchSize: 40})
	poll(t, "250 lines", func() bool { return len(readLines(t, path)) >= 250 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	stop()
	_ = sink.Close()

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %#o, want 0600", perm)
	}
	lines := readLines(t, path)
	if got := lineIDs(lines); !slices.Equal(got, first) {
		t.Fatalf("exported ids differ from the stream's (%d vs %d)", len(got), len(first))
	}
	if lines[3]["subject"] != "first-3" || lines[3]["subject_token_hash"] != "deadbeef" || lines[3]["outcome"] != float64(1) {
		t.Errorf("line 4 = %v", lines[3])
	}

	// Restart: only what was appended meanwhile is exported, appended to the file.
	second := f.appendEvents(t, 30, "second")
	sink2, err := export.OpenJSONLinesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sink2.Close()
	run(t, export.Options{Source: f.group(t, "c1"), Sink: sink2, BatchSize: 40})
	poll(t, "280 lines", func() bool { return len(readLines(t, path)) >= 280 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	if got := lineIDs(readLines(t, path)); !slices.Equal(got, append(slices.Clone(first), second...)) {
		t.Fatalf("after the restart: %d lines, want the %d events once each in order", len(got), len(first)+len(second))
	}
}

// Every read is bounded by BatchSize.
func TestExportBatchesBounded(t *testing.T) {
	f := newFixture(t)
	f.appendEvents(t, 95, "b")
	rec := &recorder{}
	run(t, export.Options{Source: f.group(t, "c1"), Sink: rec, BatchSize: 10})
	poll(t, "95 events", func() bool { return len(rec.ids()) >= 95 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, n := range rec.batches {
		if n > 10 {
			t.Fatalf("a batch of %d events, want at most 10", n)
		}
	}
}

// A sink that fails for a while: the batch is retried with backoff until it
// is accepted; nothing is lost and nothing is exported twice; the entries
// being retried stay pending meanwhile.
func TestExportSinkFailsThenRecovers(t *testing.T) {
	f := newFixture(t)
	ids := f.appendEvents(t, 60, "s")
	var healthy atomic.Bool
	rec := &recorder{fail: func(int64) bool { return !healthy.Load() }}
	var lagMu sync.Mutex
	var lags []float64
	run(t, export.Options{Source: f.group(t, "c1"), Sink: rec, BatchSize: 25, Lag: func(s float64) {
		lagMu.Lock()
		lags = append(lags, s)
		lagMu.Unlock()
	}})
	poll(t, "5 refused writes", func() bool { return rec.attempts.Load() >= 5 })
	if n := f.pending(t); n != 25 {
		t.Errorf("pending %d while the sink is down, want the batch of 25", n)
	}
	if len(rec.ids()) != 0 {
		t.Fatal("accepted while failing")
	}
	healthy.Store(true)
	poll(t, "60 events", func() bool { return len(rec.ids()) >= 60 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	more := f.appendEvents(t, 5, "more")
	poll(t, "65 events", func() bool { return len(rec.ids()) >= 65 })
	poll(t, "a zero lag once caught up", func() bool {
		lagMu.Lock()
		defer lagMu.Unlock()
		return len(lags) > 0 && lags[len(lags)-1] == 0
	})
	if got, want := rec.ids(), append(ids, more...); !slices.Equal(got, want) {
		t.Fatalf("exported %d ids, want the %d appended, once each, in order", len(got), len(want))
	}
	lagMu.Lock()
	defer lagMu.Unlock()
	if !slices.ContainsFunc(lags, func(s float64) bool { return s > 0 }) {
		t.Error("no positive lag reported while the sink was down")
	}
}

// Replicas sharing the group share the stream: together they export every
// event, and (healthy sinks, no claim) none twice.
func TestExportReplicasShare(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	for _, name := range []string{"r1", "r2", "r3"} {
		run(t, export.Options{Source: f.group(t, name), Sink: rec, BatchSize: 8, ClaimIdle: time.Hour})
	}
	var ids []string
	for i := range 5 {
		ids = append(ids, f.appendEvents(t, 40, fmt.Sprint("w", i))...)
	}
	poll(t, "200 events", func() bool { return len(rec.ids()) >= 200 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	got := rec.ids()
	if !sameIDs(got, ids) {
		t.Fatalf("exported %d events, want the 200 appended once each", len(got))
	}
}

// Entries that hold no readable event (written by something else, or
// damaged) are acknowledged, not exported and not retried forever.
func TestExportSkipsUndecodableEntries(t *testing.T) {
	f := newFixture(t)
	good := f.appendEvents(t, 2, "g")
	if err := f.raw.XAdd(t.Context(), &goredis.XAddArgs{Stream: f.stream(), Values: []string{"e", "{not json"}}).Err(); err != nil {
		t.Fatal(err)
	}
	good = append(good, f.appendEvents(t, 2, "h")...)
	rec := &recorder{}
	run(t, export.Options{Source: f.group(t, "c1"), Sink: rec})
	poll(t, "4 events", func() bool { return len(rec.ids()) >= 4 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	if got := rec.ids(); !slices.Equal(got, good) {
		t.Fatalf("exported %v, want %v", got, good)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	f := newFixture(t)
	for name, o := range map[string]export.Options{
		"no source":      {Sink: &recorder{}},
		"no sink":        {Source: f.group(t, "c")},
		"batch too big":  {Source: f.group(t, "c"), Sink: &recorder{}, BatchSize: export.MaxBatchSize + 1},
		"negative idle":  {Source: f.group(t, "c"), Sink: &recorder{}, ClaimIdle: -time.Second},
		"negative batch": {Source: f.group(t, "c"), Sink: &recorder{}, BatchSize: -1},
	} {
		if _, err := export.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := f.st.AuditGroup("", "c"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("empty group: %v", err)
	}
}

// Entries trimmed from the stream (retention) while pending for a consumer
// that died are dropped from the pending list, not retried forever: under
// the same name (pending re-read) and under another (claim).
func TestExportPendingEntriesTrimmed(t *testing.T) {
	for survivor, claimIdle := range map[string]time.Duration{"dead": time.Hour, "other": 300 * time.Millisecond} {
		t.Run(survivor, func(t *testing.T) {
			f := newFixture(t)
			f.appendEvents(t, 5, "old")
			dead := f.group(t, "dead")
			if err := dead.CreateGroup(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got, _, err := dead.ReadNew(t.Context(), 5, time.Second); err != nil || len(got) != 5 {
				t.Fatalf("ReadNew: %d, %v", len(got), err)
			}
			if err := f.raw.XTrimMaxLen(t.Context(), f.stream(), 0).Err(); err != nil {
				t.Fatal(err)
			}
			fresh := f.appendEvents(t, 3, "new")
			rec := &recorder{}
			run(t, export.Options{Source: f.group(t, survivor), Sink: rec, ClaimIdle: claimIdle})
			poll(t, "3 events", func() bool { return len(rec.ids()) >= 3 })
			poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
			if got := rec.ids(); !slices.Equal(got, fresh) {
				t.Fatalf("exported %v, want %v", got, fresh)
			}
		})
	}
}

// A replica whose sink is failing keeps its batch: while it retries it
// refreshes the entries' idle time, so another replica does not claim them
// (which would export them twice once the first sink recovers).
func TestExportRetryingBatchNotClaimed(t *testing.T) {
	f := newFixture(t)
	ids := f.appendEvents(t, 20, "r")
	const claimIdle = 4 * time.Second
	var healthy atomic.Bool
	slow := &recorder{fail: func(int64) bool { return !healthy.Load() }}
	run(t, export.Options{Source: f.group(t, "a"), Sink: slow, BatchSize: 5, ClaimIdle: claimIdle, MaxBackoff: 100 * time.Millisecond})
	poll(t, "a's first refused write", func() bool { return slow.attempts.Load() >= 1 })
	fast := &recorder{}
	run(t, export.Options{Source: f.group(t, "b"), Sink: fast, BatchSize: 5, ClaimIdle: claimIdle})
	poll(t, "b exports the other 15", func() bool { return len(fast.ids()) >= 15 })
	// Well past claimIdle while a keeps failing: b claims nothing of a's.
	start := time.Now()
	poll(t, "twice claimIdle", func() bool { return time.Since(start) > 2*claimIdle })
	if n := len(fast.ids()); n != 15 {
		t.Fatalf("b exported %d events, want 15: it claimed a batch a was still retrying", n)
	}
	healthy.Store(true)
	poll(t, "a exports its 5", func() bool { return len(slow.ids()) >= 5 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	got := append(slow.ids(), fast.ids()...)
	if !sameIDs(got, ids) {
		t.Fatalf("exported %v, want the 20 appended once each", got)
	}
}

// Consumers gone for good (nothing pending, idle for ForgetIdle) are
// deleted from the group; one with pending entries never is, nor the
// exporter itself.
func TestExportForgetsIdleConsumers(t *testing.T) {
	f := newFixture(t)
	ids := f.appendEvents(t, 3, "f")
	holder := f.group(t, "holder") // dies holding one entry
	if err := holder.CreateGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _, err := holder.ReadNew(t.Context(), 1, 10*time.Millisecond); err != nil || len(got) != 1 {
		t.Fatalf("ReadNew: %d, %v", len(got), err)
	}
	for _, name := range []string{"empty", "live"} {
		if err := f.raw.XGroupCreateConsumer(t.Context(), f.stream(), group, name).Err(); err != nil {
			t.Fatal(err)
		}
	}
	consumers := func() []string {
		cs, err := f.raw.XInfoConsumers(t.Context(), f.stream(), group).Result()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		return names
	}
	n, err := f.group(t, "live").ForgetIdleConsumers(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := consumers(); n != 1 || !slices.Equal(got, []string{"holder", "live"}) {
		t.Fatalf("consumers %v (%d deleted), want empty deleted, holder (pending) and the caller kept", got, n)
	}

	// The exporter claims holder's entry, then forgets holder.
	rec := &recorder{}
	run(t, export.Options{Source: f.group(t, "live"), Sink: rec, ClaimIdle: time.Second, ForgetIdle: 300 * time.Millisecond})
	poll(t, "3 events", func() bool { return len(rec.ids()) >= 3 })
	poll(t, "holder forgotten", func() bool { return slices.Equal(consumers(), []string{"live"}) })
	got := rec.ids()
	if !sameIDs(got, ids) {
		t.Fatalf("exported %v, want %v", got, ids)
	}
}
