package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/measure"
	"github.com/chainbroker/chainbroker/internal/bench/report"
	"github.com/chainbroker/chainbroker/sandbox"
)

// categories group the broker's CPU by what it is for. They overlap (a
// frame of hop 1 is also one of the HTTP client): each is the share of CPU
// samples whose stack holds a matching function.
var categories = []report.Category{
	{Name: "chain logic: broker.(*Broker).Chain, everything below it", Regexp: `broker\.\(\*Broker\)\.Chain$`},
	{Name: "hop 1: token exchange call (request, wait, response parsing)", Regexp: `broker\.\(\*chainRun\)\.exchange$`},
	{Name: "hop 2: jwt-bearer call", Regexp: `broker\.\(\*chainRun\)\.jwtBearer$`},
	{Name: "assertion validation (parse + RS256 verify + claims)", Regexp: `broker\.\(\*chainRun\)\.validate$`},
	{Name: "subject token verification (verify_subject_token)", Regexp: `broker\.\(\*chainRun\)\.verifySubject$`},
	{Name: "replay mark (store)", Regexp: `broker\.\(\*chainRun\)\.markReplay$`},
	{Name: "audit append and log line (finish)", Regexp: `broker\.\(\*chainRun\)\.finish$`},
	{Name: "RSA verification itself (crypto/rsa)", Regexp: `^crypto/rsa\.`},
	{Name: "token package (jwx) Verify, all of it", Regexp: `token\.\(\*Verifier\)\.Verify$`},
	{Name: "outbound HTTP client, incl. its connection goroutines", Regexp: `^net/http\.\(\*(Transport|persistConn|Client)\)`},
	{Name: "go-redis client, incl. its pool", Regexp: `github\.com/redis/go-redis`},
	{Name: "gRPC server and transport, outside the chain", Regexp: `^google\.golang\.org/grpc\.|google\.golang\.org/grpc/internal/transport`,
		Ignore: `broker\.\(\*Broker\)\.Chain$`},
	{Name: "protobuf marshalling", Regexp: `google\.golang\.org/protobuf/internal/impl`},
	{Name: "encoding/json", Regexp: `^encoding/json\.`},
	{Name: "Prometheus metrics", Regexp: `prometheus`},
	{Name: "logging (log/slog)", Regexp: `^log/slog\.`},
	{Name: "OpenTelemetry (no-op tracer)", Regexp: `go\.opentelemetry\.io`},
	{Name: "garbage collector (background marking, assists, sweeping)", Regexp: `^runtime\.(gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|gcDrain|markroot)`},
	{Name: "memory allocation (runtime.mallocgc)", Regexp: `^runtime\.mallocgc`},
	{Name: "system calls (network reads and writes, epoll)", Regexp: `^(syscall\.|internal/runtime/syscall\.|internal/poll\.)`},
	{Name: "scheduler (findRunnable, park, futex)", Regexp: `^runtime\.(findRunnable|schedule|park_m|futex|stopm|notesleep)`},
}

// runProfile starts the broker in-process in a child, loads it with gRPC
// chains at the profile concurrency, profiles the measured window and reads
// the profiles with `go tool pprof`.
func (b *bench) runProfile(ctx context.Context, cache bool) error {
	o := b.o
	name, label := "profiled", "no cache"
	if cache {
		name, label = "profiled-cache", "cache on, warm"
	}
	cpuPath := filepath.Join(b.dir, name+"-cpu.pprof")
	allocPath := filepath.Join(b.dir, name+"-allocs.pprof")
	logf("profiling the broker, %s (in-process child, gRPC, c=%d, %s)...", label, o.profileConc, o.profileDuration)
	p, addrs, _, err := b.startBroker(ctx, "broker-"+name, true, cache, "--cpuprofile", cpuPath, "--allocprofile", allocPath)
	if err != nil {
		return err
	}
	defer func() {
		p.Stop(10 * time.Second)
		b.procs.Remove(p)
	}()
	lines := make(chan string, 8)
	go func(out *bufio.Scanner) {
		for out.Scan() {
			lines <- out.Text()
		}
		close(lines)
	}(b.childOut)
	await := func(want string) error {
		select {
		case l, ok := <-lines:
			if !ok || l != want {
				return fmt.Errorf("broker child: want %q, got %q\n%s", want, l, p.LogTail())
			}
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("broker child: no %q within 30s", want)
		}
	}
	g, err := load.NewGRPC(addrs.grpc, b.apiKey, sandbox.DomainBName, b.o.grpcConns)
	if err != nil {
		return err
	}
	defer g.Close()
	// Up to three profiled windows; the least disturbed by other
	// processes is kept (each window's files are renamed after it).
	var res *report.Profile
	bestAttempt := 0
	for attempt := 1; attempt <= 3; attempt++ {
		var probeErr error
		calls := 0
		probe := func() load.Sample {
			calls++
			if calls == 1 {
				_ = p.Signal(syscall.SIGUSR1)
				probeErr = errors.Join(probeErr, await("profiling"))
			}
			var s load.Sample
			pids := load.PIDs{Broker: p.PID(), Domains: b.domains.PID()}
			if b.redis != nil {
				pids.Redis = b.redis.PID()
			}
			if calls == 1 {
				s.Procs = measure.ScanProcs()
				s.ReadCPU(pids)
			} else {
				s.ReadCPU(pids)
				s.Procs = measure.ScanProcs()
			}
			if calls == 2 {
				_ = p.Signal(syscall.SIGUSR2)
				probeErr = errors.Join(probeErr, await("profiled"))
			}
			return s
		}
		b.waitIdle(ctx)
		// Per attempt: the waits can outlast the subject tokens.
		if err := b.refreshSubjects(ctx, o.warmup+o.profileDuration); err != nil {
			return err
		}
		d := load.RunClosed(ctx, g, o.profileConc, o.warmup, o.profileDuration, b.subjects, probe)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if probeErr != nil {
			return probeErr
		}
		r := &report.Profile{Label: label, Cache: cache,
			Load: load.Summarize("grpc (profiled)", o.profileConc, d, true, b.ourPIDs(p))}
		r.Load.Attempts = attempt
		logf("  %8.0f chains/s  p50 %s  p99 %s  broker CPU %s/chain (with the profiler on)%s", r.Load.Throughput(),
			report.FmtDur(r.Load.P50), report.FmtDur(r.Load.P99), report.FmtDur(r.Load.BrokerCPU), otherLine(r.Load))
		for _, f := range []string{cpuPath, allocPath, allocPath + ".base"} {
			if err := os.Rename(f, fmt.Sprintf("%s.%d", f, attempt)); err != nil {
				return err
			}
		}
		disturbance := func(r *report.Profile) float64 { return r.Load.OtherCPU - r.Load.SoftirqCPU }
		if res == nil || res.Load.Chains == 0 || r.Load.Chains > 0 && disturbance(r) < disturbance(res) {
			res, bestAttempt = r, attempt
		}
		if o.idleWait <= 0 || disturbance(res) <= noisyLimit {
			break
		}
		if attempt < 3 {
			logf("  disturbed (other CPU %.2f cores: %s); profiling again", r.Load.OtherCPU, r.Load.Foreign)
		}
	}
	for _, f := range []string{cpuPath, allocPath, allocPath + ".base"} {
		if err := os.Rename(fmt.Sprintf("%s.%d", f, bestAttempt), f); err != nil {
			return err
		}
	}

	out, err := b.pprof(ctx, "-top", "-nodecount=15", cpuPath)
	if err != nil {
		return err
	}
	res.Header, res.Top = parseTop(out)
	if out, err = b.pprof(ctx, "-top", "-cum", "-nodecount=20", "-show=github.com/chainbroker", cpuPath); err == nil {
		_, res.TopCum = parseTop(out)
	}
	for _, c := range categories {
		args := []string{"-top", "-nodecount=1000000", "-nodefraction=0", "-edgefraction=0", "-focus=" + c.Regexp}
		if c.Ignore != "" {
			args = append(args, "-ignore="+c.Ignore)
		}
		out, err := b.pprof(ctx, append(args, cpuPath)...)
		if err == nil {
			c.Pct, c.OK = focusedShare(out)
		} else if strings.Contains(err.Error(), "matched no samples") {
			c.OK = true
		}
		res.Categories = append(res.Categories, c)
	}
	if out, err := b.pprof(ctx, "-top", "-nodecount=12", "-sample_index=alloc_objects", "-base", allocPath+".base", allocPath); err == nil {
		var hdr string
		hdr, res.AllocTop = parseTop(out)
		res.AllocTotal = hdr
	}
	b.profs = append(b.profs, res)
	return nil
}

func (b *bench) pprof(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.o.goCmd, append([]string{"tool", "pprof"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go tool pprof %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

var (
	totalRE = regexp.MustCompile(`Showing nodes accounting for [^,]+, ([0-9.]+)% of`)
	durRE   = regexp.MustCompile(`^(Duration|Total):`)
)

// parseTop splits `pprof -top` output into its header line (Duration and
// total samples) and rows.
func parseTop(out string) (string, []report.PprofRow) {
	var header string
	var rows []report.PprofRow
	inRows := false
	for line := range strings.SplitSeq(out, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case durRE.MatchString(t):
			header = t
		case strings.HasPrefix(t, "flat") && strings.Contains(t, "cum%"):
			inRows = true
		case inRows && t != "":
			f := strings.Fields(t)
			if len(f) < 6 {
				continue
			}
			rows = append(rows, report.PprofRow{Flat: f[0], FlatPct: f[1], SumPct: f[2], Cum: f[3], CumPct: f[4],
				Name: strings.Join(f[5:], " ")})
		}
	}
	return header, rows
}

// focusedShare reads the share of samples kept by -focus from pprof's
// "Showing nodes accounting for X, P% of T total": with every node shown
// (-nodecount huge, -nodefraction=0) the shown nodes' flat times add up to
// the focused samples.
func focusedShare(out string) (float64, bool) {
	m := totalRE.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	var v float64
	_, err := fmt.Sscanf(m[1], "%g", &v)
	return v, err == nil
}

// runCache measures chains with the token cache on and warm: closed loops
// at --levels, then open loops (paced) at --paced-levels callers offering
// --paced-rate chains/s, against the same broker. The broker stays up, its
// cache warm, for the skeleton's pairs (runSkeletonCache): side loads it
// and stop ends it.
func (b *bench) runCache(ctx context.Context) (side pairSide, stop func(), err error) {
	logf("measuring with the token cache on and warm (gRPC)...")
	p, addrs, cfg, err := b.startBroker(ctx, "broker-cache", false, true)
	if err != nil {
		return side, nil, err
	}
	b.cacheYAML = cfg
	stopProc := func() {
		p.Stop(10 * time.Second)
		b.procs.Remove(p)
	}
	g, err := load.NewGRPC(addrs.grpc, b.apiKey, sandbox.DomainBName, b.o.grpcConns)
	if err != nil {
		stopProc()
		return side, nil, err
	}
	stop = func() { g.Close(); stopProc() }
	defer func() {
		if err != nil {
			stop()
		}
	}()
	for _, c := range b.o.levels {
		res, err := b.measureQuiet(ctx, "grpc+cache", g, c, 0, p, addrs)
		if err != nil {
			return side, nil, err
		}
		b.cache = append(b.cache, res)
		logf("  %-10s c=%-3d %8.0f chains/s  p50 %8s  p99 %8s  err %d%s", "grpc+cache", c, res.Throughput(),
			report.FmtDur(res.P50), report.FmtDur(res.P99), res.Errors, brokerLine(res))
		logFirstError(res)
	}
	for _, c := range b.o.pacedLevels {
		res, err := b.measureQuiet(ctx, "grpc+cache", g, c, b.o.pacedRate, p, addrs)
		if err != nil {
			return side, nil, err
		}
		b.cachePaced = append(b.cachePaced, res)
		logf("  %-10s paced, %d callers: %.0f/s offered, %.0f chains/s achieved (%s)  p50 %8s  p99 %8s  err %d%s",
			"grpc+cache", c, res.Offered, res.Throughput(), report.Achieved(res),
			report.FmtDur(res.P50), report.FmtDur(res.P99), res.Errors, brokerLine(res))
		logFirstError(res)
	}
	return pairSide{"grpc+cache", g, p, addrs}, stop, nil
}
