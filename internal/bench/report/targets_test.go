package report

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/bench/load"
)

// Issue 18's targets: the broker against the skeleton (chains and cache
// hits), REST against gRPC, and the latency added at c=1.
func TestIssue18Targets(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	run := func(target string, conc int, offered float64, p50, cpu time.Duration) load.Result {
		return load.Result{Target: target, Concurrency: conc, Offered: offered, Window: time.Second, Chains: 100, P50: p50,
			BrokerCPU: cpu, HasBroker: target != "baseline"}
	}
	good := func() *Run {
		return &Run{
			Opts: Options{Transports: []string{"grpc", "rest"}},
			Results: []load.Result{
				run("baseline", 1, 0, ms(3), 0), run("grpc", 1, 0, ms(3.4), ms(1)), run("rest", 1, 0, ms(3.45), ms(1.05)),
				run("baseline", 64, 0, ms(90), 0), run("grpc", 64, 0, ms(100), ms(0.6)), run("rest", 64, 0, ms(104), ms(0.65)),
			},
			Skeleton:      []load.Result{run("skeleton", 1, 0, ms(3.3), ms(0.95)), run("skeleton", 64, 0, ms(95), ms(0.58))},
			Cache:         []load.Result{run("grpc+cache", 1, 0, ms(0.3), ms(0.05))},
			CachePaced:    []load.Result{run("grpc+cache", 64, 20000, ms(1), ms(0.05))},
			SkeletonCache: []load.Result{run("skeleton+cache", 1, 0, ms(0.29), ms(0.047)), run("skeleton+cache", 64, 20000, ms(0.95), ms(0.046))},
		}
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
	for _, tt := range []struct {
		name   string
		mutate func(r *Run)
		target string // prefix
		want   string
		has    string
	}{
		{"skeleton c=1", func(*Run) {}, "broker vs skeleton, gRPC, c=1", "PASS", "CPU 1.00ms vs 950µs = 1.05×; p50 3.40ms vs 3.30ms = 1.03×"},
		{"skeleton c=64", func(*Run) {}, "broker vs skeleton, gRPC, c=64", "PASS", "= 1.03×; p50 100ms vs 95.0ms = 1.05×"},
		{"skeleton c=64, CPU over", func(r *Run) { r.Results[4].BrokerCPU = ms(0.65) }, "broker vs skeleton, gRPC, c=64", "FAIL", "= 1.12×"},
		{"skeleton c=1, p50 over", func(r *Run) { r.Results[1].P50 = ms(3.7) }, "broker vs skeleton, gRPC, c=1", "FAIL", "p50 3.70ms vs 3.30ms = 1.12×"},
		{"no skeleton", func(r *Run) { r.Skeleton, r.SkelNote = nil, "not measured: needs --store redis" }, "broker vs skeleton, gRPC, c=1",
			"not measured", "needs --store redis"},
		{"hits c=1", func(*Run) {}, "broker vs skeleton, cache hits, gRPC, c=1", "PASS", "CPU 50.0µs vs 47.0µs = 1.06×"},
		{"hits 64 callers over", func(r *Run) { r.CachePaced[0].P50 = ms(1.2) }, "broker vs skeleton, cache hits, gRPC, 64 callers", "FAIL", "p50 1.20ms vs 950µs = 1.26×"},
		{"rest c=1", func(*Run) {}, "REST vs gRPC, c=1", "PASS", "CPU 1.05ms vs 1.00ms = 1.05×; p50 3.45ms vs 3.40ms = 1.01×"},
		{"rest c=1, p50 over", func(r *Run) { r.Results[2].P50 = ms(3.8) }, "REST vs gRPC, c=1", "FAIL", "= 1.12×"},
		{"rest c=64 p50 not a target", func(r *Run) { r.Results[5].P50 = ms(130) }, "REST vs gRPC, c=64", "PASS", "(p50 for information)"},
		{"rest c=64, CPU over", func(r *Run) { r.Results[5].BrokerCPU = ms(0.7) }, "REST vs gRPC, c=64", "FAIL", "= 1.17×"},
		{"added grpc", func(*Run) {}, "p50 added over the direct baseline at c=1 ≤ +500µs, grpc", "PASS", "p50 3.40ms vs 3.00ms = +400µs"},
		{"added rest over", func(r *Run) { r.Results[2].P50 = ms(3.6) }, "p50 added over the direct baseline at c=1 ≤ +500µs, rest", "FAIL", "+600µs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := good()
			tt.mutate(r)
			c := result(r, tt.target)
			if c.Result != tt.want || !strings.Contains(c.Measured, tt.has) {
				t.Errorf("%s: %s: %s; want %s and %q", c.Target, c.Result, c.Measured, tt.want, tt.has)
			}
		})
	}
}

// The per-step table has a row per step, the domains' round trips under
// the hops, the totals and what the broker adds over the direct chain.
func TestStepsSection(t *testing.T) {
	col := func(name string, step time.Duration) StepColumn {
		c := StepColumn{Name: name, Traced: 10, Total: step * time.Duration(len(Steps)), OneTotal: step * time.Duration(len(Steps)),
			Upstream: [2]time.Duration{step / 2, step / 4}}
		for i := range Steps {
			c.Steps = append(c.Steps, StepTime{Median: step, OneAt: step * time.Duration(i+1), Measured: true})
		}
		return c
	}
	direct := StepColumn{Name: "direct", Traced: 10, Total: 2 * time.Millisecond, Steps: make([]StepTime, len(Steps))}
	for i, s := range Steps {
		if s.Key == StepHop1 || s.Key == StepHop2 {
			direct.Steps[i] = StepTime{Median: time.Millisecond, Measured: true}
		}
	}
	r := &Report{run: &Run{Steps: &StepTrace{Chains: 10, Columns: []StepColumn{col("grpc", 250*time.Microsecond), col("rest", 300*time.Microsecond), direct}}}}
	var sb strings.Builder
	r.stepsSection(func(f string, args ...any) { sb.WriteString(strings.TrimSuffix(sprintf(f, args...), "\n") + "\n") })
	md := sb.String()
	for _, want := range []string{
		"| step | gRPC: at | gRPC: median | REST: at | REST: median | direct: median |",
		"| hop 1: token exchange at domain A | 1.25ms | 250µs | 1.50ms | 300µs | 1.00ms |",
		"| of which domain A's HTTP round trip (the hop's client span) | | 125µs | | 150µs |  |",
		"| client → broker: the client's send, loopback, the server's read | 250µs | 250µs | 300µs | 300µs |  |",
		"| **total, send to answer** | 3.00ms | 3.00ms | 3.60ms | 3.60ms | 2.00ms |",
		"| added over the direct chain (medians) | | +1.00ms | | +1.60ms |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no row %q in:\n%s", want, md)
		}
	}
	if n := strings.Count(md, "\n| ") - 1; n != len(Steps)+2+2 { // steps, two round trips, total, added (the header excluded)
		t.Errorf("%d rows:\n%s", n, md)
	}
}

func sprintf(f string, args ...any) string { return fmt.Sprintf(f, args...) }
