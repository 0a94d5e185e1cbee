// Package deadline bounds a context by a timeout without a context of its
// own when the caller's deadline is already the nearer one: the chain path
// bounds each hop and each store operation, and its caller's deadline
// (the request's, or the hop's) is usually nearer.
package deadline

import (
	"context"
	"time"
)

// Within is context.WithTimeout(ctx, d), except that it returns ctx itself
// (and a cancel that does nothing) when ctx's deadline is at or before
// now+d: a context and timer of its own would change nothing but allocate.
func Within(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, d)
}

var noCancel context.CancelFunc = func() {}
