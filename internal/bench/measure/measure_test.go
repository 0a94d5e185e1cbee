package measure

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestProcReadings(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	// Burn a little CPU so the reading is not zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	if d, err := ProcCPU(os.Getpid()); err != nil || d <= 0 {
		t.Errorf("ProcCPU = %v, %v", d, err)
	}
	if n, err := PeakRSS(os.Getpid()); err != nil || n == 0 {
		t.Errorf("PeakRSS = %v, %v", n, err)
	}
	if c, err := SystemCPU(); err != nil || c.Busy <= 0 {
		t.Errorf("SystemCPU = %+v, %v", c, err)
	}
	if procs := ScanProcs(); procs[os.Getpid()].comm == "" {
		t.Error("ScanProcs does not see this process")
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
	before, err := ParseBuckets(text(10, 10, 10, 10), prefix)
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
		after, err := ParseBuckets(text(tt.counts...), prefix)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := QuantileBound(before, after, 0.99)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if _, err := ParseBuckets("nothing here\n", prefix); err == nil {
		t.Error("no bucket: no error")
	}
	if _, err := ParseBuckets(prefix+`x"} 1`+"\n", prefix); err == nil {
		t.Error("malformed bound: no error")
	}
}

// The scrape client asks for the exposition uncompressed: a gzip answer
// costs the broker a fresh compressor per scrape (NewScrapeClient).
func TestScrapeClientUncompressed(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Header.Get("Accept-Encoding"))
		fmt.Fprintln(w, "go_memstats_mallocs_total 42")
	}))
	defer srv.Close()
	v, err := ScrapeMetric(NewScrapeClient(), srv.URL, "go_memstats_mallocs_total")
	if err != nil || v != 42 {
		t.Fatalf("ScrapeMetric = %v, %v; want 42", v, err)
	}
	// The default client would have asked for gzip.
	if _, err := ScrapeMetric(&http.Client{}, srv.URL, "go_memstats_mallocs_total"); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 || strings.Contains(asked[0], "gzip") || !strings.Contains(asked[1], "gzip") {
		t.Errorf("Accept-Encoding asked: %q; want no gzip from NewScrapeClient (and gzip from a default client)", asked)
	}
}
