package memory

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) store.Store { return New(Options{}) }, storetest.Options{
		NewWithRetention: func(t *testing.T, retention time.Duration, now func() time.Time) store.Store {
			s := New(Options{AuditRetention: retention})
			s.now = now
			return s
		},
		SetListBudget: func(s store.Store, budget, slice int) {
			s.(*Store).listBudget, s.(*Store).listSlice = budget, slice
		},
	})
}

func TestRetention(t *testing.T) {
	ctx := t.Context()
	s := New(Options{MaxEvents: 10})
	var ids []string
	for i := range 25 {
		id, err := s.Append(ctx, &store.Event{Message: fmt.Sprint(i)})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		ids = append(ids, id)
	}
	page, next, err := s.List(ctx, store.Filter{}, 100, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(page) != 10 || next != "" {
		t.Fatalf("List = %d events, next %q; want the 10 newest", len(page), next)
	}
	for i, e := range page {
		if want := ids[len(ids)-1-i]; e.ID != want {
			t.Fatalf("List[%d].ID = %s, want %s", i, e.ID, want)
		}
	}
	if _, err := s.Get(ctx, ids[14]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a dropped event: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, ids[15]); err != nil {
		t.Fatalf("Get of the oldest kept event: %v", err)
	}
}

// TestIDsMonotonic checks the Redis id algorithm: ms = max(now, last),
// seq restarts on a new millisecond, even when the clock steps back.
func TestIDsMonotonic(t *testing.T) {
	ctx := t.Context()
	s := New(Options{})
	clock := time.UnixMilli(5000)
	s.now = func() time.Time { return clock }
	steps := []struct {
		clockMs int64
		want    string
	}{
		{5000, "5000-0"},
		{5000, "5000-1"},
		{5001, "5001-0"},
		{4000, "5001-1"}, // clock went back
		{4000, "5001-2"},
		{5001, "5001-3"},
		{6000, "6000-0"},
	}
	for _, st := range steps {
		clock = time.UnixMilli(st.clockMs)
		id, err := s.Append(ctx, &store.Event{Time: time.Unix(1, 0)})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if id != st.want {
			t.Fatalf("clock %d ms: id %s, want %s", st.clockMs, id, st.want)
		}
	}
}

// TestReplaySweep checks that expired markers are pruned as marks arrive,
// so the map does not grow without bound.
func TestReplaySweep(t *testing.T) {
	ctx := t.Context()
	s := New(Options{})
	clock := time.Unix(1000, 0)
	s.now = func() time.Time { return clock }
	const n = 10 * minSweep
	for i := range n {
		// Every marker lives 1s; the clock advances 10ms per mark, so about
		// 100 markers are live at any time.
		clock = clock.Add(10 * time.Millisecond)
		k := store.ReplayKey{Target: "t", Issuer: "i", JTI: fmt.Sprint(i)}
		if err := s.Mark(ctx, k, clock.Add(time.Second)); err != nil {
			t.Fatalf("Mark %d: %v", i, err)
		}
	}
	s.mu.Lock()
	size := len(s.replay)
	s.mu.Unlock()
	if size > 2*minSweep {
		t.Fatalf("replay map holds %d markers after %d marks with ~100 live, want <= %d", size, n, 2*minSweep)
	}
	// An expired marker no longer blocks, swept or not.
	clock = clock.Add(2 * time.Second)
	if err := s.Mark(ctx, store.ReplayKey{Target: "t", Issuer: "i", JTI: fmt.Sprint(n - 1)}, clock.Add(time.Second)); err != nil {
		t.Fatalf("Mark of an expired key: %v", err)
	}
}

func TestClosed(t *testing.T) {
	ctx := t.Context()
	s := New(Options{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := s.Append(ctx, &store.Event{})
	for op, err := range map[string]error{
		"Ping":   s.Ping(ctx),
		"Mark":   s.Mark(ctx, store.ReplayKey{Target: "t", Issuer: "i", JTI: "j"}, time.Now().Add(time.Hour)),
		"Append": err,
		"List":   func() error { _, _, err := s.List(ctx, store.Filter{}, 0, ""); return err }(),
		"Get":    func() error { _, err := s.Get(ctx, "1-0"); return err }(),
	} {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", op, err)
		}
	}
}

func BenchmarkMark(b *testing.B) {
	ctx := b.Context()
	s := New(Options{})
	until := time.Now().Add(time.Hour)
	i := 0
	for b.Loop() {
		i++
		if err := s.Mark(ctx, store.ReplayKey{Target: "t", Issuer: "i", JTI: fmt.Sprint(i)}, until); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	ctx := b.Context()
	s := New(Options{})
	e := &store.Event{Subject: "alice", TargetDomain: "partner", Scopes: []string{"a", "b"}, Outcome: store.OutcomeSuccess}
	for b.Loop() {
		if _, err := s.Append(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIndexTrimmed checks that the indexes shrink with the trimmed events:
// each list holds exactly the kept events' positions, a value whose events
// are all gone has no list, and filtered listing still finds the kept ones.
func TestIndexTrimmed(t *testing.T) {
	ctx := t.Context()
	s := New(Options{MaxEvents: 10})
	if _, err := s.Append(ctx, &store.Event{Subject: "gone", Caller: "c"}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	old := time.Now().Add(-time.Hour) // skewed: an hour before the append
	for i := range 25 {
		e := store.Event{Subject: fmt.Sprint("s", i%2), Caller: "c", Outcome: store.OutcomeSuccess}
		if i%3 == 0 {
			e.Time = old
		}
		if _, err := s.Append(ctx, &e); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	// The skew list holds the kept skewed events, exactly.
	var want []uint64
	for i := range s.events {
		if s.events[i].Time.Equal(old) {
			want = append(want, s.base+uint64(i))
		}
	}
	if fmt.Sprint(s.skew) != fmt.Sprint(want) || len(want) == 0 {
		t.Errorf("skew list = %v, want %v", s.skew, want)
	}
	total := 0
	for k, l := range s.index {
		if k.value == "gone" {
			t.Errorf("index of a trimmed-away value still has %d entries", len(l))
		}
		for _, p := range l {
			if p < s.base || p >= s.base+uint64(len(s.events)) {
				t.Errorf("index %v holds position %d outside [%d, %d)", k, p, s.base, s.base+uint64(len(s.events)))
			}
		}
		total += len(l)
	}
	if total != 3*len(s.events) {
		t.Errorf("indexes hold %d entries for %d events with 3 indexed fields each", total, len(s.events))
	}
	page, next, err := s.List(ctx, store.Filter{Subject: "s0", Caller: "c"}, 100, "")
	if err != nil || len(page) != 5 || next != "" {
		t.Fatalf("List = %d events, next %q, %v; want the 5 kept", len(page), next, err)
	}
	page, next, err = s.List(ctx, store.Filter{End: old.Add(time.Second)}, 100, "")
	if err != nil || len(page) != len(want) || next != "" {
		t.Fatalf("List(skewed) = %d events, next %q, %v; want the %d kept", len(page), next, err, len(want))
	}
}
