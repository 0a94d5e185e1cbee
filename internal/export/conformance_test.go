package export_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/export"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
)

// trail is one store under the exporter, for the cases both stores must
// pass: a source per consumer name, the group's pending count, and appends
// to a trail that keeps only its newest limit events (0: no limit).
type trail interface {
	appendEvents(t *testing.T, n int, tag string) []string
	source(t *testing.T, consumer string) export.Source
	pending(t *testing.T) int64
}

// backends are the stores the exporter runs on; limit bounds the trail.
var backends = []struct {
	name string
	new  func(t *testing.T, limit int) trail
}{
	{"memory", newMemoryTrail},
	{"redis", newRedisTrail},
}

type memoryTrail struct {
	st *memory.Store
}

func newMemoryTrail(t *testing.T, limit int) trail {
	st := memory.New(memory.Options{MaxEvents: limit})
	t.Cleanup(func() { _ = st.Close() })
	return &memoryTrail{st: st}
}

func (m *memoryTrail) appendEvents(t *testing.T, n int, tag string) []string {
	t.Helper()
	return appendTo(t, m.st, n, tag)
}

func (m *memoryTrail) group(t *testing.T, consumer string) *memory.AuditGroup {
	t.Helper()
	g, err := m.st.AuditGroup(group, consumer)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (m *memoryTrail) source(t *testing.T, consumer string) export.Source {
	return m.group(t, consumer)
}

func (m *memoryTrail) pending(t *testing.T) int64 {
	t.Helper()
	n, err := m.group(t, "probe").Pending(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

type redisTrail struct {
	f     *fixture
	limit int
}

func newRedisTrail(t *testing.T, limit int) trail {
	return &redisTrail{f: newFixture(t), limit: limit}
}

func (r *redisTrail) appendEvents(t *testing.T, n int, tag string) []string {
	t.Helper()
	ids := r.f.appendEvents(t, n, tag)
	if r.limit > 0 { // exactly, where the store's MAXLEN ~ is approximate
		if err := r.f.raw.XTrimMaxLen(t.Context(), r.f.stream(), int64(r.limit)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func (r *redisTrail) source(t *testing.T, consumer string) export.Source {
	return r.f.group(t, consumer)
}

func (r *redisTrail) pending(t *testing.T) int64 { return r.f.pending(t) }

func appendTo(t *testing.T, st store.Store, n int, tag string) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		id, err := st.Append(t.Context(), &store.Event{
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

// The export cases every store must pass (issue #21), run on each backend.
func TestExportConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, newTrail func(t *testing.T, limit int) trail)
	}{
		{"healthy sink: every event once, in order, batches bounded", exportHealthyOnce},
		{"resume after stopping mid-batch, same name", func(t *testing.T, nt func(*testing.T, int) trail) {
			exportResumeMidBatch(t, nt, "dead", time.Hour)
		}},
		{"resume after stopping mid-batch, another name claims", func(t *testing.T, nt func(*testing.T, int) trail) {
			exportResumeMidBatch(t, nt, "other", 300*time.Millisecond)
		}},
		{"stopped while the sink is down", exportStoppedWhileSinkDown},
		{"failing sink retried, nothing lost", exportSinkFailsThenRecovers},
		{"pending entries trimmed are dropped, same name", func(t *testing.T, nt func(*testing.T, int) trail) {
			exportPendingTrimmed(t, nt, "dead", time.Hour)
		}},
		{"pending entries trimmed are dropped, another name", func(t *testing.T, nt func(*testing.T, int) trail) {
			exportPendingTrimmed(t, nt, "other", 300*time.Millisecond)
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, b.new) })
			}
		})
	}
}

// A healthy file sink gets every event exactly once, in trail order, in
// bounded batches; events appended while the exporter waits are exported
// too; a second exporter on the same store resumes after the first.
func exportHealthyOnce(t *testing.T, newTrail func(*testing.T, int) trail) {
	tr := newTrail(t, 0)
	first := tr.appendEvents(t, 95, "first")
	rec := &recorder{}
	stop := run(t, export.Options{Source: tr.source(t, "c1"), Sink: rec, BatchSize: 10})
	poll(t, "95 events", func() bool { return len(rec.ids()) >= 95 })
	more := tr.appendEvents(t, 7, "more") // while the exporter waits for new events
	poll(t, "102 events", func() bool { return len(rec.ids()) >= 102 })
	poll(t, "no pending entry", func() bool { return tr.pending(t) == 0 })
	stop()
	want := append(slices.Clone(first), more...)
	if got := rec.ids(); !slices.Equal(got, want) {
		t.Fatalf("exported %d ids, want the %d appended once each in order", len(got), len(want))
	}
	rec.mu.Lock()
	for _, n := range rec.batches {
		if n > 10 {
			t.Errorf("a batch of %d events, want at most 10", n)
		}
	}
	rec.mu.Unlock()

	// A new exporter (a restart) exports only what was appended since, to a file.
	later := tr.appendEvents(t, 3, "later")
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := export.OpenJSONLinesFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	run(t, export.Options{Source: tr.source(t, "c1"), Sink: sink})
	poll(t, "3 lines", func() bool { return len(readLines(t, path)) >= 3 })
	poll(t, "no pending entry", func() bool { return tr.pending(t) == 0 })
	lines := readLines(t, path)
	if got := lineIDs(lines); !slices.Equal(got, later) {
		t.Fatalf("after the restart: exported %v, want %v", got, later)
	}
	if lines[1]["subject"] != "later-1" || lines[1]["subject_token_hash"] != "deadbeef" {
		t.Errorf("line 2 = %v", lines[1])
	}
}

// An exporter read a batch and stopped before the sink accepted it (no
// ack): a new exporter re-delivers it, under the same name from its pending
// list, under another once idle for ClaimIdle. Each event exactly once.
func exportResumeMidBatch(t *testing.T, newTrail func(*testing.T, int) trail, survivor string, claimIdle time.Duration) {
	tr := newTrail(t, 0)
	ids := tr.appendEvents(t, 50, "k")
	dead := tr.source(t, "dead")
	if err := dead.CreateGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, skipped, err := dead.ReadNew(t.Context(), 30, time.Second)
	if err != nil || len(got) != 30 || len(skipped) != 0 {
		t.Fatalf("ReadNew: %d events, %d skipped, %v", len(got), len(skipped), err)
	}
	if n := tr.pending(t); n != 30 {
		t.Fatalf("pending %d, want 30", n)
	}
	rec := &recorder{}
	run(t, export.Options{Source: tr.source(t, survivor), Sink: rec, BatchSize: 7, ClaimIdle: claimIdle})
	poll(t, "50 events", func() bool { return len(rec.ids()) >= 50 })
	poll(t, "no pending entry", func() bool { return tr.pending(t) == 0 })
	if got := rec.ids(); !sameIDs(got, ids) {
		t.Fatalf("exported %d events (%v), want the 50 appended once each", len(got), got)
	}
}

// An exporter stopped while its sink refused everything leaves its batch
// pending; the next exporter exports it.
func exportStoppedWhileSinkDown(t *testing.T, newTrail func(*testing.T, int) trail) {
	tr := newTrail(t, 0)
	ids := tr.appendEvents(t, 20, "d")
	down := &recorder{fail: func(int64) bool { return true }}
	stop := run(t, export.Options{Source: tr.source(t, "first"), Sink: down, BatchSize: 5, ClaimIdle: 400 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond})
	poll(t, "a few refused writes", func() bool { return down.attempts.Load() >= 3 })
	stop()
	if n := tr.pending(t); n == 0 {
		t.Fatal("nothing pending after a sink that accepted nothing")
	}
	rec := &recorder{}
	run(t, export.Options{Source: tr.source(t, "second"), Sink: rec, BatchSize: 5, ClaimIdle: 400 * time.Millisecond})
	poll(t, "20 events", func() bool { return len(rec.ids()) >= 20 })
	poll(t, "no pending entry", func() bool { return tr.pending(t) == 0 })
	if got := rec.ids(); !sameIDs(got, ids) {
		t.Fatalf("exported %v, want the 20 appended once each", got)
	}
}

// A sink that fails for a while: the batch stays pending and is retried
// until accepted; nothing lost, nothing twice.
func exportSinkFailsThenRecovers(t *testing.T, newTrail func(*testing.T, int) trail) {
	tr := newTrail(t, 0)
	ids := tr.appendEvents(t, 60, "s")
	var healthy atomic.Bool
	rec := &recorder{fail: func(int64) bool { return !healthy.Load() }}
	run(t, export.Options{Source: tr.source(t, "c1"), Sink: rec, BatchSize: 25})
	poll(t, "5 refused writes", func() bool { return rec.attempts.Load() >= 5 })
	if n := tr.pending(t); n != 25 {
		t.Errorf("pending %d while the sink is down, want the batch of 25", n)
	}
	if len(rec.ids()) != 0 {
		t.Fatal("accepted while failing")
	}
	healthy.Store(true)
	poll(t, "60 events", func() bool { return len(rec.ids()) >= 60 })
	poll(t, "no pending entry", func() bool { return tr.pending(t) == 0 })
	if got := rec.ids(); !slices.Equal(got, ids) {
		t.Fatalf("exported %d ids, want the %d appended, once each, in order", len(got), len(ids))
	}
}

// Entries trimmed from a bounded trail while pending for an exporter that
// stopped are dropped, not retried forever: the pending list is bounded by
// the trail.
func exportPendingTrimmed(t *testing.T, newTrail func(*testing.T, int) trail, survivor string, claimIdle time.Duration) {
	const limit = 5
	tr := newTrail(t, limit)
	tr.appendEvents(t, limit, "old")
	dead := tr.source(t, "dead")
	if err := dead.CreateGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got, _, err := dead.ReadNew(t.Context(), limit, time.Second); err != nil || len(got) != limit {
		t.Fatalf("ReadNew: %d, %v", len(got), err)
	}
	fresh := tr.appendEvents(t, limit, "new") // trims every old one
	rec := &recorder{}
	run(t, export.Options{Source: tr.source(t, survivor), Sink: rec, ClaimIdle: claimIdle})
	poll(t, "the fresh events", func() bool { return len(rec.ids()) >= limit })
	poll(t, "no pending entry", func() bool { return tr.pending(t) == 0 })
	if got := rec.ids(); !slices.Equal(got, fresh) {
		t.Fatalf("exported %v, want %v", got, fresh)
	}
}
