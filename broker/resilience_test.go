package broker

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	b := newBreaker(Resilience{BreakerFailures: 2, BreakerCooldown: time.Second})
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at     time.Duration
		allow  bool
		record *bool // nil: no call made
	}{
		{0, true, ptr(false)},
		{0, true, ptr(true)}, // a success resets the count
		{0, true, ptr(false)},
		{0, true, ptr(false)}, // second consecutive failure: open
		{500 * time.Millisecond, false, nil},
		{time.Second, true, nil},              // half-open: one probe...
		{time.Second, false, nil},             // ...and only one
		{1100 * time.Millisecond, false, nil}, // probe still in flight
	}
	for i, s := range steps {
		if got := b.allow(t0.Add(s.at)); got != s.allow {
			t.Fatalf("step %d: allow = %v, want %v", i, got, s.allow)
		}
		if s.record != nil {
			b.record(*s.record, t0.Add(s.at))
		}
	}
	b.record(false, t0.Add(1200*time.Millisecond)) // the probe failed: open again
	if b.allow(t0.Add(2100 * time.Millisecond)) {
		t.Fatal("a failed probe must reopen the circuit for a full cooldown")
	}
	if !b.allow(t0.Add(2300 * time.Millisecond)) {
		t.Fatal("a new probe after the second cooldown")
	}
	b.release() // the caller gave up: no verdict
	if !b.allow(t0.Add(2300 * time.Millisecond)) {
		t.Fatal("a released probe lets the next one through")
	}
	b.record(true, t0.Add(2400*time.Millisecond))
	if !b.allow(t0.Add(2400*time.Millisecond)) || !b.allow(t0.Add(2400*time.Millisecond)) {
		t.Fatal("a successful probe closes the circuit")
	}

	off := newBreaker(Resilience{BreakerFailures: -1})
	for range 10 {
		off.record(false, t0)
	}
	if !off.allow(t0) {
		t.Fatal("a disabled breaker never opens")
	}
}

func ptr[T any](v T) *T { return &v }
