package report

import (
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/bench/load"
)

func TestLatencySVG(t *testing.T) {
	svg := latencySVG("t", "s", []series{
		{Name: "a <p50>", Color: "#000", Points: []point{{1, time.Millisecond}, {64, 80 * time.Millisecond}}},
		{Name: "a p99", Color: "#000", Dashed: true, Points: []point{{1, 2 * time.Millisecond}, {64, 120 * time.Millisecond}}},
	})
	for _, want := range []string{"<svg", "</svg>", "polyline", "a &lt;p50&gt;", ">64<", "stroke-dasharray"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestCacheTargets(t *testing.T) {
	// run is a one-second run with chains chains and the given p99.
	run := func(conc int, offered float64, chains int, p99 time.Duration) load.Result {
		return load.Result{Target: "grpc+cache", Concurrency: conc, Offered: offered, Window: time.Second, Chains: chains, P99: p99}
	}
	closed := []load.Result{run(1, 0, 3000, time.Millisecond), run(64, 0, 25000, 5*time.Millisecond), run(256, 0, 24000, 20*time.Millisecond)}
	good64, good256 := run(64, 20000, 19900, 1500*time.Microsecond), run(256, 20000, 19950, 3*time.Millisecond)
	for _, tt := range []struct {
		name                    string
		closed, paced, skeleton []load.Result
		note                    string
		cache, collapse         string // results
		cacheHas, collHas       string // in the measured text
	}{
		{"pass", closed, []load.Result{good64, good256}, nil, "", "PASS", "PASS",
			"25000 chains/s (closed loop, c=64); open loop, 64 callers: 20000/s offered, 19900/s achieved (99.5%), p99 1.50ms",
			"3.00ms vs 1.00ms = 3.0×; open loop, 256 callers: 20000/s offered, 19950/s achieved (99.8%)"},
		{"p99 too high", closed, []load.Result{run(64, 20000, 20000, 2100*time.Microsecond), run(256, 20000, 20000, 4100*time.Microsecond)}, nil, "",
			"FAIL", "FAIL", "p99 2.10ms", "= 4.1×"},
		{"below 99% of the offered rate", closed, []load.Result{run(64, 20000, 19700, time.Millisecond), run(256, 20000, 15000, 2*time.Millisecond)}, nil, "",
			"FAIL", "FAIL", "19700/s achieved (98.5%)", "15000/s achieved (75.0%)"},
		{"closed-loop throughput too low", []load.Result{run(1, 0, 3000, time.Millisecond), run(64, 0, 19000, 4*time.Millisecond)},
			[]load.Result{good64, good256}, nil, "", "FAIL", "PASS", "19000 chains/s (closed loop, c=64)", ""},
		{"offered too low", closed, []load.Result{run(64, 10000, 10000, time.Millisecond), good256}, nil, "", "FAIL", "PASS",
			"offered below the target's 20,000/s", ""},
		{"no paced runs", closed, nil, nil, "", "not measured", "not measured", "no open-loop cache run with 64 callers", "no open-loop cache run with 256 callers"},
		{"no paced run with 256 callers", closed, []load.Result{good64}, nil, "", "PASS", "not measured", "", "256 callers"},
		{"no closed-loop run at c=1", closed[1:], []load.Result{good64, good256}, nil, "", "PASS", "not measured", "", "no closed-loop cache run at c=1"},
		// The skeleton's hits are shown beside the broker's and change no result.
		{"skeleton shown", closed, []load.Result{run(64, 20000, 20000, 2100*time.Microsecond), run(256, 20000, 20000, 4100*time.Microsecond)},
			[]load.Result{run(1, 0, 5000, 500*time.Microsecond), good64, good256}, "", "FAIL", "FAIL",
			"p99 2.10ms; the skeleton's hits, same load: p99 1.50ms (99.5% achieved)",
			"= 4.1×; open loop, 256 callers: 20000/s offered, 20000/s achieved (100.0%); the skeleton's hits: 3.00ms vs 500µs = 6.0×"},
		{"cache not measured", nil, nil, nil, "not measured (--cache=false)", "not measured", "not measured", "--cache=false", "--cache=false"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := cacheTarget(tt.closed, tt.paced, tt.skeleton, tt.note)
			if c.Result != tt.cache || !strings.Contains(c.Measured, tt.cacheHas) {
				t.Errorf("cache target: %s: %s; want %s and %q", c.Result, c.Measured, tt.cache, tt.cacheHas)
			}
			n := collapseTarget(tt.closed, tt.paced, tt.skeleton, tt.note)
			if n.Result != tt.collapse || !strings.Contains(n.Measured, tt.collHas) {
				t.Errorf("collapse target: %s: %s; want %s and %q", n.Result, n.Measured, tt.collapse, tt.collHas)
			}
		})
	}
}

// A profile's coverage is its samples' CPU time over the broker's CPU time
// in the window (pprof's header, parsed by the bench package's parseTop).
func TestProfileCoverage(t *testing.T) {
	hdr := "Duration: 10.04s, Total samples = 2680ms (26.70%)"
	p := &Profile{Header: hdr, Load: load.Result{Chains: 1000, BrokerCPU: 4 * time.Millisecond}}
	if c := p.coverage(); c < 0.66 || c > 0.68 {
		t.Errorf("coverage = %v, want 2.68s/4s", c)
	}
}
