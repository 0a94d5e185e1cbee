// Package testutil holds small helpers shared by the tests of several
// packages.
package testutil

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Buffer is a bytes.Buffer safe for concurrent writes and reads: a log sink
// for a server under test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr is a loopback "127.0.0.1:port" nothing listens on (it did a
// moment ago): for a process of its own to listen on, or a peer that
// refuses connections.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Health asks a gRPC server's overall health on a new connection: SERVING,
// NOT_SERVING, or UNKNOWN when it cannot be asked (connection refused).
func Health(t testing.TB, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.Status
}

// WaitFor polls cond every 10 ms for up to d, failing the test after that.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WatchHealth keeps a health Watch on its own connection to addr, as a
// client-side health check or a balancer would, and fails the test unless
// the first status is SERVING. The channel receives the time NOT_SERVING
// arrives; stop ends the watch and closes the connection (it also runs at
// cleanup; a watch is a stream in flight, which a graceful stop waits for).
func WatchHealth(t testing.TB, addr string) (notServing <-chan time.Time, stop func()) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); _ = conn.Close() }) }
	t.Cleanup(stop)
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v, %v", st, err)
	}
	seen := make(chan time.Time, 1)
	go func() {
		for {
			st, err := watch.Recv()
			if err != nil {
				return
			}
			if st.Status == healthpb.HealthCheckResponse_NOT_SERVING {
				seen <- time.Now()
				return
			}
		}
	}()
	return seen, stop
}
