package broker

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
)

// Resilience configures how the broker treats a failing domain.
type Resilience struct {
	// MaxAttempts bounds the token exchange attempts (hop 1) per chain, and
	// how many times a chain whose hop 2 was unavailable tries it again:
	// with the same assertion when nothing was sent, else from hop 1 with a
	// fresh one. Default 3; 1 disables retries.
	MaxAttempts int
	// BreakerFailures: the circuit opens when, within one breakerWindow, at
	// least this many calls failed on an outage (oauth.ErrUnavailable; one
	// chain's failures count once) and they are at least half of the calls. Default 5; negative disables the breaker. A rate, not a
	// run of consecutive failures: under concurrency the slow answers of a
	// partly slow domain arrive together, and must not shut it off.
	BreakerFailures int
	// BreakerCooldown is how long an open circuit refuses calls before one
	// probe is let through; default 10s.
	BreakerCooldown time.Duration
}

const (
	// breakerWindow is the span over which failures are counted.
	breakerWindow = 10 * time.Second

	backoffBase = 100 * time.Millisecond
	backoffMax  = 2 * time.Second
	// minAttemptBudget: a retry is only started if at least this much of the
	// caller's deadline would remain after the wait.
	minAttemptBudget = 50 * time.Millisecond
)

func (r *Resilience) setDefaults() {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.BreakerFailures == 0 {
		r.BreakerFailures = DefaultBreakerFailures
	}
	if r.BreakerCooldown <= 0 {
		r.BreakerCooldown = DefaultBreakerCooldown
	}
}

// breaker is a per-domain circuit breaker: closed; open for a cooldown when
// enough of the calls in the current window failed; then half-open letting
// one probe through.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu          sync.Mutex
	windowStart time.Time
	calls       int // in the current window
	failures    int
	openUntil   time.Time // zero: closed
	probing     bool
}

func newBreaker(r Resilience) *breaker {
	return &breaker{threshold: r.BreakerFailures, cooldown: r.BreakerCooldown}
}

// allow reports whether a call may go out now; false while open, and while
// the one half-open probe is in flight.
func (b *breaker) allow(now time.Time) bool {
	if b.threshold < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.openUntil.IsZero():
		return true
	case now.Before(b.openUntil) || b.probing:
		return false
	}
	b.probing = true
	return true
}

// record reports a call's outcome: ok is false when the domain was
// unavailable. A failed probe reopens the circuit at once.
func (b *breaker) record(ok bool, now time.Time) {
	if b.threshold < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recordLocked(ok, now)
}

func (b *breaker) recordLocked(ok bool, now time.Time) {
	wasProbe := b.probing
	b.probing = false
	if now.Sub(b.windowStart) >= breakerWindow {
		b.windowStart, b.calls, b.failures = now, 0, 0
	}
	b.calls++
	if ok {
		if wasProbe {
			b.openUntil = time.Time{} // closed again, with a fresh window
			b.windowStart, b.calls, b.failures = now, 0, 0
		}
		return
	}
	b.failures++
	if wasProbe || b.failures >= b.threshold && 2*b.failures >= b.calls {
		b.openUntil = now.Add(b.cooldown)
		b.windowStart, b.calls, b.failures = now, 0, 0
	}
}

// repeatFailure reports a further failed call of a chain whose failure at
// this domain was already recorded: it does not count again, except as a
// failed half-open probe, which reopens the circuit.
func (b *breaker) repeatFailure(now time.Time) {
	if b.threshold < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probing {
		b.recordLocked(false, now)
	}
}

// release ends a half-open probe without judging the domain (the caller
// gave up before the domain answered).
func (b *breaker) release() {
	if b.threshold < 0 {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// retryable reports whether err is a hop failure worth another attempt: the
// domain was unreachable or overloaded (not a refusal, not an open circuit).
func retryable(err error) bool {
	e, ok := AsError(err)
	return ok && e.Reason == ReasonUpstreamUnavailable && errors.Is(e.Err, oauth.ErrUnavailable)
}

// backoff waits before attempt n+1 (n >= 1): full jitter over an exponential
// bound, at least what the server asked for (Retry-After). It returns false
// without waiting when the wait would leave less than minAttemptBudget of
// ctx's deadline, or when ctx ends: the caller's deadline is never exceeded.
func backoff(ctx context.Context, n int, cause error) bool {
	bound := min(backoffBase<<(n-1), backoffMax)
	wait := rand.N(bound) + time.Millisecond
	if ra := oauth.RetryAfter(cause); ra > wait {
		wait = ra
	}
	return sleepWithin(ctx, wait)
}

// sleepWithin waits d unless the caller's deadline would leave less than
// minAttemptBudget after it, or ctx ends first; it reports whether it waited.
func sleepWithin(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d+minAttemptBudget {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
