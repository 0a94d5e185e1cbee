package server

import (
	"sync"
	"time"
)

// RateLimit is a per-caller token bucket: Rate requests per second on
// average, bursts of up to Burst. Zero Rate disables it.
type RateLimit struct {
	Rate  float64
	Burst int
}

// limiter holds one bucket per caller. Callers are authenticated names, but
// bearer-token callers are open-ended, so idle buckets are dropped when the
// map grows past maxBuckets.
type limiter struct {
	cfg     RateLimit
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

const maxBuckets = 10000

func newLimiter(cfg RateLimit) *limiter {
	if cfg.Rate <= 0 {
		return nil
	}
	if cfg.Burst < 1 {
		cfg.Burst = 1
	}
	return &limiter{cfg: cfg, buckets: map[string]*bucket{}}
}

// allow takes a token for caller; when none is left it returns false and how
// long until one is.
func (l *limiter) allow(caller string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[caller]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.sweep(now)
		}
		b = &bucket{tokens: float64(l.cfg.Burst), last: now}
		l.buckets[caller] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * l.cfg.Rate
	if max := float64(l.cfg.Burst); b.tokens > max {
		b.tokens = max
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.cfg.Rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that have refilled completely (their callers are idle).
func (l *limiter) sweep(now time.Time) {
	full := float64(l.cfg.Burst)
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.cfg.Rate >= full {
			delete(l.buckets, k)
		}
	}
}
