package memory

import (
	"errors"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

func exportGroupOf(t *testing.T, s *Store, consumer string) *AuditGroup {
	t.Helper()
	g, err := s.AuditGroup("siem", consumer)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CreateGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return g
}

func appendExportEvents(t *testing.T, s *Store, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		id, err := s.Append(t.Context(), &store.Event{Subject: "x", Outcome: store.OutcomeSuccess})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// Entries pending for a consumer that stopped are dropped as soon as the
// trail trims them, without waiting for any consumer to read them: the
// pending list never outgrows the trail.
func TestExportGroupPendingBoundedByTrail(t *testing.T) {
	const limit = 10
	s := New(Options{MaxEvents: limit})
	defer s.Close()
	dead := exportGroupOf(t, s, "dead")
	for round := range 5 {
		appendExportEvents(t, s, limit)
		if got, _, err := dead.ReadNew(t.Context(), 1000, 0); err != nil || len(got) != limit {
			t.Fatalf("round %d: ReadNew: %d, %v", round, len(got), err)
		}
		n, err := dead.Pending(t.Context())
		if err != nil || n > limit {
			t.Fatalf("round %d: %d pending (%v), want at most the trail's %d", round, n, err, limit)
		}
	}
	appendExportEvents(t, s, limit) // trims every pending entry
	if n, err := exportGroupOf(t, s, "probe").Pending(t.Context()); err != nil || n != 0 {
		t.Fatalf("%d pending after the trail dropped them all (%v), want 0", n, err)
	}
}

// ReadNew waiting for new events returns as soon as one is appended.
func TestExportGroupReadNewWakesOnAppend(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	g := exportGroupOf(t, s, "c")
	type result struct {
		events []store.Event
		err    error
	}
	done := make(chan result, 1)
	go func() {
		ev, _, err := g.ReadNew(t.Context(), 10, time.Hour)
		done <- result{ev, err}
	}()
	// Append only once ReadNew waits (it has made the wake channel).
	deadline := time.Now().Add(60 * time.Second)
	for waiting := false; !waiting; {
		s.mu.Lock()
		waiting = s.wake != nil
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("ReadNew never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ids := appendExportEvents(t, s, 1)
	select {
	case r := <-done:
		if r.err != nil || len(r.events) != 1 || r.events[0].ID != ids[0] {
			t.Fatalf("ReadNew: %v, %v; want %s", r.events, r.err, ids[0])
		}
	case <-time.After(60 * time.Second):
		t.Fatal("ReadNew still waiting after an append")
	}
}

// Claim takes only idle entries and makes them the claimer's; Touch keeps
// entries from being claimed; the scan cursor ends at "0-0".
func TestExportGroupClaimAndTouch(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	ids := appendExportEvents(t, s, 4)
	a, b := exportGroupOf(t, s, "a"), exportGroupOf(t, s, "b")
	if got, _, err := a.ReadNew(t.Context(), 4, 0); err != nil || len(got) != 4 {
		t.Fatalf("ReadNew: %d, %v", len(got), err)
	}
	if got, _, next, err := b.Claim(t.Context(), time.Minute, "0-0", 10); err != nil || len(got) != 0 || next != "0-0" {
		t.Fatalf("Claim of fresh entries: %d, %q, %v", len(got), next, err)
	}
	now = now.Add(2 * time.Minute)
	if err := a.Touch(t.Context(), 30*time.Second, ids[:2]); err != nil {
		t.Fatal(err)
	}
	got, _, next, err := b.Claim(t.Context(), time.Minute, "0-0", 1)
	if err != nil || len(got) != 1 || got[0].ID != ids[2] || next != ids[3] {
		t.Fatalf("Claim: %v, next %q, %v; want %s then cursor %s", got, next, err, ids[2], ids[3])
	}
	if got, _, next, err = b.Claim(t.Context(), time.Minute, next, 10); err != nil || len(got) != 1 || got[0].ID != ids[3] || next != "0-0" {
		t.Fatalf("Claim from the cursor: %v, next %q, %v", got, next, err)
	}
	// a keeps the two it touched; b now holds the other two.
	for g, want := range map[*AuditGroup][]string{a: ids[:2], b: ids[2:]} {
		got, _, err := g.ReadPending(t.Context(), "0", 10)
		if err != nil || len(got) != len(want) || got[0].ID != want[0] || got[1].ID != want[1] {
			t.Fatalf("%s pending: %v, %v; want %v", g.Consumer(), got, err, want)
		}
	}
	if err := b.Ack(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Pending(t.Context()); n != 0 {
		t.Fatalf("%d pending after Ack of all", n)
	}
	// Consumers without pending entries, idle long enough, are forgotten.
	now = now.Add(time.Hour)
	if n, err := b.ForgetIdleConsumers(t.Context(), 30*time.Minute); err != nil || n != 1 {
		t.Fatalf("ForgetIdleConsumers: %d, %v; want a forgotten", n, err)
	}
}

func TestExportGroupRefuses(t *testing.T) {
	s := New(Options{})
	if _, err := s.AuditGroup("", "c"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("empty group: %v", err)
	}
	if _, err := s.AuditGroup("g", ""); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("empty consumer: %v", err)
	}
	g, _ := s.AuditGroup("g", "c")
	if _, _, err := g.ReadNew(t.Context(), 1, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadNew before CreateGroup: %v", err)
	}
	g = exportGroupOf(t, s, "c")
	if err := g.Ack(t.Context(), []string{"nope"}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("Ack of a malformed id: %v", err)
	}
	if _, _, err := g.ReadPending(t.Context(), "x-1", 1); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("ReadPending after a malformed id: %v", err)
	}
	_ = s.Close()
	if _, _, err := g.ReadNew(t.Context(), 1, 0); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ReadNew on a closed store: %v", err)
	}
}
