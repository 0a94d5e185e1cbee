// Command chainbroker is the identity-chaining broker.
//
//	chainbroker serve --config FILE     run against the configured authorization servers
//	chainbroker sandbox                 run two local authorization servers and the broker
//	chainbroker config check FILE       check a configuration file offline
//	chainbroker version                 print the build's version
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
	"github.com/chainbroker/chainbroker/internal/liblog"
	"github.com/chainbroker/chainbroker/keyset"
	sandboxpkg "github.com/chainbroker/chainbroker/sandbox"
)

const usage = `chainbroker: identity and authorization chaining across OAuth domains

Usage:
  chainbroker serve --config FILE [flags]   serve gRPC and REST with the configured domains
  chainbroker sandbox [flags]               start domain A, domain B and the broker locally (demo)
  chainbroker keys generate|jwks [flags]    make a signing key; print the public JWKS of key files
  chainbroker config check FILE             check a configuration file offline (exit 0 when valid)
  chainbroker version                       print the version of this build
  chainbroker help [COMMAND]                this help, or a command's

Examples:
  chainbroker serve --config /etc/chainbroker/config.yaml
  chainbroker sandbox
  chainbroker keys generate --out issuer-key.pem

Run "chainbroker COMMAND -h" (or "chainbroker help COMMAND") for a command's flags
and examples. Help exits 0; a usage error exits 2.
`

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// runMain runs one command line and returns the process exit code.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return exitCode(args, runIO(ctx, args, stdout, stderr), stderr)
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

// run is runIO with help written to stderr (tests).
func run(ctx context.Context, args []string, stderr io.Writer) error {
	return runIO(ctx, args, stderr, stderr)
}

// runIO runs one command line. Help asked for goes to stdout and returns
// errHelpShown; usage printed for a mistake goes to stderr.
func runIO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "sandbox":
		return runSandbox(ctx, args[1:], stdout, stderr)
	case "keys":
		if len(args) > 1 && isHelpArg(args[1]) {
			printKeysUsage(stdout)
			return errHelpShown
		}
		return runKeys(ctx, args[1:], os.Stdout, stderr)
	case "config":
		return runConfig(ctx, args[1:], os.LookupEnv, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprint(stdout, versionString())
		return nil
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && args[0] == "help" {
			return help(ctx, args[1], stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return errHelpShown
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// help prints one command's help ("chainbroker help serve").
func help(ctx context.Context, command string, stdout, stderr io.Writer) error {
	switch command {
	case "serve", "sandbox", "keys", "config":
		return runIO(ctx, []string{command, "-h"}, stdout, stderr)
	case "version":
		fmt.Fprint(stdout, versionHelp)
		return errHelpShown
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("help: unknown command %q", command)
}

// parseFlags parses a command's flags: -h prints text and the flags to
// stdout (errHelpShown); a mistake prints them to stderr, with the error
// returned for main to print.
func parseFlags(fs *flag.FlagSet, args []string, text string, stdout, stderr io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		commandHelp(stdout, text, fs)
		return errHelpShown
	}
	commandHelp(stderr, text, fs)
	return err
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

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (YAML), required")
	var common commonFlags
	common.register(fs)
	if err := parseFlags(fs, args, serveHelp, stdout, stderr); err != nil {
		return err
	}
	if *path == "" {
		commandHelp(stderr, serveHelp, fs)
		return errors.New("serve: --config is required")
	}
	// Every problem that needs no network call, flags included, in one error.
	cfg, src, err := app.LoadConfig(*path, os.LookupEnv, common.apply)
	if err != nil {
		return err
	}
	// SIGHUP, and a change of the file, reload the configuration (App.Reload:
	// checked completely, then applied at once, or refused and logged). The
	// signal is caught from here on, before the listeners open.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := func(ctx context.Context, a *app.App, _ *slog.Logger) {
		go a.WatchConfig(ctx, app.DefaultConfigPollInterval)
		reloadOnSignal(ctx, a, hup)
	}
	// The one override of the private key file mode check, read here only.
	insecureKeys := os.Getenv(keyset.EnvAllowInsecurePermissions) == "1"
	return runApp(ctx, cfg, app.Options{AllowInsecureKeyPermissions: insecureKeys, Source: src}, stderr, reload)
}

// reloadOnSignal reloads the configuration on each signal until ctx ends;
// Reload logs and counts the outcome.
func reloadOnSignal(ctx context.Context, a *app.App, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			_ = a.Reload(ctx, "SIGHUP")
		}
	}
}

func runApp(ctx context.Context, cfg *config.File, opts app.Options, stderr io.Writer,
	background ...func(context.Context, *app.App, *slog.Logger)) error {
	opts.LogLevel = new(slog.LevelVar) // log.level reloads
	log := newLogger(stderr, cfg.Log, opts.LogLevel)
	opts.Logger = log
	// go-redis, grpc-go and OpenTelemetry keep package-level loggers that
	// print plain lines on stderr: route them through this logger (the one
	// place the process sets library globals).
	liblog.Route(log)
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
	if opts.AllowInsecureKeyPermissions {
		log.Warn("private key files readable by group or others are accepted (" + keyset.EnvAllowInsecurePermissions + "=1)")
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

// newLogger is the process's logger at c.Level, set in level (nil: a fixed
// level).
func newLogger(w io.Writer, c config.Log, level *slog.LevelVar) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level)) // validated by config
	if level == nil {
		level = new(slog.LevelVar)
	}
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	var common commonFlags
	common.register(fs)
	aAddr := fs.String("domain-a-addr", sandboxpkg.DefaultAAddr, "listen address of sandbox domain A")
	bAddr := fs.String("domain-b-addr", sandboxpkg.DefaultBAddr, "listen address of sandbox domain B")
	cAddr := fs.String("domain-c-addr", sandboxpkg.DefaultCAddr, "listen address of sandbox domain C (ID-JAG receiver)")
	cloudAddr := fs.String("cloud-addr", sandboxpkg.DefaultCloudAddr, "listen address of the cloud imitations (AWS STS, Google STS, Entra)")
	redisURL := fs.String("redis-url", "", "use Redis (redis://host:port/db) instead of the memory store")
	if err := parseFlags(fs, args, sandboxHelp, stdout, stderr); err != nil {
		return err
	}
	common.logFormat = cmp.Or(common.logFormat, "text")
	log := newLogger(stderr, config.Log{Level: cmp.Or(common.logLevel, "info"), Format: common.logFormat}, nil)
	sb, err := sandboxpkg.Start(ctx, sandboxpkg.Options{AAddr: *aAddr, BAddr: *bAddr, CAddr: *cAddr, CloudAddr: *cloudAddr, Logger: log.With("component", "sandbox")})
	if err != nil {
		return err
	}
	defer sb.Close()
	cfg := app.SandboxConfig(sb, config.DefaultGRPCAddr, config.DefaultHTTPAddr, *redisURL)
	common.apply(cfg)
	keyDir, err := os.MkdirTemp("", "chainbroker-sandbox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(keyDir)
	if err := app.SandboxIssuer(sb, cfg, keyDir); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, sandboxBanner, sb.A.Issuer(), sb.B.Issuer(), sb.C.Issuer(), cfg.Listen.HTTP, cfg.Listen.GRPC, cfg.Store.Backend,
		cfg.Issuer.URL, sb.A.TokenEndpoint(), cfg.Listen.HTTP)
	if sb.Cloud != nil {
		fmt.Fprintf(stderr, "  clouds    %s  (AWS STS /aws/, Google STS /gcp/v1/token, Entra /azure/{tenant}/oauth2/v2.0/token):\n"+
			"            target_domain aws, gcp or azure chains alice's token into them\n\n", sb.Cloud.URL())
	}
	return runApp(ctx, cfg, app.Options{LookupEnv: app.SandboxEnv}, stderr)
}

const sandboxBanner = `chainbroker sandbox
  domain A  %s   (users alice/alice, bob/bob; public client sandbox-agent)
  domain B  %s
  domain C  %s   (ID-JAG receiver, DPoP)
  broker    REST http://%s   gRPC %s   store %s   issuer %s

Try it:
  TOKEN=$(curl -s %s -d grant_type=password -d client_id=sandbox-agent \
    -d username=alice -d password=alice | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -s -X POST http://%s/v1/chain -H 'Content-Type: application/json' -d "{\"subject_token\": \"$TOKEN\", \"target_domain\": \"domain-b\"}"

`
