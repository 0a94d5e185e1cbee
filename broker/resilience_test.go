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
		{0, true, ptr(true)},
		{0, true, ptr(true)},
		{0, true, ptr(false)}, // 2 failures of 4 calls: half: open
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
	for i := range 3 { // closed: every call goes through, not one probe
		if !b.allow(t0.Add(2400 * time.Millisecond)) {
			t.Fatalf("call %d refused: a successful probe closes the circuit", i+1)
		}
	}

	off := newBreaker(Resilience{BreakerFailures: -1})
	for range 10 {
		off.record(false, t0)
	}
	if !off.allow(t0) {
		t.Fatal("a disabled breaker never opens")
	}
}

// A partly slow domain (a minority of failures, even in a burst) stays open
// for business; a mostly failing one is cut off; old failures age out.
func TestBreakerRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tt := range []struct {
		name     string
		outcomes string // f: failure, s: success, in order
		open     bool
	}{
		{"30% failures in a burst", "sssssssfffsssssfff" + "ssss", false},
		{"all failures", "fffff", true},
		{"below the count", "ffff", false},
		{"majority failures", "ssffsfffsf", true},
	} {
		b := newBreaker(Resilience{BreakerFailures: 5, BreakerCooldown: time.Second})
		for _, o := range tt.outcomes {
			b.record(o == 's', t0)
		}
		if open := !b.allow(t0); open != tt.open {
			t.Errorf("%s: open = %v, want %v", tt.name, open, tt.open)
		}
	}
	b := newBreaker(Resilience{BreakerFailures: 3, BreakerCooldown: time.Second})
	b.record(false, t0)
	b.record(false, t0)
	b.record(false, t0.Add(breakerWindow)) // a new window: the old failures are gone
	if !b.allow(t0.Add(breakerWindow)) {
		t.Error("failures of an earlier window opened the circuit")
	}
}

func ptr[T any](v T) *T { return &v }

// A chain's further failures at a domain do not count again, except as a
// failed half-open probe, which reopens the circuit.
func TestBreakerRepeatFailure(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBreaker(Resilience{BreakerFailures: 2, BreakerCooldown: time.Second})
	b.record(false, t0)
	b.repeatFailure(t0)
	b.repeatFailure(t0)
	if !b.allow(t0) {
		t.Fatal("one chain's repeated failures opened the circuit")
	}
	b.record(false, t0) // a second chain: 2 failures of 2 calls
	if b.allow(t0) {
		t.Fatal("two chains' failures did not open the circuit")
	}
	if !b.allow(t0.Add(time.Second)) {
		t.Fatal("no probe after the cooldown")
	}
	b.repeatFailure(t0.Add(time.Second)) // the probe failed
	if b.allow(t0.Add(1500 * time.Millisecond)) {
		t.Fatal("a failed probe, reported as a repeat failure, must reopen the circuit")
	}
}
