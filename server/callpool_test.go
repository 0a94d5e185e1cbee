package server

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// goroutineID is the running goroutine's number, from its stack's first
// line ("goroutine 42 [running]:").
func goroutineID(t *testing.T) int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		t.Fatalf("stack header %q", buf)
	}
	id, err := strconv.Atoi(string(f[1]))
	if err != nil {
		t.Fatalf("stack header %q: %v", buf, err)
	}
	return id
}

var testCallInfo = &grpc.UnaryServerInfo{FullMethod: "/test/Call"}

// passThrough is the innermost interceptor of these tests: it calls the
// handler.
func passThrough(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(ctx, req)
}

// TestCallPoolRunsOnMostRecentlyIdle: a call runs on a pooled goroutine (not
// the caller's), gets its request, context and handler and returns the
// handler's answer and error; the next call runs on the goroutine that
// finished last, and sequential calls keep to one goroutine.
func TestCallPoolRunsOnMostRecentlyIdle(t *testing.T) {
	p := newCallPool(4, passThrough)
	defer p.close()
	call := p.intercept
	caller := goroutineID(t)

	// Two calls at once: two goroutines. The first to start finishes last.
	type result struct {
		id  int
		err error
	}
	release1, release2 := make(chan struct{}), make(chan struct{})
	started := make(chan int, 2)
	done1, done2 := make(chan result, 1), make(chan result, 1)
	hold := func(release chan struct{}, done chan result) {
		var id int
		_, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) {
			id = goroutineID(t)
			started <- id
			<-release
			return nil, nil
		})
		done <- result{id, err}
	}
	go hold(release1, done1)
	<-started
	go hold(release2, done2)
	<-started
	close(release2)
	r2 := <-done2
	close(release1)
	r1 := <-done1
	if r1.err != nil || r2.err != nil || r1.id == r2.id {
		t.Fatalf("two calls at once: goroutines %d and %d (errors %v, %v), want two pooled goroutines", r1.id, r2.id, r1.err, r2.err)
	}
	if started, idle := p.size(); started != 2 || idle != 2 {
		t.Fatalf("after two calls at once: %d started, %d idle; want 2, 2", started, idle)
	}

	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "value")
	wantErr := errors.New("handler's error")
	for i := range 3 {
		var id int
		resp, err := call(ctx, "request", testCallInfo, func(ctx context.Context, req any) (any, error) {
			id = goroutineID(t)
			if ctx.Value(key{}) != "value" || req != "request" {
				t.Errorf("handler got context value %v, request %v", ctx.Value(key{}), req)
			}
			return "answer", wantErr
		})
		if resp != "answer" || err != wantErr {
			t.Errorf("call %d: %v, %v; want the handler's answer and error", i, resp, err)
		}
		if id == caller {
			t.Errorf("call %d ran on its caller's goroutine", i)
		}
		if id != r1.id {
			t.Errorf("call %d ran on goroutine %d, want %d, the last to finish (the other: %d)", i, id, r1.id, r2.id)
		}
	}
	if started, idle := p.size(); started != 2 || idle != 2 {
		t.Errorf("after sequential calls: %d started, %d idle; want 2, 2", started, idle)
	}
	for _, g := range p.idle {
		if g.ctx != nil || g.req != nil || g.info != nil || g.h != nil || g.resp != nil || g.err != nil {
			t.Errorf("an idle goroutine keeps its last call's references: %+v", g)
		}
	}
}

// TestCallPoolBound: with every pooled goroutine busy, a call runs on its
// caller's goroutine and no goroutine is started beyond the bound.
func TestCallPoolBound(t *testing.T) {
	p := newCallPool(1, passThrough)
	defer p.close()
	call := p.intercept
	release, started := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) {
			close(started)
			<-release
			return nil, nil
		})
		done <- err
	}()
	<-started
	caller := goroutineID(t)
	var id int
	if _, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) {
		id = goroutineID(t)
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if id != caller {
		t.Errorf("with the pool's one goroutine busy, a call ran on goroutine %d, want its caller's (%d)", id, caller)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if started, idle := p.size(); started != 1 || idle != 1 {
		t.Errorf("%d started, %d idle; want 1, 1", started, idle)
	}
}

// TestCallPoolClose: closing ends the idle goroutines at once and a busy one
// when its call returns; calls after close still run, on their callers'
// goroutines.
func TestCallPoolClose(t *testing.T) {
	baseline := runtime.NumGoroutine()
	p := newCallPool(4, passThrough)
	call := p.intercept
	release, started := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() { // busy across close
		_, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) {
			close(started)
			<-release
			return "late", nil
		})
		done <- err
	}()
	<-started
	for range 2 { // one idle goroutine
		if _, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if started, idle := p.size(); started != 2 || idle != 1 {
		t.Fatalf("before close: %d started, %d idle; want 2, 1", started, idle)
	}
	p.close()
	if started, idle := p.size(); started != 1 || idle != 0 {
		t.Errorf("after close: %d started, %d idle; want 1 (the busy one), 0", started, idle)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the call in flight at close: %v", err)
	}
	caller := goroutineID(t)
	var id int
	resp, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) {
		id = goroutineID(t)
		return "after", nil
	})
	if resp != "after" || err != nil || id != caller {
		t.Errorf("a call after close: %v, %v on goroutine %d; want it answered on its caller's (%d)", resp, err, id, caller)
	}
	if started, idle := p.size(); started != 0 || idle != 0 {
		t.Errorf("after the last call returned: %d started, %d idle; want 0, 0", started, idle)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after close, %d before the pool", runtime.NumGoroutine(), baseline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCallPoolPanic: a panic on a pooled goroutine is raised on the caller's
// (as it would be without the pool), and the ended goroutine is not pooled
// again.
func TestCallPoolPanic(t *testing.T) {
	p := newCallPool(4, passThrough)
	defer p.close()
	call := p.intercept
	got := func() (p any) {
		defer func() { p = recover() }()
		_, _ = call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) { panic("boom") })
		return nil
	}()
	if got != "boom" {
		t.Fatalf("recovered %v, want the handler's panic", got)
	}
	if started, idle := p.size(); started != 0 || idle != 0 {
		t.Errorf("after a panic: %d started, %d idle; want the ended goroutine dropped (0, 0)", started, idle)
	}
	if resp, err := call(context.Background(), nil, testCallInfo, func(context.Context, any) (any, error) { return "ok", nil }); resp != "ok" || err != nil {
		t.Errorf("a call after the panic: %v, %v", resp, err)
	}
}
