package report

import (
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/bench/load"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{1.2}, 1.2},
		{[]float64{1.16, 0.92, 1.00}, 1.00},
		{[]float64{1.54, 1.24, 1.30, 1.10}, 1.27},
		{[]float64{3, 1, 2, 5, 4}, 3},
	} {
		if got := median(tt.xs); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
}

// With --pairs N > 1 the closed-loop ratios of the targets rest on the
// median of the per-pair ratios, and the measured text shows their spread
// and then the full-length runs; with --pairs 1 (no pairs) the targets are
// the full-length runs', as before.
func TestPairsTargets(t *testing.T) {
	us := func(f float64) time.Duration { return time.Duration(f * float64(time.Microsecond)) }
	run := func(target string, conc int, p50, cpu time.Duration) load.Result {
		return load.Result{Target: target, Concurrency: conc, Window: time.Second, Chains: 100, P50: p50, BrokerCPU: cpu,
			HasBroker: target != "baseline"}
	}
	// pairs are pairs with the measured side's CPU and p50 at the given
	// ratios to a reference of 1ms CPU and 2ms p50.
	pairs := func(name, measured, ref string, conc int, cpu, p50 []float64) PairSet {
		ps := PairSet{Name: name, Concurrency: conc}
		for i := range cpu {
			ps.Pairs = append(ps.Pairs, Pair{
				Measured:  run(measured, conc, us(2000*p50[i]), us(1000*cpu[i])),
				Reference: run(ref, conc, us(2000), us(1000)),
			})
		}
		return ps
	}
	// The full-length runs: every ratio 1.20× (FAIL without pairs).
	base := func(n int) *Run {
		return &Run{
			Opts: Options{Transports: []string{"grpc", "rest"}, Pairs: n, PairDuration: 5 * time.Second},
			Results: []load.Result{
				run("baseline", 1, us(1400), 0),
				run("grpc", 1, us(2400), us(1200)), run("rest", 1, us(2880), us(1440)),
				run("grpc", 64, us(2400), us(1200)), run("rest", 64, us(2880), us(1440)),
			},
			Skeleton:      []load.Result{run("skeleton", 1, us(2000), us(1000)), run("skeleton", 64, us(2000), us(1000))},
			Cache:         []load.Result{run("grpc+cache", 1, us(2400), us(1200))},
			SkeletonCache: []load.Result{run("skeleton+cache", 1, us(2000), us(1000))},
		}
	}
	// direct are pairs of a transport against the direct client, the
	// measured side's p50 that many µs above the direct client's 2ms.
	direct := func(transport string, added ...float64) PairSet {
		ps := PairSet{Name: PairsDirect(transport), Concurrency: 1}
		for _, a := range added {
			ps.Pairs = append(ps.Pairs, Pair{Measured: run(transport, 1, us(2000+a), us(1000)), Reference: run("baseline", 1, us(2000), 0)})
		}
		return ps
	}
	withPairs := func() *Run {
		r := base(3)
		r.Pairs = []PairSet{
			pairs(PairsREST, "rest", "grpc", 1, []float64{1.02, 1.16, 0.97}, []float64{1.01, 1.00, 1.03}),
			pairs(PairsSkeleton, "grpc", "skeleton", 1, []float64{0.92, 1.16, 1.00}, []float64{1.05, 1.02, 1.04}),
			pairs(PairsSkeleton, "grpc", "skeleton", 64, []float64{1.24, 1.54, 1.30}, []float64{1.00, 1.00, 1.00}),
			pairs(PairsSkeletonCache, "grpc+cache", "skeleton+cache", 1, []float64{1.05, 1.08, 1.01}, []float64{1.12, 1.30, 1.02}),
			direct("grpc", 300, 700, 450),
			direct("rest", 600, 550, 900),
			direct("skeleton", 400, 350, 500),
			pairs(PairsREST, "rest", "grpc", 64, []float64{1.08, 1.12, 1.05}, []float64{1.30, 1.30, 1.30}),
		}
		return r
	}
	result := func(r *Run, prefix string) targetCheck {
		t.Helper()
		for _, c := range r.checkTargets() {
			if strings.HasPrefix(c.Target, prefix) {
				return c
			}
		}
		t.Fatalf("no target %q", prefix)
		return targetCheck{}
	}
	const fullRuns = "full runs: CPU 1.20ms vs 1.00ms = 1.20×; p50 2.40ms vs 2.00ms = 1.20×"
	for _, tt := range []struct {
		name   string
		run    func() *Run
		target string // prefix
		want   string
		is     string // the whole measured text, when set
		has    []string
	}{
		{"one pair: the full runs, as before", func() *Run { return base(1) }, "broker vs skeleton, gRPC, c=1", "FAIL",
			"CPU 1.20ms vs 1.00ms = 1.20×; p50 2.40ms vs 2.00ms = 1.20×", nil},
		{"one pair: REST, as before", func() *Run { return base(1) }, "REST vs gRPC, c=1", "FAIL",
			"CPU 1.44ms vs 1.20ms = 1.20×; p50 2.88ms vs 2.40ms = 1.20×", nil},
		{"one pair: cache hits, as before", func() *Run { return base(1) }, "broker vs skeleton, cache hits, gRPC, c=1", "FAIL",
			"CPU 1.20ms vs 1.00ms = 1.20×; p50 2.40ms vs 2.00ms = 1.20×", nil},
		{"skeleton c=1: the median passes", withPairs, "broker vs skeleton, gRPC, c=1", "PASS",
			"median of 3 pairs of 5s: CPU 1.00× (min 0.92×, max 1.16×; pairs 0.92×, 1.16×, 1.00×); " +
				"p50 1.04× (min 1.02×, max 1.05×; pairs 1.05×, 1.02×, 1.04×); " + fullRuns, nil},
		{"skeleton c=64: the median fails", withPairs, "broker vs skeleton, gRPC, c=64", "FAIL", "",
			[]string{"CPU 1.30× (min 1.24×, max 1.54×; pairs 1.24×, 1.54×, 1.30×)", fullRuns}},
		{"cache hits c=1: the p50 median fails", withPairs, "broker vs skeleton, cache hits, gRPC, c=1", "FAIL", "",
			[]string{"CPU 1.05× (min 1.01×, max 1.08×;", "p50 1.12× (min 1.02×, max 1.30×;", fullRuns}},
		{"REST c=1", withPairs, "REST vs gRPC, c=1", "PASS", "",
			[]string{"median of 3 pairs of 5s: CPU 1.02× (min 0.97×, max 1.16×; pairs 1.02×, 1.16×, 0.97×); p50 1.01×",
				"; full runs: CPU 1.44ms vs 1.20ms = 1.20×"}},
		{"added c=1, gRPC: the median passes", withPairs, "p50 added over the direct baseline at c=1 ≤ +500µs, grpc", "PASS",
			"median of 3 pairs of 5s: p50 +450µs (min +300µs, max +700µs; pairs +300µs, +700µs, +450µs); full runs: p50 2.40ms vs 1.40ms = +1.00ms; " +
				"the skeleton (the design's floor), for information: median of 3 pairs of 5s: p50 +400µs (min +350µs, max +500µs; pairs +400µs, +350µs, +500µs)", nil},
		{"added c=1, REST: the median fails", withPairs, "p50 added over the direct baseline at c=1 ≤ +500µs, rest", "FAIL", "",
			[]string{"median of 3 pairs of 5s: p50 +600µs (min +550µs, max +900µs;", "full runs: p50 2.88ms vs 1.40ms = +1.48ms"}},
		{"one pair: added, as before", func() *Run { return base(1) }, "p50 added over the direct baseline at c=1 ≤ +500µs, grpc", "FAIL",
			"p50 2.40ms vs 1.40ms = +1.00ms", nil},
		{"one pair: REST c=64, as before", func() *Run { return base(1) }, "REST vs gRPC, c=64", "FAIL",
			"CPU 1.44ms vs 1.20ms = 1.20×; p50 2.88ms vs 2.40ms = 1.20× (p50 for information)", nil},
		{"REST c=64: the CPU median passes, p50 for information", withPairs, "REST vs gRPC, c=64", "PASS",
			"median of 3 pairs of 5s: CPU 1.08× (min 1.05×, max 1.12×; pairs 1.08×, 1.12×, 1.05×); " +
				"p50 1.30× (min 1.30×, max 1.30×; pairs 1.30×, 1.30×, 1.30×); " +
				"full runs: CPU 1.44ms vs 1.20ms = 1.20×; p50 2.88ms vs 2.40ms = 1.20× (p50 for information)", nil},
		{"pairs without chains: the full runs", func() *Run {
			r := withPairs()
			for i := range r.Pairs[1].Pairs {
				r.Pairs[1].Pairs[i].Reference.Chains = 0
			}
			return r
		}, "broker vs skeleton, gRPC, c=1", "FAIL", "CPU 1.20ms vs 1.00ms = 1.20×; p50 2.40ms vs 2.00ms = 1.20×", nil},
		{"a pair without chains is left out", func() *Run {
			r := withPairs()
			r.Pairs[1].Pairs[1].Measured.Chains = 0 // the 1.16× pair
			return r
		}, "broker vs skeleton, gRPC, c=1", "PASS", "",
			[]string{"median of 2 pairs of 5s: CPU 0.96× (min 0.92×, max 1.00×; pairs 0.92×, 1.00×)"}},
		{"both sides at once: said in the label", func() *Run {
			r := withPairs()
			r.Pairs[2].Together = true // broker vs skeleton, c=64
			return r
		}, "broker vs skeleton, gRPC, c=64", "FAIL", "",
			[]string{"median of 3 pairs of 5s, both sides at once: CPU 1.30×"}},
		{"back to back: no such words", withPairs, "broker vs skeleton, gRPC, c=64", "FAIL", "",
			[]string{"median of 3 pairs of 5s: CPU 1.30×"}},
		{"no full runs: not measured", func() *Run {
			r := withPairs()
			r.Skeleton, r.SkelNote = nil, "not measured: needs --store redis"
			return r
		}, "broker vs skeleton, gRPC, c=1", "not measured", "not measured: needs --store redis", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := result(tt.run(), tt.target)
			if c.Result != tt.want {
				t.Errorf("%s: %s, want %s: %s", c.Target, c.Result, tt.want, c.Measured)
			}
			if tt.is != "" && c.Measured != tt.is {
				t.Errorf("%s:\n got %s\nwant %s", c.Target, c.Measured, tt.is)
			}
			for _, h := range tt.has {
				if !strings.Contains(c.Measured, h) {
					t.Errorf("%s: %s; lacks %q", c.Target, c.Measured, h)
				}
			}
		})
	}
}

// The targets section says how the ratios are measured with pairs, and
// nothing about pairs with --pairs 1.
func TestPairsMarkdown(t *testing.T) {
	for _, n := range []int{1, 3} {
		r := New(&Run{Opts: Options{Levels: []int{1}, Transports: []string{"grpc"}, Store: "memory", Out: "docs/performance.md",
			SVG: "docs/performance/latency.svg", Pairs: n, PairDuration: 5 * time.Second}})
		has := strings.Contains(r.Markdown(), "rest on the median of 3 short pairs of 5s each")
		if has != (n > 1) {
			t.Errorf("--pairs %d: the pairs' note is there: %v", n, has)
		}
	}
	// With --pairs-together, a paragraph says how those pairs ran.
	for _, together := range []bool{false, true} {
		r := New(&Run{Opts: Options{Levels: []int{1}, Transports: []string{"grpc"}, Store: "redis", Out: "docs/performance.md",
			SVG: "docs/performance/latency.svg", Pairs: 3, PairDuration: 5 * time.Second},
			Pairs: []PairSet{{Name: PairsSkeleton, Concurrency: 1, Together: together}}})
		if has := strings.Contains(r.Markdown(), "ran with both sides at the same time (`--pairs-together`)"); has != together {
			t.Errorf("together %v: the paragraph is there: %v", together, has)
		}
	}
}
