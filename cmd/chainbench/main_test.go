package main

import (
	"os"
	"runtime"
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
