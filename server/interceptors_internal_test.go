package server

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
)

// TestCallInfo: the request id and what authentication found reach the
// handler through one context value (callInfo) that authInterceptor fills
// in place, and the interceptors' work on a call stays within its
// allocation ceiling; authInterceptor alone (without withRequestID before
// it) still gives the handler the caller.
func TestCallInfo(t *testing.T) {
	a, err := auth.New(auth.Config{AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	rt := &runState{auth: a}
	s.rt.Store(rt)
	info := &grpc.UnaryServerInfo{FullMethod: "/chainbroker.v1.ChainService/Chain"}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdRequestID, "req-1"))
	check := func(t *testing.T, wantID string) grpc.UnaryHandler {
		return func(ctx context.Context, _ any) (any, error) {
			if got := RequestIDFromContext(ctx); got != wantID {
				t.Errorf("request id %q, want %q", got, wantID)
			}
			if got := CallerFromContext(ctx); got != auth.Anonymous {
				t.Errorf("caller %q, want %q", got, auth.Anonymous)
			}
			if got := callerMethodFromContext(ctx); got != string(auth.MethodAnonymous) {
				t.Errorf("caller method %q", got)
			}
			if s.runtimeFor(ctx) != rt {
				t.Error("the call's runtime is not the one its authentication read")
			}
			return nil, nil
		}
	}
	unary := s.intercept
	if _, err := unary(ctx, nil, info, check(t, "req-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.authInterceptor(ctx, nil, info, check(t, "")); err != nil {
		t.Fatal(err)
	}
	// A panic in the handler is the one error map's INTERNAL.
	if _, err := unary(ctx, nil, info, func(context.Context, any) (any, error) { panic("boom") }); status.Code(err) != codes.Internal {
		t.Errorf("a panicking handler gave %v, want INTERNAL", err)
	}
	if RequestIDFromContext(ctx) != "" || CallerFromContext(ctx) != "" {
		t.Error("the caller's context carries the call's values")
	}
	// 15 here (grpc.SetHeader outside a gRPC server fails, with its
	// allocations); 18 before Server.intercept and callInfo for the request
	// id and authentication interceptors alone (a context value each, and
	// the chain's closure).
	noop := func(context.Context, any) (any, error) { return nil, nil }
	const ceiling = 15
	if raceEnabled {
		return // the race detector's instrumentation allocates too
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = unary(ctx, nil, info, noop) }); n > ceiling {
		t.Errorf("the interceptors allocate %v objects per call, want at most %d", n, ceiling)
	}
}

// TestNewRequestID: a fresh id is 16 lower-case hex digits (as a caller's
// would be kept: validRequestID), and ids do not repeat.
func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 10000 {
		id := newRequestID()
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || !validRequestID(id) {
			t.Fatalf("newRequestID() = %q, want 16 lower-case hex digits", id)
		}
		if seen[id] {
			t.Fatalf("newRequestID() repeated %q", id)
		}
		seen[id] = true
	}
}

// The gRPC stream workers: 64 per core, so that 64 calls in flight on a
// 2-core host each find one; at most 256, since idle workers keep their
// grown stacks.
func TestStreamWorkers(t *testing.T) {
	for _, tt := range []struct {
		procs int
		want  uint32
	}{{1, 64}, {2, 128}, {4, 256}, {8, 256}, {64, 256}} {
		if got := streamWorkersFor(tt.procs); got != tt.want {
			t.Errorf("%d cores: %d workers, want %d", tt.procs, got, tt.want)
		}
	}
}

// TestDrainingRefusesNewCalls: once the drain has begun, a call that still
// reaches the server (gRPC accepts those sent on an open connection until
// its final GOAWAY) is refused with UNAVAILABLE and SERVER_UNAVAILABLE
// before any handler runs; the health service still answers.
func TestDrainingRefusesNewCalls(t *testing.T) {
	a, err := auth.New(auth.Config{AllowAnonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{log: slog.New(slog.DiscardHandler)}
	s.rt.Store(&runState{auth: a})
	s.draining.Store(true)
	for _, tc := range []struct {
		method string
		served bool
	}{
		{"/chainbroker.v1.ChainService/Chain", false},
		{"/chainbroker.v1.AuditService/ListAuditEvents", false},
		{healthMethodPrefix + "Check", true},
	} {
		ran := false
		_, err := s.intercept(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tc.method},
			func(context.Context, any) (any, error) { ran = true; return nil, nil })
		if tc.served {
			if err != nil || !ran {
				t.Errorf("%s while draining: %v (handler ran: %v), want served", tc.method, err, ran)
			}
			continue
		}
		if code, _, info := errorInfo(t, err); ran || code != codes.Unavailable || info.GetReason() != reasonServerUnavailable {
			t.Errorf("%s while draining: %v (handler ran: %v), want UNAVAILABLE %s", tc.method, err, ran, reasonServerUnavailable)
		}
	}
}
