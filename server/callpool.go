package server

import (
	"context"
	"iter"
	"sync"

	"google.golang.org/grpc"
)

// callPool runs gRPC calls on goroutines kept between calls, handing each
// call the one that finished last.
//
// Why: a chain runs deep (the interceptors, the broker, two token requests,
// the grant's verification, the store), and a goroutine's stack grows to
// that depth by doubling, copying the stack and adjusting every frame each
// time. gRPC keeps its stream workers (streamWorkers) between calls, but
// hands a call to the worker that has waited longest: at c=1 the workers
// take turns, each idles through garbage collections, which shrink an idle
// goroutine's stack, and the next call grows it again deep in the chain
// (copystack was about 3% of the broker's CPU at c=1 in perf). Here the
// goroutine that finished last takes the next call, so under light load
// one or a few goroutines serve every call with their stacks grown, and the
// ones left at the bottom of the pile shrink back as they should.
//
// Each pooled goroutine is a coroutine (iter.Pull): the caller switches to
// it and back directly, without the scheduler, so a call costs two
// switches and no wake-up of another thread. gRPC's worker still decodes
// the request and encodes the answer, both shallow.
type callPool struct {
	next   grpc.UnaryServerInterceptor // what every call runs
	mu     sync.Mutex
	idle   []*pooledGoroutine // the most recently idle last
	n      int                // started and not stopped, idle or busy
	max    int
	closed bool
}

// pooledGoroutine runs one call of next per resume: the caller sets the
// call's fields, resumes it, and reads the result once resume returns.
type pooledGoroutine struct {
	next   grpc.UnaryServerInterceptor
	resume func() (struct{}, bool)
	stop   func()

	ctx  context.Context
	req  any
	info *grpc.UnaryServerInfo
	h    grpc.UnaryHandler
	resp any
	err  error
}

// newCallPool runs next for every call, on at most max pooled goroutines.
func newCallPool(max int, next grpc.UnaryServerInterceptor) *callPool {
	return &callPool{next: next, max: max}
}

// intercept runs p.next on a pooled goroutine, or on the caller's own when
// all max are busy or the pool is closed. It is the gRPC server's unary
// interceptor.
func (p *callPool) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	g := p.get()
	if g == nil {
		return p.next(ctx, req, info, h)
	}
	g.ctx, g.req, g.info, g.h = ctx, req, info, h
	returned := false
	defer func() {
		if !returned { // a panic or runtime.Goexit ended g; resume re-raised it here
			p.drop()
		}
	}()
	g.resume()
	returned = true
	resp, err := g.resp, g.err
	g.resp, g.err = nil, nil
	p.put(g)
	return resp, err
}

// get takes the most recently idle goroutine, or starts one while fewer
// than max are; nil when none is to be had.
func (p *callPool) get() *pooledGoroutine {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		g := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return g
	}
	if p.closed || p.n >= p.max {
		return nil
	}
	p.n++
	g := &pooledGoroutine{next: p.next}
	g.resume, g.stop = iter.Pull(g.loop)
	return g
}

// loop serves one call per resume and drops its references between calls,
// so that an idle goroutine keeps no request alive.
func (g *pooledGoroutine) loop(yield func(struct{}) bool) {
	for {
		g.resp, g.err = g.next(g.ctx, g.req, g.info, g.h)
		g.ctx, g.req, g.info, g.h = nil, nil, nil, nil
		if !yield(struct{}{}) {
			return
		}
	}
}

func (p *callPool) put(g *pooledGoroutine) {
	p.mu.Lock()
	if p.closed {
		p.n--
		p.mu.Unlock()
		g.stop()
		return
	}
	p.idle = append(p.idle, g)
	p.mu.Unlock()
}

// drop forgets a goroutine that ended during a call.
func (p *callPool) drop() {
	p.mu.Lock()
	p.n--
	p.mu.Unlock()
}

// close ends the idle goroutines; busy ones end when their call returns,
// and calls after close run on their caller's goroutine.
func (p *callPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.n -= len(idle)
	p.mu.Unlock()
	for _, g := range idle {
		g.stop()
	}
}

// size reports the goroutines started and not stopped, and how many of them
// are idle.
func (p *callPool) size() (started, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, len(p.idle)
}
