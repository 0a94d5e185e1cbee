package server

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	if newLimiter(RateLimit{}) != nil {
		t.Fatal("a zero rate must disable the limiter")
	}
	l := newLimiter(RateLimit{Rate: 2, Burst: 3})
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.allow("a", t0); !ok {
			t.Fatalf("call %d within the burst refused", i)
		}
	}
	ok, wait := l.allow("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%v, want refused with 500ms", ok, wait)
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Fatal("another caller has its own bucket")
	}
	if ok, _ := l.allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token refills after 1/rate")
	}
	if ok, _ := l.allow("a", t0.Add(500*time.Millisecond)); ok {
		t.Fatal("only one token refilled")
	}
	// Idle buckets are swept when the map is full.
	for i := range maxBuckets {
		l.allow(string(rune(i+0x1000)), t0)
	}
	l.allow("new", t0.Add(time.Hour))
	if n := len(l.buckets); n > 2 {
		t.Errorf("%d buckets after a sweep, want the idle ones gone", n)
	}
}
