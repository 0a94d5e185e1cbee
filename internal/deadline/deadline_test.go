package deadline

import (
	"context"
	"testing"
	"time"
)

// TestWithin checks that the context keeps the nearer deadline and that
// none is made when the caller's is nearer.
func TestWithin(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ctx, c := Within(parent, time.Minute)
	c()
	if ctx != parent || ctx.Err() != nil {
		t.Errorf("caller's deadline nearer: got a new context, or cancel ended the caller's")
	}
	if n := testing.AllocsPerRun(100, func() { _, c := Within(parent, time.Minute); c() }); n != 0 {
		t.Errorf("caller's deadline nearer: %v allocations, want 0", n)
	}
	ctx, c = Within(parent, time.Millisecond)
	defer c()
	if dl, _ := ctx.Deadline(); ctx == parent || time.Until(dl) > time.Millisecond {
		t.Errorf("the timeout nearer: deadline %v", dl)
	}
	ctx, c = Within(context.Background(), time.Minute)
	c()
	if _, ok := ctx.Deadline(); !ok || ctx.Err() == nil {
		t.Errorf("no caller deadline: the timeout is not applied or not cancelled")
	}
}
