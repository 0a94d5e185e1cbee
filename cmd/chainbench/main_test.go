package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
)

// The configurations chainbench generates must stay valid as the
// configuration schema evolves: a broken one only shows in a benchmark run.
func TestBrokerConfigIsValid(t *testing.T) {
	for _, tt := range []struct {
		name   string
		o      options
		cache  bool
		secret bool
	}{
		{"redis anonymous", options{store: "redis", caller: "anonymous"}, false, false},
		{"memory apikey verify", options{store: "memory", caller: "apikey", verifySubjectToken: true}, false, false},
		{"redis cache", options{store: "redis", caller: "anonymous"}, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := &bench{o: &tt.o, redisAddr: "127.0.0.1:6399", apiKey: "k", cacheKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
				info: domainsInfo{
					AIssuer: "http://127.0.0.1:1/realms/domain-a", ATokenEndpoint: "http://127.0.0.1:1/realms/domain-a/protocol/openid-connect/token",
					AJWKS:   "http://127.0.0.1:1/realms/domain-a/protocol/openid-connect/certs",
					BIssuer: "http://127.0.0.1:2/realms/domain-b", BTokenEndpoint: "http://127.0.0.1:2/realms/domain-b/protocol/openid-connect/token",
					BJWKS: "http://127.0.0.1:2/realms/domain-b/protocol/openid-connect/certs",
				}}
			text := b.brokerConfig(brokerAddrs{grpc: "127.0.0.1:3", http: "127.0.0.1:4"}, tt.cache)
			f, err := config.Parse([]byte(text))
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if err := f.Validate(); err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if got := f.Domain("domain-b").Cache.Enabled; got != tt.cache {
				t.Errorf("domain-b cache enabled = %v", got)
			}
			if got := f.Store.Backend; got != tt.o.store {
				t.Errorf("store = %q", got)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.9: 90 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := quantile(ds, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if quantile(nil, 0.5) != 0 || quantile(ds[:1], 0.99) != time.Millisecond {
		t.Error("edge cases")
	}
}

func TestParsePprofOutput(t *testing.T) {
	out := `File: chainbench
Type: cpu
Duration: 10.04s, Total samples = 2680ms (26.70%)
Active filters:
   focus=broker\.\(\*chainRun\)\.validate$
Showing nodes accounting for 310ms, 11.57% of 2680ms total
      flat  flat%   sum%        cum   cum%
     0.61s 22.76% 22.76%      0.61s 22.76%  internal/runtime/syscall/linux.Syscall6
         0     0% 22.76%      1.13s 42.16%  github.com/chainbroker/chainbroker/broker.(*Broker).Chain
`
	hdr, rows := parseTop(out)
	if !strings.HasPrefix(hdr, "Duration: 10.04s") || len(rows) != 2 || rows[1].Name != "github.com/chainbroker/chainbroker/broker.(*Broker).Chain" || rows[0].CumPct != "22.76%" {
		t.Fatalf("header %q, rows %+v", hdr, rows)
	}
	if v, ok := focusedShare(out); !ok || v != 11.57 {
		t.Errorf("focusedShare = %v, %v", v, ok)
	}
	p := &profileResult{Header: hdr, Load: loadResult{Chains: 1000, BrokerCPU: 4 * time.Millisecond}}
	if c := p.coverage(); c < 0.66 || c > 0.68 {
		t.Errorf("coverage = %v, want 2.68s/4s", c)
	}
}

func TestProcReadings(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	// Burn a little CPU so the reading is not zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	if d, err := procCPU(os.Getpid()); err != nil || d <= 0 {
		t.Errorf("procCPU = %v, %v", d, err)
	}
	if n, err := peakRSS(os.Getpid()); err != nil || n == 0 {
		t.Errorf("peakRSS = %v, %v", n, err)
	}
	if c, err := systemCPU(); err != nil || c.busy <= 0 {
		t.Errorf("systemCPU = %+v, %v", c, err)
	}
	if procs := scanProcs(); procs[os.Getpid()].comm == "" {
		t.Error("scanProcs does not see this process")
	}
}

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

func TestPacedFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		rate    float64
		levels  []int
		wantErr string
	}{
		{"defaults", nil, 20000, []int{64, 256}, ""},
		{"quick keeps the paced runs", []string{"--quick"}, 20000, []int{64, 256}, ""},
		{"other rate and levels", []string{"--paced-rate=5000.5", "--paced-levels= 16, 64 ,"}, 5000.5, []int{16, 64}, ""},
		{"rate 0 disables", []string{"--paced-rate", "0"}, 0, nil, ""},
		{"rate 0 ignores the levels", []string{"--paced-rate=0", "--paced-levels=x"}, 0, nil, ""},
		{"no levels", []string{"--paced-levels="}, 20000, nil, ""},
		{"negative rate", []string{"--paced-rate=-1"}, 0, nil, "--paced-rate"},
		{"not a number", []string{"--paced-rate=fast"}, 0, nil, "paced-rate"},
		{"zero callers", []string{"--paced-levels=64,0"}, 0, nil, "--paced-levels"},
		{"not an integer", []string{"--paced-levels=64,x"}, 0, nil, "--paced-levels"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args) // flag errors print the usage: seen with -v only
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.pacedRate != tt.rate || !slices.Equal(o.pacedLevels, tt.levels) {
				t.Errorf("paced rate %v levels %v, want %v %v", o.pacedRate, o.pacedLevels, tt.rate, tt.levels)
			}
		})
	}
	// The estimate counts one run per paced level, and the skeleton one
	// more per paced level for its cache hits.
	for _, skeleton := range []string{"--skeleton=false", "--skeleton=true"} {
		with, err1 := parseFlags([]string{"--quick", skeleton})
		without, err2 := parseFlags([]string{"--quick", skeleton, "--paced-rate=0"})
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		runs := time.Duration(2)
		if with.skeleton {
			runs = 4
		}
		if d, want := with.estimate()-without.estimate(), runs*(with.duration+with.warmup+500*time.Millisecond); d != want {
			t.Errorf("%s: estimate difference %v, want %v", skeleton, d, want)
		}
	}
}

func TestCacheTargets(t *testing.T) {
	// run is a one-second run with chains chains and the given p99.
	run := func(conc int, offered float64, chains int, p99 time.Duration) loadResult {
		return loadResult{Target: "grpc+cache", Concurrency: conc, Offered: offered, Window: time.Second, Chains: chains, P99: p99}
	}
	closed := []loadResult{run(1, 0, 3000, time.Millisecond), run(64, 0, 25000, 5*time.Millisecond), run(256, 0, 24000, 20*time.Millisecond)}
	good64, good256 := run(64, 20000, 19900, 1500*time.Microsecond), run(256, 20000, 19950, 3*time.Millisecond)
	for _, tt := range []struct {
		name                    string
		closed, paced, skeleton []loadResult
		note                    string
		cache, collapse         string // results
		cacheHas, collHas       string // in the measured text
	}{
		{"pass", closed, []loadResult{good64, good256}, nil, "", "PASS", "PASS",
			"25000 chains/s (closed loop, c=64); open loop, 64 callers: 20000/s offered, 19900/s achieved (99.5%), p99 1.50ms",
			"3.00ms vs 1.00ms = 3.0×; open loop, 256 callers: 20000/s offered, 19950/s achieved (99.8%)"},
		{"p99 too high", closed, []loadResult{run(64, 20000, 20000, 2100*time.Microsecond), run(256, 20000, 20000, 4100*time.Microsecond)}, nil, "",
			"FAIL", "FAIL", "p99 2.10ms", "= 4.1×"},
		{"below 99% of the offered rate", closed, []loadResult{run(64, 20000, 19700, time.Millisecond), run(256, 20000, 15000, 2*time.Millisecond)}, nil, "",
			"FAIL", "FAIL", "19700/s achieved (98.5%)", "15000/s achieved (75.0%)"},
		{"closed-loop throughput too low", []loadResult{run(1, 0, 3000, time.Millisecond), run(64, 0, 19000, 4*time.Millisecond)},
			[]loadResult{good64, good256}, nil, "", "FAIL", "PASS", "19000 chains/s (closed loop, c=64)", ""},
		{"offered too low", closed, []loadResult{run(64, 10000, 10000, time.Millisecond), good256}, nil, "", "FAIL", "PASS",
			"offered below the target's 20,000/s", ""},
		{"no paced runs", closed, nil, nil, "", "not measured", "not measured", "no open-loop cache run with 64 callers", "no open-loop cache run with 256 callers"},
		{"no paced run with 256 callers", closed, []loadResult{good64}, nil, "", "PASS", "not measured", "", "256 callers"},
		{"no closed-loop run at c=1", closed[1:], []loadResult{good64, good256}, nil, "", "PASS", "not measured", "", "no closed-loop cache run at c=1"},
		// The skeleton's hits are shown beside the broker's and change no result.
		{"skeleton shown", closed, []loadResult{run(64, 20000, 20000, 2100*time.Microsecond), run(256, 20000, 20000, 4100*time.Microsecond)},
			[]loadResult{run(1, 0, 5000, 500*time.Microsecond), good64, good256}, "", "FAIL", "FAIL",
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

// sleepTarget answers after a fixed delay; subject "bad" fails.
type sleepTarget struct{ d time.Duration }

func (s sleepTarget) do(ctx context.Context, subject string) error {
	time.Sleep(s.d)
	if subject == "bad" {
		return errors.New("bad subject")
	}
	return ctx.Err()
}

func (sleepTarget) close() {}

// The load loops against an in-process target. The bounds are loose: the
// machine may be busy.
func TestLoadLoops(t *testing.T) {
	probe := func() sample { return sample{at: time.Now()} }
	const serve = 200 * time.Microsecond
	t.Run("paced", func(t *testing.T) {
		const rate = 2000.0
		d := runPaced(context.Background(), sleepTarget{serve}, 4, rate,
			100*time.Millisecond, 300*time.Millisecond, []string{"a", "b"}, probe)
		want := rate * d.after.at.Sub(d.before.at).Seconds()
		if n := float64(len(d.lats)); n < 0.85*want || n > 1.15*want {
			t.Errorf("%d chains in %v, want %.0f ± 15%%", len(d.lats), d.after.at.Sub(d.before.at), want)
		}
		if d.errs != 0 || d.firstErr != "" {
			t.Errorf("errors %d (%s)", d.errs, d.firstErr)
		}
		if p50 := quantile(d.lats, 0.5); p50 < serve {
			t.Errorf("p50 %v < the target's %v", p50, serve)
		}
		// Four callers each sending every 2 ms, served in 0.2 ms: nearly
		// every chain waited for its time, and the waits are measured.
		if len(d.timerLate) < len(d.lats)/2 || !slices.IsSorted(d.timerLate) || d.timerLate[0] < 0 {
			t.Errorf("%d timer wake-ups measured for %d chains", len(d.timerLate), len(d.lats))
		}
	})
	t.Run("paced, errors", func(t *testing.T) {
		d := runPaced(context.Background(), sleepTarget{serve}, 4, 2000,
			50*time.Millisecond, 200*time.Millisecond, []string{"a", "bad"}, probe)
		if d.errs == 0 || len(d.lats) == 0 || !strings.Contains(d.firstErr, "bad subject") {
			t.Errorf("%d chains, %d errors (%q), want both", len(d.lats), d.errs, d.firstErr)
		}
	})
	t.Run("paced, falling behind", func(t *testing.T) {
		// One caller offering twice what it can do: latency counts from the
		// scheduled send, so it grows with the backlog (no coordinated omission).
		const slow = time.Millisecond
		d := runPaced(context.Background(), sleepTarget{slow}, 1, 2000,
			50*time.Millisecond, 200*time.Millisecond, []string{"a"}, probe)
		offered := 2000 * d.after.at.Sub(d.before.at).Seconds()
		if n := float64(len(d.lats)); n == 0 || n > 0.75*offered {
			t.Errorf("%d chains, %.0f offered: kept up with twice its capacity?", len(d.lats), offered)
		}
		if p50 := quantile(d.lats, 0.5); p50 < 10*slow {
			t.Errorf("p50 %v: the time spent late is not counted", p50)
		}
		// Always behind: the caller never waits for a timer.
		if len(d.timerLate) != 0 {
			t.Errorf("%d timer wake-ups measured for a caller that was never early", len(d.timerLate))
		}
	})
	t.Run("closed", func(t *testing.T) {
		const window = 200 * time.Millisecond
		d := runLoad(context.Background(), sleepTarget{serve}, 2, 50*time.Millisecond, window, []string{"a"}, probe)
		if len(d.lats) == 0 || d.errs != 0 || len(d.lats) > int(2*window/serve)+2 {
			t.Errorf("%d chains, %d errors", len(d.lats), d.errs)
		}
		if quantile(d.lats, 0.5) < serve {
			t.Errorf("p50 %v < %v", quantile(d.lats, 0.5), serve)
		}
		if len(d.timerLate) != 0 {
			t.Errorf("closed loop: %d timer wake-ups", len(d.timerLate))
		}
	})
}

// The report goes through fmt via wrappers go vet cannot check.
func TestReportRenders(t *testing.T) {
	o, err := parseFlags([]string{"--quick", "--store=memory"})
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{o: o, floor: floorResult{PerOp: 40 * time.Microsecond}, configYAML: "x: 1\n", cacheYAML: "x: 2\n"}
	b.cache = []loadResult{{Target: "grpc+cache", Concurrency: 1, Window: time.Second, Chains: 3000, P99: time.Millisecond}}
	b.cachePaced = []loadResult{{Target: "grpc+cache", Concurrency: 64, Offered: 20000, Window: time.Second, Chains: 19000, P99: 3 * time.Millisecond,
		BrokerCPU: 50 * time.Microsecond}}
	b.skeletonCache = []loadResult{{Target: "skeleton+cache", Concurrency: 64, Offered: 20000, Window: time.Second, Chains: 20000,
		P99: 2 * time.Millisecond, BrokerCPU: 20 * time.Microsecond, TimerLateP99: 900 * time.Microsecond, TimerLateShare: 0.8}}
	rep := b.report()
	text := rep.md + rep.summary()
	if i := strings.Index(text, "%!"); i >= 0 {
		t.Errorf("formatting error: %s", text[max(i-80, 0):min(i+40, len(text))])
	}
	for _, want := range []string{"Little's law", "| 64 | open loop, 20000/s offered, 95.0% achieved | 19000 |", "19000/s achieved (95.0%), p99 3.00ms",
		"| 64 | open loop, 20000/s offered, 100.0% achieved | skeleton | 20000 | 0 | 2.00ms | 900µs (80%) | 20.0µs |",
		"| broker | 19000 | 0 | 3.00ms | — | 50.0µs | 0 | 0 | 2.50× |",
		"the skeleton's hits, same load: p99 2.00ms (100.0% achieved)"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestBucketsAndQuantileBound(t *testing.T) {
	const prefix = `h_bucket{method="/m",le="`
	text := func(counts ...int) string {
		var s strings.Builder
		s.WriteString("# HELP h x\n" + `h_bucket{method="/other",le="0.001"} 99` + "\n")
		for i, le := range []string{"0.001", "0.002", "0.004", "+Inf"} {
			fmt.Fprintf(&s, "%s%s\"} %d\n", prefix, le, counts[i])
		}
		return s.String()
	}
	before, err := parseBuckets(text(10, 10, 10, 10), prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		counts []int
		want   float64
		ok     bool
	}{
		{"all under 1ms", []int{110, 110, 110, 110}, 0.001, true},
		{"p99 in the 2ms bucket", []int{60, 109, 110, 110}, 0.002, true}, // 99 of 100 under 2ms
		{"p99 just past 2ms", []int{60, 108, 110, 110}, 0.004, true},
		{"past the last bound", []int{10, 10, 10, 110}, math.Inf(1), true},
		{"nothing observed", []int{10, 10, 10, 10}, 0, false},
	} {
		after, err := parseBuckets(text(tt.counts...), prefix)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := quantileBound(before, after, 0.99)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if _, err := parseBuckets("nothing here\n", prefix); err == nil {
		t.Error("no bucket: no error")
	}
	if _, err := parseBuckets(prefix+`x"} 1`+"\n", prefix); err == nil {
		t.Error("malformed bound: no error")
	}
}
