package server

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthService implements grpc.health.v1 for the server's own services.
// Unlike grpc-go's health.Server, its Watch streams end when shutdown
// begins: GracefulStop waits for every open stream, so a prober's Watch
// would otherwise hold the drain for its whole timeout.
type healthService struct {
	healthpb.UnimplementedHealthServer

	mu       sync.Mutex
	status   map[string]healthpb.HealthCheckResponse_ServingStatus
	changed  chan struct{} // closed and replaced on every status change
	shutdown bool
	done     chan struct{} // closed when shutdown begins
}

func newHealthService(services ...string) *healthService {
	h := &healthService{status: map[string]healthpb.HealthCheckResponse_ServingStatus{}, changed: make(chan struct{}), done: make(chan struct{})}
	for _, s := range append([]string{""}, services...) {
		h.status[s] = healthpb.HealthCheckResponse_NOT_SERVING
	}
	return h
}

// setReady sets the readiness of the broker's services (not of "", which
// is liveness; after shutdown began: NOT_SERVING).
func (h *healthService) setReady(ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.status {
		if name != "" {
			h.setLocked(name, ready)
		}
	}
}

// setAlive turns the server's own health ("", liveness) SERVING: it stays
// so, whatever the store and the domains do, until shutdown begins.
func (h *healthService) setAlive() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.setLocked("", true)
}

func (h *healthService) setLocked(name string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving && !h.shutdown {
		st = healthpb.HealthCheckResponse_SERVING
	}
	if h.status[name] != st {
		h.status[name] = st
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

// shuttingDown reports whether shutdown has begun.
func (h *healthService) shuttingDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.shutdown
}

// beginShutdown turns every service NOT_SERVING for good and ends the
// Watch streams after they have sent it.
func (h *healthService) beginShutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.status {
		h.setLocked(name, false)
	}
	if !h.shutdown {
		h.shutdown = true
		close(h.done)
	}
}

func (h *healthService) get(service string) (healthpb.HealthCheckResponse_ServingStatus, bool, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, ok := h.status[service]
	return st, ok, h.changed
}

func (h *healthService) Check(_ context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, ok, _ := h.get(in.GetService())
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (h *healthService) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for name, st := range h.status {
		out.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

func (h *healthService) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, ok, changed := h.get(in.GetService())
		if !ok {
			st = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-changed:
		case <-h.done:
			return status.Error(codes.Unavailable, "server shutting down")
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}
