// Package measure is chainbench's measurement: CPU time, peak RSS and the
// machine's CPU from /proc, what else ran, the broker's Prometheus metrics
// (allocations, the Chain histogram), the machine's description, and the
// floor (one RS256 verification of a grant, floor.go).
package measure

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// ProcCPU returns the CPU time (user + system, every thread) a process has
// used, from /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * clockTick, nil
}

// PeakRSS returns a process's peak resident set size (VmHWM), in bytes.
func PeakRSS(pid int) (uint64, error) {
	return statusField(pid, "VmHWM:")
}

func statusField(pid int, name string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, name) {
			fields := strings.Fields(line[len(name):])
			if len(fields) < 1 {
				break
			}
			kb, err := strconv.ParseUint(fields[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

// ResetPeakRSS resets VmHWM to the current RSS (clear_refs 5), so that the
// next PeakRSS covers one measurement only. It reports whether that worked.
func ResetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// CPUTimes are the machine's CPU times from /proc/stat.
type CPUTimes struct {
	Busy    time.Duration // user, nice, system, irq, softirq (not idle, iowait, steal)
	Softirq time.Duration // irq + softirq: on loopback, mostly our own network traffic
	Steal   time.Duration // taken by the hypervisor for other guests
}

// SystemCPU reads the machine's CPU times.
func SystemCPU() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return CPUTimes{}, errors.New("malformed /proc/stat")
	}
	var v [8]int64 // user nice system idle iowait irq softirq steal
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return CPUTimes{}, err
		}
	}
	return CPUTimes{
		Busy:    time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * clockTick,
		Softirq: time.Duration(v[5]+v[6]) * clockTick,
		Steal:   time.Duration(v[7]) * clockTick,
	}, nil
}

// ProcEntry is one process's name and CPU time.
type ProcEntry struct {
	comm string
	cpu  time.Duration
}

// ScanProcs reads the CPU time of every process on the machine, to name
// what else ran during a measurement.
func ScanProcs() map[int]ProcEntry {
	out := map[int]ProcEntry{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if i < 0 || j < i {
			continue
		}
		cpu, err := ProcCPU(pid)
		if err != nil {
			continue
		}
		out[pid] = ProcEntry{comm: string(b[i+1 : j]), cpu: cpu}
	}
	return out
}

// ForeignTop names the processes, other than ours, that used the most CPU
// between two scans, as "name 0.42, ..." (cores). Processes that ran only
// between the scans (a compiler started by a test run) are not seen.
func ForeignTop(before, after map[int]ProcEntry, ours map[int]bool, window time.Duration) string {
	if window <= 0 {
		return ""
	}
	byName := map[string]time.Duration{}
	for pid, a := range after {
		if ours[pid] {
			continue
		}
		if b, ok := before[pid]; ok && b.comm == a.comm {
			byName[a.comm] += a.cpu - b.cpu
		} else if !ok {
			byName[a.comm] += a.cpu // started during the window (may include a little from before it)
		}
	}
	type kv struct {
		name string
		d    time.Duration
	}
	var list []kv
	for n, d := range byName {
		if d > 0 {
			list = append(list, kv{n, d})
		}
	}
	slices.SortFunc(list, func(x, y kv) int { return int(y.d - x.d) })
	var parts []string
	for i, e := range list {
		cores := e.d.Seconds() / window.Seconds()
		if i >= 3 || cores < 0.02 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", e.name, cores))
	}
	return strings.Join(parts, ", ")
}

// NewScrapeClient is the client chainbench reads the broker's /metrics
// with: it asks for the exposition uncompressed. A gzip answer costs the
// broker a fresh compressor of about 1 MiB per scrape (promhttp pools them,
// but a pool does not outlive the GCs between two scrapes), and chainbench
// scrapes at both edges of every measured window, far more often than a
// Prometheus server does: the freed compressor's pages went back to the OS
// (the Go scavenger's madvise) and were faulted in again during the window,
// 10-20 µs per chain charged to the chains (seen with GODEBUG=scavtrace=1
// and perf). Prometheus' own scrapes, every 15 s or more, still get gzip.
func NewScrapeClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}
}

// ScrapeMetric fetches a Prometheus text exposition and returns the value
// of an unlabelled sample.
func ScrapeMetric(client *http.Client, url, name string) (float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	prefix := name + " "
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s: no sample %s", url, name)
}

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int
	CPUModel  string
	GoVersion string
	Kernel    string
	MemTotal  string
	LoadAvg   string // at start
}

// DescribeMachine reads the machine's CPUs, kernel, memory and load.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), CPUModel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if kb, err := meminfoTotal(); err == nil {
		m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	return m
}

func meminfoTotal() (uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseUint(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no MemTotal")
}

// SelfPID is the benchmark's own process id.
func SelfPID() int { return os.Getpid() }

// SourceRevision names the tree that was measured: the commit, and whether
// tracked files other than docs/ differ from it.
func SourceRevision() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	rev := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += " with uncommitted changes"
	}
	return rev
}

// ChainHistogram is the broker's histogram of Chain call durations, as its
// gRPC interceptor measures them (REST calls included: they run the same
// interceptors): time inside the broker, from the call's arrival at the
// handler to its answer, without the client's side, the network or the
// broker's transport.
const ChainHistogram = `chainbroker_grpc_request_duration_seconds_bucket{method="/chainbroker.v1.ChainService/Chain",le="`

// ScrapeBuckets fetches a Prometheus text exposition and returns the
// cumulative counts of the histogram buckets whose lines start with prefix
// (up to the le value), by upper bound; +Inf is math.Inf(1).
func ScrapeBuckets(client *http.Client, url, prefix string) (map[float64]float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	return ParseBuckets(string(body), prefix)
}

func ParseBuckets(text, prefix string) (map[float64]float64, error) {
	out := map[float64]float64{}
	for line := range strings.SplitSeq(text, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("malformed bucket line %q", line)
		}
		bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err != nil {
			return nil, fmt.Errorf("bucket bound %q: %w", le, err)
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err != nil {
			return nil, fmt.Errorf("bucket count %q: %w", count, err)
		}
		out[bound] = n
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no bucket %s", prefix)
	}
	return out, nil
}

// QuantileBound is the smallest bucket bound under which at least q of the
// observations between two scrapes of one histogram fall (an upper bound
// of that quantile), in seconds; +Inf when only the last bucket holds it,
// and ok false when nothing was observed.
func QuantileBound(before, after map[float64]float64, q float64) (float64, bool) {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return 0, false
	}
	for _, b := range bounds {
		if after[b]-before[b] >= q*total {
			return b, true
		}
	}
	return math.Inf(1), true
}
