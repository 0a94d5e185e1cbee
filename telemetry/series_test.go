package telemetry

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/store"
)

// TestSeries: concurrent first uses of a key make its series once, and
// every caller gets that one.
func TestSeries(t *testing.T) {
	var s series[string, *int]
	var made atomic.Int32
	mk := func(string) *int { made.Add(1); return new(int) }
	var wg sync.WaitGroup
	got := make([][3]*int, 8)
	for g := range got {
		wg.Go(func() {
			for range 1000 {
				got[g] = [3]*int{s.get("a", mk), s.get("b", mk), s.get("c", mk)}
			}
		})
	}
	wg.Wait()
	if n := made.Load(); n != 3 {
		t.Errorf("made %d series for 3 keys", n)
	}
	for g := range got {
		if got[g] != got[0] {
			t.Fatalf("caller %d got other series than caller 0", g)
		}
	}
	if got[0][0] == got[0][1] || got[0][1] == got[0][2] {
		t.Error("two keys share a series")
	}
}

// TestMemoisedSeries: the memoised series count each label set apart, as
// the vectors' WithLabelValues did.
func TestMemoisedSeries(t *testing.T) {
	m := NewMetrics("domain-a", "domain-b")
	ok := &store.Event{SourceDomain: "domain-a", TargetDomain: "domain-b", Outcome: store.OutcomeSuccess}
	refused := &store.Event{SourceDomain: "domain-a", TargetDomain: "domain-b", Outcome: store.OutcomeFailure, Reason: "POLICY_DENIED"}
	for _, ev := range []*store.Event{ok, ok, refused} {
		m.ChainFinished(ev, time.Millisecond)
	}
	m.HopFinished("domain-a", "token_exchange", time.Millisecond, "")
	m.HopFinished("domain-b", "jwt_bearer", time.Millisecond, "")
	m.HopFinished("domain-b", "jwt_bearer", time.Millisecond, "")
	m.ObserveUnary("/chainbroker.v1.ChainService/Chain", time.Now(), nil)
	m.ObserveUnary("/chainbroker.v1.ChainService/Chain", time.Now(), status.Error(codes.PermissionDenied, "no"))
	m.ObserveUnary("/chainbroker.v1.ChainService/Chain", time.Now(), nil)
	m.observeStore("mark", time.Now(), nil)
	m.observeStore("append", time.Now(), errors.New("down"))
	m.observeStore("append", time.Now(), nil)
	m.CacheLookup("domain-b", true)
	m.CacheLookup("domain-b", true)
	m.CacheLookup("domain-b", false)
	text := scrape(t, m)
	for _, want := range []string{
		`chainbroker_chains_total{outcome="success",reason="",source="domain-a",target="domain-b"} 2`,
		`chainbroker_chains_total{outcome="failure",reason="POLICY_DENIED",source="domain-a",target="domain-b"} 1`,
		`chainbroker_chain_duration_seconds_count{outcome="success",source="domain-a",target="domain-b"} 2`,
		`chainbroker_chain_duration_seconds_count{outcome="failure",source="domain-a",target="domain-b"} 1`,
		`chainbroker_hop_duration_seconds_count{domain="domain-a",hop="token_exchange"} 1`,
		`chainbroker_hop_duration_seconds_count{domain="domain-b",hop="jwt_bearer"} 2`,
		`chainbroker_grpc_requests_total{code="OK",method="/chainbroker.v1.ChainService/Chain"} 2`,
		`chainbroker_grpc_requests_total{code="PermissionDenied",method="/chainbroker.v1.ChainService/Chain"} 1`,
		`chainbroker_grpc_request_duration_seconds_count{method="/chainbroker.v1.ChainService/Chain"} 3`,
		`chainbroker_store_operation_duration_seconds_count{operation="mark"} 1`,
		`chainbroker_store_operation_duration_seconds_count{operation="append"} 2`,
		`chainbroker_store_errors_total{operation="append"} 1`,
		`chainbroker_cache_lookups_total{result="hit",target="domain-b"} 2`,
		`chainbroker_cache_lookups_total{result="miss",target="domain-b"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %s", want)
		}
	}
}

// chainMetrics returns a function recording one chain's metrics on a fresh
// Metrics: the chain, its two hops, the gRPC call, two store operations and
// a cache lookup.
func chainMetrics() func() {
	m := NewMetrics("domain-a", "domain-b")
	ev := &store.Event{SourceDomain: "domain-a", TargetDomain: "domain-b", Outcome: store.OutcomeSuccess}
	return func() {
		m.ChainFinished(ev, time.Millisecond)
		m.HopFinished("domain-a", "token_exchange", time.Millisecond, "")
		m.HopFinished("domain-b", "jwt_bearer", time.Millisecond, "")
		m.ObserveUnary("/chainbroker.v1.ChainService/Chain", time.Now(), nil)
		m.observeStore("mark", time.Now(), nil)
		m.observeStore("append", time.Now(), nil)
		m.CacheLookup("domain-b", true)
	}
}

// TestChainMetricsAllocations: once a chain's series are known, recording a
// chain's metrics allocates nothing.
func TestChainMetricsAllocations(t *testing.T) {
	record := chainMetrics()
	record()
	if n := testing.AllocsPerRun(100, record); n != 0 {
		t.Errorf("a chain's metrics: %.0f allocations, want 0", n)
	}
}

// BenchmarkChainMetrics records one chain's metrics (chainMetrics), from
// parallel callers.
func BenchmarkChainMetrics(b *testing.B) {
	record := chainMetrics()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			record()
		}
	})
}
