package report

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/measure"
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

// The ID-JAG and cloud runs have rows in the results and cost tables,
// between the plain gRPC and the REST rows, with their ratios to the direct
// A -> B baseline, and the page says what they chain into.
func TestOtherTargetRows(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	run := func(target string, p50, cpu time.Duration) load.Result {
		return load.Result{Target: target, Concurrency: 1, Window: time.Second, Chains: 250, P50: p50, P90: p50, P99: 2 * p50,
			BrokerCPU: cpu, HasBroker: target != "baseline", HasAllocs: target != "baseline", Allocs: 900, PeakRSS: 30 << 20,
			DomainsCPU: ms(2)}
	}
	plain := []load.Result{run("baseline", ms(3), 0), run("grpc", ms(3.5), ms(1)), run("rest", ms(3.6), ms(1.1))}
	others := []load.Result{run("grpc-idjag", ms(4), ms(1.2)), run("grpc-aws", ms(4.5), ms(1.3)), run("grpc-gcp", ms(6), ms(1.4)),
		run("grpc-azure", ms(5), ms(1.26))}
	for _, tt := range []struct {
		name    string
		results []load.Result
		has     []string
		hasNot  []string
	}{
		{"plain only", plain, []string{"domains A and B (RS256", "| 1 | broker, REST | 250 |"},
			[]string{"cloud imitations", "Beside the chains into domain B", "also into the other targets", "AWS", "ID-JAG"}},
		{"ID-JAG and clouds", slices.Concat(plain[:2], others, plain[2:]), []string{
			// results table, in order
			"| 1 | broker, gRPC, ID-JAG (A → C) | 250 | 4.00ms | 4.00ms | 8.00ms | 0 | 1.33× | 1.33× | +1.00ms |\n" +
				"| 1 | broker, gRPC, AWS (A → STS AssumeRoleWithWebIdentity) | 250 | 4.50ms | 4.50ms | 9.00ms | 0 | 1.50× | 1.50× | +1.50ms |\n" +
				"| 1 | broker, gRPC, Google Cloud (A → STS → IAM Credentials) | 250 | 6.00ms | 6.00ms | 12.0ms | 0 | 2.00× | 2.00× | +3.00ms |\n" +
				"| 1 | broker, gRPC, Azure (A → Entra) | 250 | 5.00ms | 5.00ms | 10.0ms | 0 | 1.67× | 1.67× | +2.00ms |\n" +
				"| 1 | broker, REST | 250 |",
			// cost table
			"| 1 | broker, gRPC, AWS (A → STS AssumeRoleWithWebIdentity) | 1.30ms | 32.5× | 900 | 30.0 MiB | 2.00ms |",
			"| 1 | broker, gRPC, Google Cloud (A → STS → IAM Credentials) | 1.40ms | 35.0× | 900 | 30.0 MiB | 2.00ms |",
			"| 1 | broker, gRPC, Azure (A → Entra) | 1.26ms | 31.5× | 900 | 30.0 MiB | 2.00ms |",
			"domains A, B and C (RS256, 300 s tokens, Keycloak's checks) with its cloud imitations (AWS STS, Google STS and IAM Credentials, Entra) in the same process",
			"over each transport (over gRPC, also into the other targets below)",
			"Beside the chains into domain B, over gRPC: the ID-JAG rows into domain C",
			"the cloud rows into the sandbox's imitations of AWS STS",
			"Google STS then IAM Credentials", "the Microsoft Entra token endpoint", "so their CPU counts as domains CPU",
			"no direct baseline is measured for them",
			"inside the measured window (into aws, when it answers AWS credentials).",
		}, nil},
		{"clouds without ID-JAG", slices.Concat(plain, others[1:]), []string{
			"domains A and B (RS256, 300 s tokens, Keycloak's checks) with its cloud imitations",
			"Beside the chains into domain B, over gRPC: the cloud rows"}, []string{"ID-JAG rows"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := New(&Run{Opts: Options{Levels: []int{1}, Transports: []string{"grpc", "rest"}, Store: "memory", Out: "docs/performance.md",
				SVG: "docs/performance/latency.svg"}, Floor: measure.Floor{PerOp: 40 * time.Microsecond}, Results: tt.results})
			md := r.Markdown() + r.Summary()
			for _, want := range tt.has {
				if !strings.Contains(md, want) {
					t.Errorf("report lacks %q", want)
				}
			}
			for _, not := range tt.hasNot {
				if strings.Contains(md, not) {
					t.Errorf("report has %q", not)
				}
			}
		})
	}
}
