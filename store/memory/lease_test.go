package memory

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestCacheLeaseSweep (#14.10): leases taken with no CachePut after them
// (every exchange failed) are swept as they expire, so the lease map stays
// bounded by the live leases; before, 200,001 leases were all still held.
func TestCacheLeaseSweep(t *testing.T) {
	s := New(Options{})
	clock := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return clock }
	ctx := context.Background()
	const n = 200_001
	const ttl = 10 * time.Second
	peak := 0
	for i := range n {
		ok, err := s.CacheLease(ctx, "lease-"+strconv.Itoa(i), ttl)
		if err != nil || !ok {
			t.Fatalf("CacheLease %d: %v, %v", i, ok, err)
		}
		clock = clock.Add(time.Second) // 10 leases live at any time
		peak = max(peak, len(s.leases))
	}
	// At most twice the live leases plus minSweep are ever held.
	if bound := 2*10 + minSweep; peak > bound {
		t.Errorf("peak lease count %d, want <= %d (of %d taken)", peak, bound, n)
	}
	// A live lease is still honoured after the sweeps.
	if ok, err := s.CacheLease(ctx, "lease-"+strconv.Itoa(n-1), ttl); err != nil || ok {
		t.Errorf("the newest lease was dropped: %v, %v", ok, err)
	}

	// Live leases are never swept: with no expiry, all stay.
	s2 := New(Options{})
	s2.now = func() time.Time { return clock }
	for i := range 3 * minSweep {
		if ok, err := s2.CacheLease(ctx, "live-"+strconv.Itoa(i), time.Hour); err != nil || !ok {
			t.Fatalf("CacheLease: %v, %v", ok, err)
		}
	}
	if len(s2.leases) != 3*minSweep {
		t.Errorf("%d leases, want %d (all live)", len(s2.leases), 3*minSweep)
	}
}
