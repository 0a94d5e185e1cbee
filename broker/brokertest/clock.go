package brokertest

import (
	"sync"
	"time"
)

// Clock is a settable clock, safe for concurrent use: pass its Now as
// broker.Config.Now, then move it with Advance instead of sleeping.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock is a clock at t; the zero t starts it at the current time
// (truncated to the second, as JWT times are).
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Now().Truncate(time.Second)
	}
	return &Clock{t: t}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d (backwards if d < 0).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
