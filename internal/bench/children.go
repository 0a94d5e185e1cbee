package bench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/bench/proc"
	"github.com/chainbroker/chainbroker/sandbox"
)

// The hidden child modes of chainbench. The benchmark re-executes its own
// binary with one of them, so that each part runs in its own process and its
// CPU time and memory can be read from /proc.
const (
	modeDomains = "domains" // the sandbox's two authorization servers
	modeBroker  = "broker"  // the broker in-process, with CPU and allocation profiling on signal
)

// domainsInfo is what the domains child prints on its first stdout line:
// where domains A, B and C answer, and the cloud imitations when it runs
// them.
type domainsInfo struct {
	A, B, C app.SandboxDomain // C: the ID-JAG receiver
	Cloud   *app.SandboxCloud // nil without -cloud-addr
}

// runDomains starts the sandbox domains A, B and C (and, with -cloud-addr,
// the cloud imitations) and serves until told to stop.
func runDomains(args []string) error {
	fs := flag.NewFlagSet(modeDomains, flag.ContinueOnError)
	aAddr := fs.String("a-addr", "127.0.0.1:0", "listen address of domain A")
	bAddr := fs.String("b-addr", "127.0.0.1:0", "listen address of domain B")
	cloudAddr := fs.String("cloud-addr", "", "listen address of the cloud imitations (AWS, Google, Entra); none when empty")
	lifetime := fs.Duration("token-lifetime", sandbox.DefaultTokenLifetime, "lifetime of every token the domains issue")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := proc.ChildContext()
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sb, err := sandbox.Start(ctx, sandbox.Options{AAddr: *aAddr, BAddr: *bAddr, CloudAddr: *cloudAddr, TokenLifetime: *lifetime, Logger: log})
	if err != nil {
		return err
	}
	defer sb.Close()
	var info domainsInfo
	info.A, info.B, info.C = app.SandboxDomains(sb)
	info.Cloud = app.SandboxCloudOf(sb)
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// runBrokerChild runs the broker exactly as `chainbroker serve` does
// (config.Load, Validate, app.Build, Serve), in this process, so that it can
// be profiled with runtime/pprof: SIGUSR1 starts a CPU profile (and writes an
// allocation profile to ALLOC.base), SIGUSR2 stops it and writes the
// allocation profile to ALLOC, then prints "profiled" on stdout; the
// difference of the two allocation profiles covers the profiled load only.
func runBrokerChild(args []string) error {
	fs := flag.NewFlagSet(modeBroker, flag.ContinueOnError)
	path := fs.String("config", "", "configuration file")
	cpuPath := fs.String("cpuprofile", "", "CPU profile output")
	allocPath := fs.String("allocprofile", "", "allocation profile output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, cancel := proc.ChildContext()
	defer cancel()
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	a, err := app.Build(ctx, cfg, app.Options{Logger: log})
	if err != nil {
		return err
	}
	defer a.Close()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var cpuFile *os.File
		for sig := range sigs {
			switch sig {
			case syscall.SIGUSR1:
				if cpuFile != nil {
					continue
				}
				f, err := os.Create(*cpuPath)
				if err == nil {
					err = pprof.StartCPUProfile(f)
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "cpu profile:", err)
					fmt.Println("profile-error")
					continue
				}
				cpuFile = f
				if *allocPath != "" {
					if err := writeAllocProfile(*allocPath + ".base"); err != nil {
						fmt.Fprintln(os.Stderr, "alloc profile:", err)
					}
				}
				fmt.Println("profiling")
			case syscall.SIGUSR2:
				if cpuFile == nil {
					continue
				}
				pprof.StopCPUProfile()
				err := cpuFile.Close()
				cpuFile = nil
				if *allocPath != "" {
					err = errors.Join(err, writeAllocProfile(*allocPath))
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "profile:", err)
					fmt.Println("profile-error")
					continue
				}
				fmt.Println("profiled")
			}
		}
	}()
	return a.Serve(ctx)
}

func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile reflects the allocations up to the last GC
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	return errors.Join(err, f.Close())
}
