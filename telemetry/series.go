package telemetry

import (
	"maps"
	"sync"
	"sync/atomic"
)

// series memoises the series of a metric vector by label values: a vector's
// WithLabelValues hashes every label value and takes the vector's lock on
// each call; a chain observes eight series, always the same few. Reads are a
// lookup in an immutable map (no lock); a new key copies the map under mu.
// Label values here are bounded sets (configured domains, the broker's
// reason codes, gRPC methods and codes, store operations), so the map stays
// small and copies stop once every series has been seen. No series of these
// vectors is ever deleted, so a memoised one never goes stale.
type series[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex // serialises additions
}

// get returns the series of k, made by mk on first use.
func (s *series[K, V]) get(k K, mk func(K) V) V {
	if v, ok := s.current()[k]; ok {
		return v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current()
	if v, ok := old[k]; ok {
		return v
	}
	next := make(map[K]V, 1+len(old))
	maps.Copy(next, old)
	v := mk(k)
	next[k] = v
	s.m.Store(&next)
	return v
}

// current is the map as last stored (nil before the first series).
func (s *series[K, V]) current() map[K]V {
	if m := s.m.Load(); m != nil {
		return *m
	}
	return nil
}
