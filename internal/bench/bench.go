// Package bench is chainbench, chainbroker's end-to-end benchmark (see
// cmd/chainbench, its entry point, for what it measures and how to run it):
// the orchestration of a run, the flags, the broker's configuration, the
// child modes and the profiling. Its parts are subpackages: proc (process
// control), measure (readings from /proc and /metrics, the floor), load
// (load generation), skeleton (the skeleton broker) and report (rendering).
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/measure"
	"github.com/chainbroker/chainbroker/internal/bench/proc"
	"github.com/chainbroker/chainbroker/internal/bench/report"
	"github.com/chainbroker/chainbroker/internal/bench/skeleton"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Main runs chainbench with the command line's arguments (os.Args[1:]):
// the benchmark, or one of the child modes the benchmark starts its own
// binary in. A flag.ErrHelp error means the usage was printed.
func Main(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case modeDomains:
			return runDomains(args[1:])
		case modeBroker:
			return runBrokerChild(args[1:])
		case skeleton.Mode:
			return skeleton.Run(args[1:])
		default:
			return runBench(args)
		}
	}
	return runBench(nil)
}

// options are the benchmark's flags.
type options struct {
	levels             []int
	duration, warmup   time.Duration
	quick              bool
	store              string // redis or memory
	caller             string // anonymous or apikey
	verifySubjectToken bool
	transports         []string
	baseline           bool
	profile            bool
	profileConc        int
	profileDuration    time.Duration
	subjects           int
	cache              bool
	pacedRate          float64 // chains/s offered by the open-loop cache runs
	pacedLevels        []int   // callers of the open-loop cache runs; none when pacedRate is 0
	grpcConns          int     // gRPC connections of the load generator
	skeleton           bool    // also measure the skeleton broker (the design's floor)
	skeletonAudit      string  // the skeleton's audit mode (skeleton.AuditIndexed or AuditFixed)
	idjag              bool    // also measure ID-JAG chains (domain A -> domain C) over gRPC
	cloud              bool    // also measure chains into the sandbox's cloud imitations (aws, gcp, azure) over gRPC
	trace              bool    // also trace chains at c=1, step by step (trace.go)
	write              bool
	out, svg           string
	keep               bool
	goCmd              string
	floorRounds        int
	pairs              int           // short alternating pairs per target ratio (1: none, the full runs decide)
	pairDuration       time.Duration // measured duration of each side of a pair
	pairsTogether      bool          // the skeleton's pairs run both sides at the same time
	idleWait           time.Duration
	brokerEnv          []string
	args               []string // as given, for the reproduction command
}

func parseFlags(args []string) (*options, error) {
	o := &options{args: args}
	fs := flag.NewFlagSet("chainbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: go run ./cmd/chainbench [flags]\n\n"+
			"End-to-end benchmark of chainbroker against the sandbox domains, with a direct baseline.\n"+
			"--levels are closed loops (each worker sends its next chain when the previous one answers: they measure throughput);\n"+
			"--paced-levels are open loops at --paced-rate, cache hits only (latency from the scheduled send time: they measure\n"+
			"latency at a number of callers).\n\n")
		fs.PrintDefaults()
	}
	levels := fs.String("levels", "1,16,64,256", "concurrency levels of the closed-loop runs (comma-separated)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measured run")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 2s per level, 1s warm-up; writes no docs unless --write is given")
	fs.StringVar(&o.store, "store", "redis", "broker store: redis (a throwaway redis-server) or memory")
	fs.StringVar(&o.caller, "caller", "anonymous", "how the load generator authenticates: anonymous (loopback) or apikey")
	fs.BoolVar(&o.verifySubjectToken, "verify-subject-token", false, "set verify_subject_token on domain A (one more RS256 verification per chain)")
	transports := fs.String("transports", "grpc,rest", "broker transports to load (grpc, rest)")
	fs.BoolVar(&o.baseline, "baseline", true, "also run the direct baseline")
	fs.BoolVar(&o.profile, "profile", true, "profile the broker (in-process child) under gRPC load")
	fs.IntVar(&o.profileConc, "profile-concurrency", 64, "concurrency of the profiled run")
	fs.DurationVar(&o.profileDuration, "profile-duration", 0, "duration of the profiled run (default: --duration)")
	fs.IntVar(&o.subjects, "subjects", 64, "number of subject tokens in the pool (alice and bob alternately)")
	fs.BoolVar(&o.cache, "cache", true, "also measure over gRPC with the token cache on for domain B, warm (every subject token chained once before the window)")
	fs.BoolVar(&o.skeleton, "skeleton", true, "also measure the skeleton broker at c=1 and c=64: a gRPC server doing only the two hops, "+
		"one RS256 verification and two Redis writes per chain (the design's floor; needs --store redis), and, with --cache, "+
		"its cache hits (an in-memory lookup and one audit write) at c=1 and in the open-loop runs")
	fs.StringVar(&o.skeletonAudit, "skeleton-audit", skeleton.AuditIndexed, "the skeleton's audit event and replay mark: "+
		skeleton.AuditIndexed+" (the event the broker records, with its indexes, and the replay mark, through the store package: "+
		"the design's floor since the audit trail has indexes) or "+skeleton.AuditFixed+" (a fixed 16-byte XADD record and a plain SET NX: "+
		"the floor as first defined)")
	fs.BoolVar(&o.trace, "trace", true, "also trace chains one at a time over each transport (needs 1 in --levels): "+
		"the broker exports its spans to this program, which times each step of a chain")
	fs.IntVar(&o.grpcConns, "grpc-conns", 1, "gRPC connections the load generator spreads its calls over")
	fs.BoolVar(&o.idjag, "idjag", true, "also measure ID-JAG chains over gRPC (alice's and bob's ID tokens, domain A -> domain C, profile id_jag) beside the plain ones")
	fs.BoolVar(&o.cloud, "cloud", true, "also measure chains over gRPC into the sandbox's cloud imitations beside the plain ones: "+
		"targets aws (STS AssumeRoleWithWebIdentity), gcp (Google STS, then IAM Credentials) and azure (the Entra token endpoint), "+
		"served by the domains' process")
	fs.Float64Var(&o.pacedRate, "paced-rate", 20000, "chains/s offered by the open-loop (paced) cache runs, all callers together (0: no paced runs)")
	pacedLevels := fs.String("paced-levels", "64,256", "callers of the open-loop (paced) cache runs (comma-separated), after the closed-loop cache runs")
	fs.BoolVar(&o.write, "write", true, "write --out and --svg")
	fs.StringVar(&o.out, "out", "docs/performance.md", "Markdown report (the part between the chainbench markers is replaced)")
	fs.StringVar(&o.svg, "svg", "docs/performance/latency.svg", "latency chart")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, config, profiles)")
	fs.StringVar(&o.goCmd, "go", "go", "go command used to build chainbroker and read profiles")
	fs.IntVar(&o.floorRounds, "floor-rounds", 3, "rounds of the RS256 verification benchmark (best kept)")
	fs.IntVar(&o.pairs, "pairs", 3, "for each closed-loop ratio a target checks (broker vs skeleton at c=1 and c=64, "+
		"cache hits at c=1, REST vs gRPC at c=1 and c=64, each transport and the skeleton vs the direct client at c=1), run this many short "+
		"pairs back to back (broker and skeleton, REST and gRPC, broker or skeleton and the direct client; which goes first alternates) "+
		"and judge the target on the median of the per-pair ratios, CPU per chain and p50 (against the direct client, of the p50 "+
		"differences); the full-length runs and tables stay as they are. "+
		"Adds about pairs × (2 × (--pair-duration + 0.8s warm-up and settling) + 1s idle check) per ratio, half of the runs for the "+
		"broker-vs-skeleton ratios with --pairs-together: with the defaults about 4 minutes for the 8 ratios (1: no pairs, the "+
		"full-length runs decide)")
	fs.DurationVar(&o.pairDuration, "pair-duration", 5*time.Second, "measured duration of each side of a --pairs pair (--quick: 1s)")
	fs.BoolVar(&o.pairsTogether, "pairs-together", true, "run each pair of the broker and the skeleton (no cache, and cache hits) with both sides at the same time, "+
		"each under its own load of the pair's concurrency, in the same window, instead of back to back: a drift of the host then "+
		"weighs on both sides in the same seconds, and the pairs agree within a few per cent where back-to-back ones spread by "+
		"25% on a shared VM (the other pairs share a process or a client, and stay back to back; =false: back to back too)")
	fs.Func("broker-env", "extra environment variable for the broker process, KEY=VALUE (repeatable; e.g. GOGC=400)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", v)
		}
		o.brokerEnv = append(o.brokerEnv, v)
		return nil
	})
	fs.DurationVar(&o.idleWait, "idle-wait", 90*time.Second, "before each run, wait up to this long for other processes to leave the CPU idle; a run disturbed by them is retried once (0: never wait)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = time.Second
		}
		if !set["write"] {
			o.write = false
		}
		if !set["floor-rounds"] {
			o.floorRounds = 1
		}
		if !set["pair-duration"] {
			o.pairDuration = time.Second
		}
	}
	if o.profileDuration <= 0 {
		o.profileDuration = o.duration
	}
	var err error
	if o.levels, err = parseLevels("levels", *levels); err != nil {
		return nil, err
	}
	if len(o.levels) == 0 {
		return nil, errors.New("--levels: no level")
	}
	switch {
	case o.pairs < 1:
		return nil, fmt.Errorf("--pairs: %d is not at least 1", o.pairs)
	case o.pairs > 1 && o.pairDuration <= 0:
		return nil, fmt.Errorf("--pair-duration: %s is not positive", o.pairDuration)
	case o.grpcConns < 1 || o.grpcConns > 1024:
		return nil, fmt.Errorf("--grpc-conns: %d is not between 1 and 1024", o.grpcConns)
	case o.pacedRate < 0 || math.IsNaN(o.pacedRate) || math.IsInf(o.pacedRate, 0):
		return nil, fmt.Errorf("--paced-rate: %v is not a rate (chains/s, 0 for none)", o.pacedRate)
	case o.pacedRate > 0:
		if o.pacedLevels, err = parseLevels("paced-levels", *pacedLevels); err != nil {
			return nil, err
		}
	}
	for t := range strings.SplitSeq(*transports, ",") {
		switch t = strings.TrimSpace(t); t {
		case "grpc", "rest":
			o.transports = append(o.transports, t)
		case "":
		default:
			return nil, fmt.Errorf("--transports: unknown transport %q", t)
		}
	}
	switch o.store {
	case "redis", "memory":
	default:
		return nil, fmt.Errorf("--store: %q is neither redis nor memory", o.store)
	}
	switch o.caller {
	case "anonymous", "apikey":
	default:
		return nil, fmt.Errorf("--caller: %q is neither anonymous nor apikey", o.caller)
	}
	if o.subjects < 1 {
		return nil, errors.New("--subjects must be at least 1")
	}
	if o.skeletonAudit != skeleton.AuditIndexed && o.skeletonAudit != skeleton.AuditFixed {
		return nil, fmt.Errorf("--skeleton-audit: %q is neither %s nor %s", o.skeletonAudit, skeleton.AuditIndexed, skeleton.AuditFixed)
	}
	return o, nil
}

// parseLevels reads a comma-separated list of positive integers; empty
// items are skipped.
func parseLevels(flagName, list string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--%s: %q is not a positive integer", flagName, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// command is how to reproduce this run.
func (o *options) command() string {
	parts := []string{"go run ./cmd/chainbench"}
	for _, a := range o.args {
		if a == "--keep" || a == "-keep" || a == "--keep=true" || a == "-keep=true" {
			continue // temporary files only
		}
		if strings.ContainsAny(a, " \t\"'$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func (o *options) estimate() time.Duration {
	runs := len(o.transports)
	if o.idjag {
		runs++
	}
	if o.cloud {
		runs += len(cloudTargets())
	}
	if o.baseline {
		runs++
	}
	if o.cache {
		runs++
	}
	n := len(o.levels) * runs
	if o.cache {
		n += len(o.pacedLevels) // the open-loop cache runs
	}
	if o.skeleton && o.store == "redis" {
		n += len(o.skeletonLevels())
		if o.cache {
			n += len(o.skeletonCacheLoads())
		}
	}
	d := time.Duration(n) * (o.duration + o.warmup + 500*time.Millisecond)
	if o.profile {
		d += o.profileDuration + o.warmup + 5*time.Second
		if o.cache {
			d += o.profileDuration + o.warmup + 5*time.Second
		}
	}
	if o.trace && slices.Contains(o.levels, 1) {
		d += 20 * time.Second
	}
	d += o.pairsEstimate()
	return d + time.Duration(o.floorRounds)*2*time.Second + 20*time.Second
}

// restPairLevels are the levels of --levels at which REST is measured
// against gRPC in pairs: those of the REST targets, c=1 and c=64.
func (o *options) restPairLevels() []int {
	var levels []int
	for _, c := range []int{1, 64} {
		if slices.Contains(o.levels, c) {
			levels = append(levels, c)
		}
	}
	return levels
}

// pairRatios is the number of closed-loop ratios the run measures in
// short pairs (--pairs > 1): REST vs gRPC at c=1 and c=64, each transport and the
// skeleton against the direct client at c=1 (the latency added), broker vs
// skeleton at the skeleton's levels, and the cache hits at c=1.
func (o *options) pairRatios() int {
	if o.pairs < 2 {
		return 0
	}
	grpc, c1 := slices.Contains(o.transports, "grpc"), slices.Contains(o.levels, 1)
	n := 0
	if grpc && slices.Contains(o.transports, "rest") {
		n += len(o.restPairLevels())
	}
	if o.baseline && c1 {
		n += len(o.transports) // each transport against the direct client: the latency added
		if o.skeleton && o.store == "redis" {
			n++ // the skeleton against the direct client: the design's floor of it
		}
	}
	return n + o.skeletonRatios()
}

// skeletonRatios is how many of pairRatios compare the broker with the
// skeleton (gRPC at the skeleton's levels, and the cache hits at c=1): the
// pairs --pairs-together runs with both sides at once.
func (o *options) skeletonRatios() int {
	if o.pairs < 2 || !o.skeleton || o.store != "redis" {
		return 0
	}
	n := 0
	if slices.Contains(o.transports, "grpc") {
		n += len(o.skeletonLevels())
	}
	if o.cache && slices.Contains(o.levels, 1) {
		n++
	}
	return n
}

// pairWarmup is the warm-up before each side of a pair: both sides have
// just been measured at length, so their processes and connections are warm.
func (o *options) pairWarmup() time.Duration { return min(o.warmup, 500*time.Millisecond) }

// pairsEstimate is the time the pairs add to a run: each pair is two short
// runs, one after the other or, with --pairs-together for the skeleton's,
// at the same time.
func (o *options) pairsEstimate() time.Duration {
	side := o.pairDuration + o.pairWarmup() + 300*time.Millisecond
	idle := time.Duration(0)
	if o.idleWait > 0 {
		idle = time.Second // waitIdle before each pair
	}
	together := 0
	if o.pairsTogether {
		together = o.skeletonRatios()
	}
	return time.Duration((o.pairRatios()-together)*o.pairs)*(2*side+idle) + time.Duration(together*o.pairs)*(side+idle)
}

func runBench(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run chainbench from the repository root (go.mod not found)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b := &bench{o: o, started: time.Now(), mach: measure.DescribeMachine(), rev: measure.SourceRevision()}
	paced := "no paced runs"
	if o.cache && len(o.pacedLevels) > 0 {
		paced = fmt.Sprintf("paced cache runs with %v callers at %.0f chains/s", o.pacedLevels, o.pacedRate)
	}
	pairs := "no pairs (--pairs 1)"
	if n := o.pairRatios(); n > 0 {
		pairs = fmt.Sprintf("%d pairs of %s for each of %d target ratios (about %s)", o.pairs, o.pairDuration, n, o.pairsEstimate().Round(10*time.Second))
	}
	logf("chainbench: levels %v, %s per run after %s warm-up, store %s, transports %v, baseline %v, %s, %s; about %s",
		o.levels, o.duration, o.warmup, o.store, o.transports, o.baseline, paced, pairs, o.estimate().Round(10*time.Second))

	dir, err := os.MkdirTemp("", "chainbench-")
	if err != nil {
		return err
	}
	b.dir = dir
	b.procs = proc.NewSet(dir)
	defer func() {
		b.procs.StopAll()
		if o.keep {
			logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	// The floor first, while nothing else of ours is running.
	b.waitIdle(ctx)
	logf("measuring one RS256 parse+verify+validate (token package, testing.Benchmark, best of %d)...", o.floorRounds)
	if b.floor, err = measure.MeasureFloor(o.floorRounds); err != nil {
		return fmt.Errorf("floor benchmark: %w", err)
	}
	logf("  %s/op, %d allocs/op", report.FmtDur(b.floor.PerOp), b.floor.AllocsPerOp)
	if err := b.run(ctx); err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted; every process started was stopped")
		}
		return err
	}
	b.finished = time.Now()
	rep := b.report()
	fmt.Println(rep.Summary())
	if o.write {
		if err := rep.Write(o.out, o.svg); err != nil {
			return err
		}
		logf("wrote %s and %s", o.out, o.svg)
	}
	logf("total time %s", time.Since(b.started).Round(time.Second))
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// bench is one benchmark run's state.
type bench struct {
	o        *options
	dir      string
	procs    *proc.Set
	mach     measure.Machine
	rev      string // the measured source tree
	floor    measure.Floor
	started  time.Time
	finished time.Time

	domains    *proc.Proc
	info       domainsInfo
	redis      *proc.Proc
	redisAddr  string
	brokerBin  string
	apiKey     string
	configYAML string // as used for the measured runs
	cacheYAML  string // as used for the cache runs
	cacheKey   string // base64

	subjects   []string
	idSubjects []string // ID tokens, for the ID-JAG runs
	fetchedAt  time.Time

	results    []load.Result
	cache      []load.Result // closed loop, one per level
	cachePaced []load.Result // open loop, one per paced level
	skeleton   []load.Result // the skeleton broker (package skeleton), at c=1 and c=64
	skelNote   string
	// skeletonCache are the skeleton's cache hits: closed loop at c=1, then
	// open loop at the paced levels.
	skeletonCache     []load.Result
	skeletonCacheNote string
	cacheNote         string
	pairs             []report.PairSet // the targets' short alternating pairs (--pairs)
	profs             []*report.Profile
	steps             *report.StepTrace // the per-step trace at c=1 (trace.go)
	profErr           string
	rssNote           string
	childOut          *bufio.Scanner // stdout of the in-process broker child
}

func (b *bench) run(ctx context.Context) error {
	o := b.o
	logf("building chainbroker...")
	b.brokerBin = filepath.Join(b.dir, "chainbroker")
	build := exec.CommandContext(ctx, o.goCmd, "build", "-o", b.brokerBin, "./cmd/chainbroker")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/chainbroker: %w", err)
	}

	logf("starting the sandbox domains (separate process)...")
	self, err := os.Executable()
	if err != nil {
		return err
	}
	domainArgs := []string{modeDomains}
	if o.cloud {
		domainArgs = append(domainArgs, "-cloud-addr", "127.0.0.1:0")
	}
	p, out, err := b.procs.Start("domains", nil, true, true, self, domainArgs...)
	if err != nil {
		return err
	}
	b.domains = p
	if err := readJSONLine(ctx, p, out, &b.info); err != nil {
		return fmt.Errorf("domains: %w", err)
	}
	go func() { // drain the rest of stdout
		for out.Scan() {
		}
	}()
	logf("  domain A %s, domain B %s, domain C %s (pid %d)", b.info.A.Issuer, b.info.B.Issuer, b.info.C.Issuer, p.PID())
	if o.cloud {
		if b.info.Cloud == nil {
			return errors.New("domains: no cloud imitations")
		}
		logf("  cloud imitations %s (same process)", b.info.Cloud.URL)
	}

	if o.store == "redis" {
		if b.redis, b.redisAddr, err = b.procs.StartRedis(ctx); err != nil {
			return err
		}
		logf("  redis-server %s (pid %d)", b.redisAddr, b.redis.PID())
	}
	ck := make([]byte, 32)
	_, _ = rand.Read(ck)
	b.cacheKey = base64.StdEncoding.EncodeToString(ck)
	if o.caller == "apikey" {
		k := make([]byte, 24)
		_, _ = rand.Read(k)
		b.apiKey = hex.EncodeToString(k)
	}

	// The measured broker: the real binary, `serve --config`.
	broker, addrs, cfgText, err := b.startBroker(ctx, "broker", false, false)
	if err != nil {
		return err
	}
	b.configYAML = cfgText
	logf("  broker gRPC %s, REST %s (pid %d)", addrs.grpc, addrs.http, broker.PID())
	if !measure.ResetPeakRSS(broker.PID()) {
		b.rssNote = "clear_refs unavailable: peak RSS is the process's lifetime peak"
	}

	maxConc := 1
	for _, c := range o.levels {
		maxConc = max(maxConc, c)
	}
	targets := map[string]load.Target{}
	if o.baseline {
		targets["baseline"] = &load.Baseline{
			Client: load.NewHTTPClient(maxConc), AToken: b.info.A.TokenEndpoint, BToken: b.info.B.TokenEndpoint,
			Audience: b.info.B.Issuer, ClientID: sandbox.BrokerClientID,
			ASecret: sandbox.BrokerSecretA, BSecret: sandbox.BrokerSecretB,
		}
	}
	for _, t := range o.transports {
		switch t {
		case "grpc":
			g, err := load.NewGRPC(addrs.grpc, b.apiKey, sandbox.DomainBName, b.o.grpcConns)
			if err != nil {
				return err
			}
			targets["grpc"] = g
		case "rest":
			targets["rest"] = &load.REST{Client: load.NewHTTPClient(maxConc), URL: "http://" + addrs.http + "/v1/chain",
				APIKey: b.apiKey, Domain: sandbox.DomainBName}
		}
	}
	if o.idjag {
		g, err := load.NewGRPC(addrs.grpc, b.apiKey, sandbox.DomainCName, b.o.grpcConns)
		if err != nil {
			return err
		}
		g.SubjectTokenType = sandbox.TokenTypeIDToken
		targets[targetIDJAG] = g
	}
	if o.cloud {
		for _, ct := range cloudTargets() {
			g, err := load.NewGRPC(addrs.grpc, b.apiKey, ct.domain, b.o.grpcConns)
			if err != nil {
				return err
			}
			targets[ct.name] = g
		}
	}
	defer func() {
		for _, t := range targets {
			t.Close()
		}
	}()
	order := []string{"baseline", "grpc", targetIDJAG}
	for _, ct := range cloudTargets() {
		order = append(order, ct.name)
	}
	order = append(order, "rest")
	for _, c := range o.levels {
		for _, name := range order {
			t, ok := targets[name]
			if !ok {
				continue
			}
			res, err := b.measureQuiet(ctx, name, t, c, 0, broker, addrs)
			if err != nil {
				return err
			}
			b.results = append(b.results, res)
			logf("  %-10s c=%-3d %8.0f chains/s  p50 %8s  p90 %8s  p99 %8s  err %d%s", name, c, res.Throughput(),
				report.FmtDur(res.P50), report.FmtDur(res.P90), report.FmtDur(res.P99), res.Errors, brokerLine(res))
			logFirstError(res)
		}
	}
	// REST against gRPC at c=1 and c=64 in short pairs, on the same
	// broker. The broker stays up for the skeleton's pairs (runSkeleton).
	var grpcSide *pairSide
	if g, ok := targets["grpc"]; ok {
		grpcSide = &pairSide{"grpc", g, broker, addrs}
		if r, ok := targets["rest"]; ok {
			for _, c := range o.restPairLevels() {
				if err := b.runPairs(ctx, report.PairsREST, c, pairSide{"rest", r, broker, addrs}, *grpcSide); err != nil {
					return err
				}
			}
		}
	}
	// Each transport (and the skeleton, runSkeleton) against the direct
	// client at c=1 in short pairs: the latency the broker adds.
	var direct *pairSide
	if base, ok := targets["baseline"]; ok {
		direct = &pairSide{"baseline", base, broker, addrs}
	}
	if direct != nil && slices.Contains(o.levels, 1) {
		for _, tr := range o.transports {
			if t, ok := targets[tr]; ok {
				if err := b.runPairs(ctx, report.PairsDirect(tr), 1, pairSide{tr, t, broker, addrs}, *direct); err != nil {
					return err
				}
			}
		}
	}
	stopBroker := func() {
		broker.Stop(10 * time.Second)
		b.procs.Remove(broker)
	}
	defer stopBroker() // on an early return; Stop is idempotent

	if o.trace && slices.Contains(o.levels, 1) {
		if err := b.runTrace(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			logf("trace: %v", err)
		}
	}

	if o.skeleton {
		if err := b.runSkeleton(ctx, grpcSide, direct); err != nil {
			if ctx.Err() != nil {
				return err
			}
			b.skelNote = "not measured: " + err.Error()
			logf("skeleton: %v", err)
		}
	}
	stopBroker()

	profile := func(cache bool) error {
		if !o.profile {
			return nil
		}
		if err := b.runProfile(ctx, cache); err != nil {
			if ctx.Err() != nil {
				return err
			}
			b.profErr += err.Error() + "\n"
			logf("profile: %v", err)
		}
		return nil
	}
	if err := profile(false); err != nil {
		return err
	}
	if o.cache {
		if cacheSide, stopCache, err := b.runCache(ctx); err != nil {
			if ctx.Err() != nil {
				return err
			}
			b.cacheNote = "not measured: " + err.Error()
			logf("cache: %v", err)
		} else {
			if o.skeleton {
				err := b.runSkeletonCache(ctx, cacheSide)
				stopCache()
				if err != nil {
					if ctx.Err() != nil {
						return err
					}
					b.skeletonCacheNote = "not measured: " + err.Error()
					logf("skeleton cache: %v", err)
				}
			} else {
				stopCache()
			}
			if err := profile(true); err != nil {
				return err
			}
		}
	} else {
		b.cacheNote = "not measured (--cache=false)"
	}
	return ctx.Err()
}

func brokerLine(r load.Result) string {
	if !r.HasBroker {
		return fmt.Sprintf("  domains CPU %s/chain%s", report.FmtDur(r.DomainsCPU), otherLine(r))
	}
	s := fmt.Sprintf("  broker CPU %s/chain", report.FmtDur(r.BrokerCPU))
	if r.HasHandler {
		s += ", p99 inside the broker " + report.HandlerCell(r)
	}
	if r.HasAllocs {
		s += fmt.Sprintf(", %.0f allocs/chain", r.Allocs)
	}
	return s + fmt.Sprintf(", peak RSS %.1f MiB%s", float64(r.PeakRSS)/(1<<20), otherLine(r))
}

func otherLine(r load.Result) string {
	s := ""
	if r.TimerLateShare > 0 {
		s = fmt.Sprintf("; load generator's timer late by %s at p99", report.FmtDur(r.TimerLateP99))
	}
	s += fmt.Sprintf("; other CPU %.2f cores (softirq %.2f", r.OtherCPU, r.SoftirqCPU)
	if r.StealCPU >= 0.01 {
		s += fmt.Sprintf(", steal %.2f", r.StealCPU)
	}
	if r.Foreign != "" {
		s += "; " + r.Foreign
	}
	return s + ")"
}

// readJSONLine reads the first stdout line of a child into v.
func readJSONLine(ctx context.Context, p *proc.Proc, out *bufio.Scanner, v any) error {
	line := make(chan string, 1)
	go func() {
		if out.Scan() {
			line <- out.Text()
		}
		close(line)
	}()
	select {
	case l, ok := <-line:
		if !ok {
			<-p.Done()
			return fmt.Errorf("exited before it was ready: %v\n%s", p.Err(), p.LogTail())
		}
		return json.Unmarshal([]byte(l), v)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("not ready within 30s\n%s", p.LogTail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

type brokerAddrs struct{ grpc, http string }

// startBroker writes a configuration and starts a broker: the chainbroker
// binary (`serve`), or with inProcess this program's broker mode (for
// profiling). cache turns the token cache on for domain B.
func (b *bench) startBroker(ctx context.Context, name string, inProcess, cache bool, extraArgs ...string) (*proc.Proc, brokerAddrs, string, error) {
	gp, err1 := proc.FreePort()
	hp, err2 := proc.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, brokerAddrs{}, "", err
	}
	addrs := brokerAddrs{grpc: fmt.Sprintf("127.0.0.1:%d", gp), http: fmt.Sprintf("127.0.0.1:%d", hp)}
	cfg := b.brokerConfig(addrs, cache)
	path := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, addrs, "", err
	}
	env := []string{
		app.SandboxSecretAEnv + "=" + sandbox.BrokerSecretA,
		app.SandboxSecretBEnv + "=" + sandbox.BrokerSecretB,
		app.SandboxSecretCEnv + "=" + sandbox.BrokerSecretC,
		cacheKeyEnv + "=" + b.cacheKey,
	}
	env = append(env, b.o.brokerEnv...)
	var p *proc.Proc
	var out *bufio.Scanner
	if inProcess {
		self, err := os.Executable()
		if err != nil {
			return nil, addrs, "", err
		}
		p, out, err = b.procs.Start(name, env, true, true, self, append([]string{modeBroker, "--config", path}, extraArgs...)...)
		if err != nil {
			return nil, addrs, "", err
		}
		b.childOut = out
	} else {
		var err error
		p, _, err = b.procs.Start(name, env, false, false, b.brokerBin, "serve", "--config", path)
		if err != nil {
			return nil, addrs, "", err
		}
	}
	if err := proc.WaitHTTP(ctx, p, "http://"+addrs.http+"/readyz"); err != nil {
		return nil, addrs, "", err
	}
	return p, addrs, cfg, nil
}

// cacheKeyEnv holds the token cache's AES-256-GCM key (random per run).
const cacheKeyEnv = "CHAINBENCH_CACHE_KEY"

// brokerConfig is the configuration the broker runs with: the sandbox's
// (app.SandboxFile, the shape of examples/sandbox.yaml), pointed at the
// domains process; with cache, the token cache is on for domain B.
func (b *bench) brokerConfig(addrs brokerAddrs, cache bool) string {
	o := b.o
	redisURL := ""
	if o.store == "redis" {
		redisURL = "redis://" + b.redisAddr + "/0"
	}
	f := app.SandboxFile(b.info.A, b.info.B, b.info.C, addrs.grpc, addrs.http, redisURL) // C: the ID-JAG runs
	app.AddSandboxClouds(f, b.info.A, b.info.Cloud)                                      // the cloud runs, with --cloud
	f.Listen.ShutdownTimeout = config.Duration(5 * time.Second)
	// The load generator multiplexes up to 256 callers over --grpc-conns
	// connections (default 1): above the default stream bound (100) they
	// would queue in the client, which the skeleton does not make them do.
	f.Listen.MaxConcurrentStreams = 1024
	f.Log = config.Log{Level: "warn", Format: "json"}
	f.Store.Backend = o.store
	f.Policy[0].Roles = nil
	if o.caller == "apikey" {
		sum := sha256.Sum256([]byte(b.apiKey))
		f.Callers = config.Callers{APIKeys: []config.APIKey{{Name: "chainbench", SHA256: hex.EncodeToString(sum[:])}}}
		f.Policy[0].Caller = "chainbench"
	}
	f.Domains[0].VerifySubjectToken = o.verifySubjectToken
	if cache {
		// The key: base64 of 32 random bytes.
		f.Cache = config.Cache{Keys: []config.CacheKey{{ID: "chainbench", SecretEnv: cacheKeyEnv}}}
		f.Domains[1].Cache.Enabled = true
	}
	var text strings.Builder
	text.WriteString("# generated by chainbench\n")
	enc := yaml.NewEncoder(&text)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		panic(err) // a config.File always marshals
	}
	return text.String()
}

// refreshSubjects makes sure every subject token outlives the next run.
func (b *bench) refreshSubjects(ctx context.Context, need time.Duration) error {
	const lifetime = sandbox.DefaultTokenLifetime
	if len(b.subjects) == b.o.subjects && (!b.o.idjag || len(b.idSubjects) == b.o.subjects) &&
		time.Since(b.fetchedAt)+need+30*time.Second < lifetime {
		return nil
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	fetched := time.Now()
	subjects := make([]string, 0, b.o.subjects)
	var idSubjects []string
	for i := range b.o.subjects {
		user, pass := sandbox.Alice, sandbox.AlicePassword
		if i%2 == 1 {
			user, pass = sandbox.Bob, sandbox.BobPassword
		}
		tok, err := passwordGrant(ctx, client, b.info.A.TokenEndpoint, user, pass, false)
		if err != nil {
			return fmt.Errorf("subject token for %s: %w", user, err)
		}
		subjects = append(subjects, tok)
		if b.o.idjag {
			if tok, err = passwordGrant(ctx, client, b.info.A.TokenEndpoint, user, pass, true); err != nil {
				return fmt.Errorf("ID token for %s: %w", user, err)
			}
			idSubjects = append(idSubjects, tok)
		}
	}
	b.subjects, b.idSubjects, b.fetchedAt = subjects, idSubjects, fetched
	return nil
}

// targetIDJAG names the ID-JAG runs (gRPC, domain A -> domain C).
const targetIDJAG = "grpc-idjag"

// cloudTarget is one of the cloud runs: its name in the results and the
// broker's target domain it chains into (gRPC, domain A -> the cloud).
type cloudTarget struct{ name, domain string }

// cloudTargets are the cloud runs (--cloud), in the order they are measured
// and reported: into the sandbox's aws, gcp and azure targets.
func cloudTargets() []cloudTarget {
	return []cloudTarget{
		{"grpc-aws", app.SandboxAWSTarget},
		{"grpc-gcp", app.SandboxGCPTarget},
		{"grpc-azure", app.SandboxAzureTarget},
	}
}

// passwordGrant is a user's access token from domain A, or with idToken the
// ID token (scope openid).
func passwordGrant(ctx context.Context, client *http.Client, endpoint, user, pass string, idToken bool) (string, error) {
	form := url.Values{"grant_type": {"password"}, "client_id": {sandbox.AgentClientID}, "username": {user}, "password": {pass}}
	if idToken {
		form.Set("scope", "openid")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var ans load.TokenAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&ans); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || ans.AccessToken == "" || (idToken && ans.IDToken == "") {
		return "", fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, ans.Error, ans.Description)
	}
	if idToken {
		return ans.IDToken, nil
	}
	return ans.AccessToken, nil
}

// noisyLimit is the CPU, in cores, that processes outside the benchmark may
// use during a run before it counts as disturbed (interrupt time excluded:
// on loopback it is the benchmark's own traffic).
const noisyLimit = 0.20

// measureQuiet waits for an idle machine and measures; when other
// processes disturbed the run, it waits and measures again, up to three
// times in all, and keeps the least disturbed run. rate is as for measure.
func (b *bench) measureQuiet(ctx context.Context, name string, t load.Target, conc int, rate float64, broker *proc.Proc, addrs brokerAddrs) (load.Result, error) {
	var best load.Result
	disturbance := func(r load.Result) float64 { return r.OtherCPU - r.SoftirqCPU }
	for attempt := 1; attempt <= 3; attempt++ {
		b.waitIdle(ctx)
		res, err := b.measure(ctx, name, t, conc, rate, broker, addrs)
		if err != nil {
			return res, err
		}
		res.Attempts = attempt
		if attempt == 1 || disturbance(res) < disturbance(best) {
			best = res
		}
		if b.o.idleWait <= 0 || disturbance(best) <= noisyLimit {
			break
		}
		if attempt < 3 {
			logf("  %s %s disturbed (other CPU %.2f cores: %s); measuring again", name, loadLabel(conc, rate), res.OtherCPU, res.Foreign)
		}
	}
	best.Attempts = max(best.Attempts, 1)
	return best, nil
}

// waitIdle waits, up to --idle-wait, until processes other than the
// benchmark's use less than noisyLimit cores over a second.
func (b *bench) waitIdle(ctx context.Context) {
	if b.o.idleWait <= 0 {
		return
	}
	deadline := time.Now().Add(b.o.idleWait)
	logged := false
	for {
		ours := func() time.Duration {
			var sum time.Duration
			for _, pid := range b.procs.PIDs() {
				d, _ := measure.ProcCPU(pid)
				sum += d
			}
			d, _ := measure.ProcCPU(measure.SelfPID())
			return sum + d
		}
		o0, s0, p0 := ours(), must(measure.SystemCPU()), measure.ScanProcs()
		start := time.Now()
		load.SleepCtx(ctx, time.Second)
		o1, s1, p1 := ours(), must(measure.SystemCPU()), measure.ScanProcs()
		if ctx.Err() != nil {
			return
		}
		secs := time.Since(start).Seconds()
		other := ((s1.Busy - s0.Busy) - (s1.Softirq - s0.Softirq) - (o1 - o0)).Seconds() / secs
		if other < noisyLimit {
			if logged {
				logf("  idle again")
			}
			return
		}
		if time.Now().After(deadline) {
			logf("  still busy after %s (other CPU %.2f cores); measuring anyway", b.o.idleWait, other)
			return
		}
		if !logged {
			ourSet := map[int]bool{measure.SelfPID(): true}
			for _, pid := range b.procs.PIDs() {
				ourSet[pid] = true
			}
			logf("  machine busy (other CPU %.2f cores: %s); waiting up to %s", other, measure.ForeignTop(p0, p1, ourSet, time.Since(start)), b.o.idleWait)
			logged = true
		}
	}
}

func must[T any](v T, _ error) T { return v }

// loadLabel names a run's load in log lines: "c=64" (closed loop) or
// "64 callers at 20000/s" (open loop).
func loadLabel(conc int, rate float64) string {
	if rate > 0 {
		return fmt.Sprintf("%d callers at %.0f/s", conc, rate)
	}
	return fmt.Sprintf("c=%d", conc)
}

// measure runs one (target, concurrency) pair and turns the probes into
// per-chain figures. With rate 0 it is a closed loop of conc workers
// (load.RunClosed), otherwise an open loop of conc callers offering rate chains/s
// (load.RunPaced). broker is nil for runs that do not involve it.
func (b *bench) measure(ctx context.Context, name string, t load.Target, conc int, rate float64, broker *proc.Proc, addrs brokerAddrs) (load.Result, error) {
	return b.measureWindow(ctx, name, t, conc, rate, broker, addrs, b.o.warmup, b.o.duration)
}

// measureWindow is measure with the given warm-up and measured duration.
func (b *bench) measureWindow(ctx context.Context, name string, t load.Target, conc int, rate float64, broker *proc.Proc, addrs brokerAddrs,
	warmup, duration time.Duration) (load.Result, error) {
	if err := b.refreshSubjects(ctx, warmup+duration); err != nil {
		return load.Result{}, err
	}
	isBroker := name != "baseline"
	metricsURL := "http://" + addrs.http + "/metrics"
	scrape := measure.NewScrapeClient()
	defer scrape.CloseIdleConnections()
	var pids load.PIDs
	pids.Domains = b.domains.PID()
	if b.redis != nil {
		pids.Redis = b.redis.PID()
	}
	if isBroker {
		pids.Broker = broker.PID()
	}
	calls := 0
	probe := func() load.Sample {
		calls++
		var s load.Sample
		if calls == 1 { // before the window: slow reads first
			if isBroker {
				var err error
				s.Mallocs, err = measure.ScrapeMetric(scrape, metricsURL, "go_memstats_mallocs_total")
				s.OKMalloc = err == nil
				s.Chains, _ = measure.ScrapeBuckets(scrape, metricsURL, measure.ChainHistogram)
			}
			s.Procs = measure.ScanProcs()
			s.ReadCPU(pids)
			return s
		}
		s.ReadCPU(pids) // after the window: CPU first
		s.Procs = measure.ScanProcs()
		if isBroker {
			var err error
			s.Mallocs, err = measure.ScrapeMetric(scrape, metricsURL, "go_memstats_mallocs_total")
			s.OKMalloc = err == nil
			s.Chains, _ = measure.ScrapeBuckets(scrape, metricsURL, measure.ChainHistogram)
		}
		return s
	}
	if broker != nil && isBroker {
		measure.ResetPeakRSS(broker.PID())
	}
	time.Sleep(300 * time.Millisecond) // let the previous run's connections settle
	subjects := b.subjects
	if name == targetIDJAG {
		subjects = b.idSubjects
	}
	var d load.Driven
	if rate > 0 {
		d = load.RunPaced(ctx, t, conc, rate, warmup, duration, subjects, probe)
	} else {
		d = load.RunClosed(ctx, t, conc, warmup, duration, subjects, probe)
	}
	if ctx.Err() != nil {
		return load.Result{}, ctx.Err()
	}
	r := load.Summarize(name, conc, d, isBroker, b.ourPIDs(broker))
	r.Offered = rate
	if isBroker {
		if rss, err := measure.PeakRSS(broker.PID()); err == nil {
			r.PeakRSS = rss
		}
	}
	return r, nil
}

// ourPIDs are the benchmark's processes plus extra: also the children
// that are up but idle, such as the broker the skeleton's pairs compare
// with (runPairs), so that they are not listed as foreign processes.
func (b *bench) ourPIDs(extra ...*proc.Proc) []int {
	pids := []int{measure.SelfPID(), b.domains.PID()}
	if b.redis != nil {
		pids = append(pids, b.redis.PID())
	}
	pids = append(pids, b.procs.PIDs()...)
	for _, p := range extra {
		pids = append(pids, p.PID())
	}
	return pids
}

// skeletonLevels are the levels the skeleton runs at: those of the targets.
func (o *options) skeletonLevels() []int {
	var out []int
	for _, c := range o.levels {
		if c == 1 || c == 64 {
			out = append(out, c)
		}
	}
	return out
}

// startSkeleton starts the skeleton broker (package skeleton) as a child, with
// its token cache when cache is set, and a gRPC load target for it. stop
// ends both.
func (b *bench) startSkeleton(ctx context.Context, cache bool) (p *proc.Proc, g *load.GRPC, addrs brokerAddrs, stop func(), err error) {
	if b.redis == nil {
		return nil, nil, addrs, nil, errors.New("needs --store redis")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, addrs, nil, err
	}
	p, out, err := b.procs.Start("skeleton", b.o.brokerEnv, true, true, self, skeleton.Mode,
		"-a-token", b.info.A.TokenEndpoint, "-a-jwks", b.info.A.JWKSURI, "-b-token", b.info.B.TokenEndpoint,
		"-audience", b.info.B.Issuer, "-redis", b.redisAddr, fmt.Sprintf("-cache=%t", cache), "-audit", b.o.skeletonAudit)
	if err != nil {
		return nil, nil, addrs, nil, err
	}
	stopProc := func() {
		p.Stop(10 * time.Second)
		b.procs.Remove(p)
	}
	var info skeleton.Info
	if err := readJSONLine(ctx, p, out, &info); err != nil {
		stopProc()
		return nil, nil, addrs, nil, fmt.Errorf("skeleton: %w", err)
	}
	if g, err = load.NewGRPC(info.GRPC, "", sandbox.DomainBName, b.o.grpcConns); err != nil {
		stopProc()
		return nil, nil, addrs, nil, err
	}
	// No /metrics: the allocation and latency scrapes fail and are left out.
	addrs = brokerAddrs{grpc: info.GRPC, http: "127.0.0.1:1"}
	return p, g, addrs, func() { g.Close(); stopProc() }, nil
}

// measuredFirst reports whether pair i (from 0) runs its measured side
// first: pairs alternate (AB, BA, AB...), so that a drift of the host
// during the pairs weighs on both sides alike instead of always on the
// side that runs second.
func measuredFirst(i int) bool { return i%2 == 0 }

// pairSide is one side of the targets' short pairs: a load target, the
// process it loads and that process's addresses.
type pairSide struct {
	name  string // as in load.Result.Target
	t     load.Target
	p     *proc.Proc
	addrs brokerAddrs
}

// runPairs measures --pairs short closed-loop pairs at concurrency conc,
// each the measured side and the reference back to back, which goes first
// alternating (measuredFirst), for the report's pair set named set
// (report.PairsSkeleton, ...): the targets rest on the median of the
// per-pair ratios. Nothing with --pairs 1.
func (b *bench) runPairs(ctx context.Context, set string, conc int, measured, ref pairSide) error {
	o := b.o
	if o.pairs < 2 {
		return nil
	}
	// Both sides at once only for two processes each under its own load:
	// REST and gRPC share the broker's process, and the direct client's
	// latency is measured against an idle broker.
	together := o.pairsTogether && measured.p != ref.p && ref.name != "baseline"
	how := "alternating which goes first"
	if together {
		how = "both sides at once"
	}
	logf("  %d pairs of %s, %s and %s (%s), c=%d...", o.pairs, o.pairDuration, measured.name, ref.name, how, conc)
	ps := report.PairSet{Name: set, Concurrency: conc, Together: together}
	if together {
		// One refresh before both sides (measureWindow's is then a no-op):
		// the two windows must not refresh the subjects at once.
		if err := b.refreshSubjects(ctx, time.Duration(o.pairs)*(o.pairWarmup()+o.pairDuration+time.Second)); err != nil {
			return err
		}
	}
	for i := range o.pairs {
		b.waitIdle(ctx) // once per pair: its two runs are back to back
		var pair report.Pair
		type side struct {
			pairSide
			into *load.Result
		}
		sides := [2]side{{measured, &pair.Measured}, {ref, &pair.Reference}}
		if !measuredFirst(i) {
			sides[0], sides[1] = sides[1], sides[0]
		}
		errs := make([]error, len(sides))
		measure := func(i int) {
			sd := sides[i]
			*sd.into, errs[i] = b.measureWindow(ctx, sd.name, sd.t, conc, 0, sd.p, sd.addrs, o.pairWarmup(), o.pairDuration)
		}
		if together {
			var wg sync.WaitGroup
			for i := range sides {
				wg.Go(func() { measure(i) })
			}
			wg.Wait()
		} else {
			for i := range sides {
				if measure(i); errs[i] != nil {
					break
				}
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		ps.Pairs = append(ps.Pairs, pair)
		m, r := pair.Measured, pair.Reference
		if ref.name != "baseline" {
			logf("    pair %d: CPU %s vs %s = %.2f×; p50 %s vs %s = %.2f×; err %d, %d", i+1, report.FmtDur(m.BrokerCPU), report.FmtDur(r.BrokerCPU),
				report.Ratio(m.BrokerCPU, r.BrokerCPU), report.FmtDur(m.P50), report.FmtDur(r.P50), report.Ratio(m.P50, r.P50), m.Errors, r.Errors)
		} else { // the direct client: the latency added
			logf("    pair %d: p50 %s vs %s, %s added; err %d, %d", i+1, report.FmtDur(m.P50), report.FmtDur(r.P50),
				report.FmtDur(m.P50-r.P50), m.Errors, r.Errors)
		}
		logFirstError(m)
		logFirstError(r)
	}
	b.pairs = append(b.pairs, ps)
	return nil
}

// runSkeleton measures the skeleton broker (package skeleton) over gRPC at the
// targets' levels, as the broker is measured, then, when broker (the
// broker's gRPC, still up) is not nil, each level in short pairs with it,
// and, when direct (the direct client) is not nil, at c=1 in short pairs
// with the direct client.
func (b *bench) runSkeleton(ctx context.Context, broker, direct *pairSide) error {
	levels := b.o.skeletonLevels()
	if len(levels) == 0 {
		return errors.New("needs c=1 or c=64 in --levels")
	}
	logf("measuring the skeleton broker (the design's floor)...")
	p, g, addrs, stop, err := b.startSkeleton(ctx, false)
	if err != nil {
		return err
	}
	defer stop()
	for _, c := range levels {
		res, err := b.measureQuiet(ctx, "skeleton", g, c, 0, p, addrs)
		if err != nil {
			return err
		}
		b.skeleton = append(b.skeleton, res)
		logf("  %-10s c=%-3d %8.0f chains/s  p50 %8s  p90 %8s  p99 %8s  err %d%s", "skeleton", c, res.Throughput(),
			report.FmtDur(res.P50), report.FmtDur(res.P90), report.FmtDur(res.P99), res.Errors, brokerLine(res))
		logFirstError(res)
	}
	if broker != nil {
		for _, c := range levels {
			if err := b.runPairs(ctx, report.PairsSkeleton, c, *broker, pairSide{"skeleton", g, p, addrs}); err != nil {
				return err
			}
		}
	}
	// The skeleton against the direct client at c=1: the latency the
	// design's floor adds, beside the broker's.
	if direct != nil && slices.Contains(levels, 1) {
		return b.runPairs(ctx, report.PairsDirect("skeleton"), 1, pairSide{"skeleton", g, p, addrs}, *direct)
	}
	return nil
}

// skeletonLoad is one load of the skeleton's cache runs.
type skeletonLoad struct {
	conc int
	rate float64 // 0: closed loop
}

// skeletonCacheLoads are the loads the skeleton's cache hits are measured
// at, those of the cache targets: closed loop at c=1, open loop at the
// paced levels.
func (o *options) skeletonCacheLoads() []skeletonLoad {
	var runs []skeletonLoad
	if slices.Contains(o.levels, 1) {
		runs = append(runs, skeletonLoad{1, 0})
	}
	for _, c := range o.pacedLevels {
		runs = append(runs, skeletonLoad{c, o.pacedRate})
	}
	return runs
}

// runSkeletonCache measures the skeleton's cache hits (package skeleton) as the
// broker's are measured for the cache targets, then the closed loop at c=1
// in short pairs with broker (the broker with its cache, still up and warm).
func (b *bench) runSkeletonCache(ctx context.Context, broker pairSide) error {
	runs := b.o.skeletonCacheLoads()
	if len(runs) == 0 {
		return errors.New("needs c=1 in --levels or --paced-levels")
	}
	logf("measuring the skeleton's cache hits (the design's floor for a hit)...")
	p, g, addrs, stop, err := b.startSkeleton(ctx, true)
	if err != nil {
		return err
	}
	defer stop()
	for _, run := range runs {
		res, err := b.measureQuiet(ctx, "skeleton+cache", g, run.conc, run.rate, p, addrs)
		if err != nil {
			return err
		}
		b.skeletonCache = append(b.skeletonCache, res)
		logf("  %-14s %s: %.0f chains/s (%s)  p50 %8s  p99 %8s  err %d%s", "skeleton+cache", loadLabel(run.conc, run.rate),
			res.Throughput(), report.Achieved(res), report.FmtDur(res.P50), report.FmtDur(res.P99), res.Errors, brokerLine(res))
		logFirstError(res)
	}
	if slices.Contains(runs, skeletonLoad{1, 0}) {
		return b.runPairs(ctx, report.PairsSkeletonCache, 1, broker, pairSide{"skeleton+cache", g, p, addrs})
	}
	return nil
}

// logFirstError logs the first error of a run, if it had one.
func logFirstError(r load.Result) {
	if r.FirstError != "" {
		logf("    first error: %.300s", r.FirstError)
	}
}

// report renders the run's report.
func (b *bench) report() *report.Report {
	o := b.o
	return report.New(&report.Run{
		Opts: report.Options{
			Levels: o.levels, Transports: o.transports, Store: o.store, Caller: o.caller,
			VerifySubjectToken: o.verifySubjectToken, Skeleton: o.skeleton, SkeletonAudit: o.skeletonAudit, Duration: o.duration, Warmup: o.warmup,
			ProfileConc: o.profileConc, ProfileDuration: o.profileDuration, Subjects: o.subjects, GRPCConns: o.grpcConns,
			FloorRounds: o.floorRounds, Pairs: o.pairs, PairDuration: o.pairDuration, BrokerEnv: o.brokerEnv, Out: o.out, SVG: o.svg, Command: o.command(),
		},
		Machine: b.mach, Rev: b.rev, Floor: b.floor, Started: b.started, Finished: b.finished, Redis: b.redis != nil,
		ConfigYAML: b.configYAML, CacheYAML: b.cacheYAML,
		Results: b.results, Cache: b.cache, CachePaced: b.cachePaced,
		Pairs: b.pairs, Skeleton: b.skeleton, SkelNote: b.skelNote, SkeletonCache: b.skeletonCache, SkeletonCacheNote: b.skeletonCacheNote,
		CacheNote: b.cacheNote, Profiles: b.profs, ProfErr: b.profErr, RSSNote: b.rssNote, Steps: b.steps,
	})
}
