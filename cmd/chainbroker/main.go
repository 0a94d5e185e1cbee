// Command chainbroker is the identity-chaining broker.
//
//	chainbroker serve --config FILE     run against the configured authorization servers
//	chainbroker sandbox                 run two local authorization servers and the broker
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	sandboxpkg "github.com/chainbroker/chainbroker/sandbox"
)

const usage = `chainbroker: identity and authorization chaining across OAuth domains

Usage:
  chainbroker serve --config FILE [flags]   serve gRPC and REST with the configured domains
  chainbroker sandbox [flags]               start domain A, domain B and the broker locally (demo)
  chainbroker keys generate|jwks [flags]    make a signing key; print the public JWKS of key files

Run "chainbroker COMMAND -h" for a command's flags.
`

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "chainbroker:", err)
		}
		os.Exit(2)
	}
}

// tuneGC trades some memory for CPU unless the operator chose: the
// broker's heap is small (tens of MiB) and short-lived garbage dominates.
// GOGC=200 keeps peak RSS at 256 concurrent REST chains near 95 MiB in
// chainbench (GOGC=400: 140-150 MiB, for no CPU saving measurable there);
// a 1 GiB soft memory limit keeps the GC from letting the heap run away.
// GOGC and GOMEMLIMIT win.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(200)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(1 << 30)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "sandbox":
		return runSandbox(ctx, args[1:], stderr)
	case "keys":
		return runKeys(ctx, args[1:], os.Stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// commonFlags are the overrides every command takes.
type commonFlags struct {
	grpcAddr, httpAddr, logFormat, logLevel string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.grpcAddr, "grpc-addr", "", "gRPC listen address (overrides listen.grpc; default "+config.DefaultGRPCAddr+")")
	fs.StringVar(&c.httpAddr, "http-addr", "", "REST listen address (overrides listen.http; default "+config.DefaultHTTPAddr+")")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: json or text (overrides log.format)")
	fs.StringVar(&c.logLevel, "log-level", "", "log level: debug, info, warn, error (overrides log.level)")
}

func (c *commonFlags) apply(f *config.File) {
	override(&f.Listen.GRPC, c.grpcAddr)
	override(&f.Listen.HTTP, c.httpAddr)
	override(&f.Log.Format, c.logFormat)
	override(&f.Log.Level, c.logLevel)
}

func override(p *string, v string) {
	if v != "" {
		*p = v
	}
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML), required")
	var common commonFlags
	common.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return errors.New("serve: --config is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	common.apply(cfg)
	if err := cfg.Validate(); err != nil {
		return err
	}
	// SIGHUP re-reads the configuration's issuer keys (rotation without a
	// restart); other settings need a restart.
	reload := func(ctx context.Context, a *app.App, log *slog.Logger) {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			next, err := config.Load(*path)
			if err == nil {
				err = a.ReloadIssuerKeys(next)
			}
			if err != nil {
				log.Error("SIGHUP: issuer keys not reloaded", "error", err)
				continue
			}
			log.Info("SIGHUP: issuer keys reloaded")
		}
	}
	return runApp(ctx, cfg, app.Options{}, stderr, reload)
}

func runApp(ctx context.Context, cfg *config.File, opts app.Options, stderr io.Writer,
	background ...func(context.Context, *app.App, *slog.Logger)) error {
	log := newLogger(stderr, cfg.Log)
	opts.Logger = log
	tp, err := tracerFromEnv(ctx, os.LookupEnv)
	if err != nil {
		return err
	}
	if tp != nil {
		opts.Tracer = tp
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx) // flush the last spans
		}()
		log.Info("tracing on: OTLP/HTTP exporter from OTEL_* variables")
	}
	a, err := app.Build(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("chainbroker starting", "grpc", cfg.Listen.GRPC, "http", cfg.Listen.HTTP, "store", cfg.Store.Backend,
		"domains", len(cfg.Domains), "chains", len(cfg.Chains))
	for _, f := range background {
		go f(ctx, a, log)
	}
	return a.Serve(ctx)
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runSandbox(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var common commonFlags
	common.register(fs)
	aAddr := fs.String("domain-a-addr", sandboxpkg.DefaultAAddr, "listen address of sandbox domain A")
	bAddr := fs.String("domain-b-addr", sandboxpkg.DefaultBAddr, "listen address of sandbox domain B")
	redisURL := fs.String("redis-url", "", "use Redis (redis://host:port/db) instead of the memory store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	common.logFormat = cmp.Or(common.logFormat, "text")
	log := newLogger(stderr, config.Log{Level: cmp.Or(common.logLevel, "info"), Format: common.logFormat})
	sb, err := sandboxpkg.Start(ctx, sandboxpkg.Options{AAddr: *aAddr, BAddr: *bAddr, Logger: log.With("component", "sandbox")})
	if err != nil {
		return err
	}
	defer sb.Close()
	cfg := app.SandboxConfig(sb, config.DefaultGRPCAddr, config.DefaultHTTPAddr, *redisURL)
	common.apply(cfg)
	if err := cfg.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, sandboxBanner, sb.A.Issuer(), sb.B.Issuer(), cfg.Listen.HTTP, cfg.Listen.GRPC, cfg.Store.Backend,
		sb.A.TokenEndpoint(), cfg.Listen.HTTP)
	return runApp(ctx, cfg, app.Options{LookupEnv: app.SandboxEnv}, stderr)
}

const sandboxBanner = `chainbroker sandbox
  domain A  %s   (users alice/alice, bob/bob; public client sandbox-agent)
  domain B  %s
  broker    REST http://%s   gRPC %s   store %s

Try it:
  TOKEN=$(curl -s %s -d grant_type=password -d client_id=sandbox-agent \
    -d username=alice -d password=alice | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -X POST http://%s/v1/chain -H 'Content-Type: application/json' -d "{\"subject_token\": \"$TOKEN\", \"target_domain\": \"domain-b\"}"

`
