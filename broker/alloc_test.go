package broker

import (
	"context"
	"fmt"
	"testing"

	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/store/memory"
)

// TestChainAllocations bounds the allocations of a chain with both hops
// answered in memory (BenchmarkChainInMemoryHops' set-up, tracing off):
// 58 (60 with -race), of which the grant's verification is about 20. Before
// the hops stopped starting a no-op tracer's span (a context each), it was
// 60 (62); before they stopped building span options for it, their span
// names and a context when the caller's deadline is nearer, and the token
// package decoded grants with reflection, it was 162.
func TestChainAllocations(t *testing.T) {
	const runs = 50
	grants := make([]string, runs+2)
	for i := range grants {
		grants[i] = benchGrant(t, fmt.Sprintf("jti-alloc-%d", i))
	}
	replay := brokertest.NewSwappableReplay()
	ep := &brokertest.PoolEndpoint{Grants: grants, Wrapped: replay.Reset}
	br := newBenchBroker(t, ep, replay, memory.New(memory.Options{}))
	req := Request{Caller: "bench", SubjectToken: benchGrant(t, "subject-token"), TargetDomain: "domain-b"}
	ctx := context.Background()
	if _, err := br.Chain(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := testing.AllocsPerRun(runs, func() {
		if _, err := br.Chain(ctx, req); err != nil {
			t.Fatal(err)
		}
	}); got > chainAllocCeiling {
		t.Errorf("a chain with in-memory hops: %v allocations, want at most %v", got, chainAllocCeiling)
	}
}

const chainAllocCeiling = 61
