// Command chainctl is the command-line client of chainbroker's gRPC API:
// chain a subject token into another domain, list the configured domains,
// read the audit trail.
//
//	chainctl chain --target domain-b < token.txt
//	chainctl domains
//	chainctl audit list --outcome failure --since 1h
//	chainctl audit get ID
//
// Output is a table for people or, with -o json, one protojson document
// (proto field names) for scripts. The exit code tells scripts what went wrong
// (see usage below and docs/chainctl.md). Errors go to stderr; no subject
// token, actor token or caller credential is ever printed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

const usage = `chainctl: command-line client of chainbroker (identity chaining across OAuth domains)

Usage:
  chainctl [global flags] COMMAND [flags]

Commands:
  chain           chain a subject token into a target domain and print the access token
  domains         list the configured domains and the chains the caller may use
  audit list      list audit events, newest first, filtered and paged
  audit get ID    show one audit event
  help [COMMAND]  show a command's flags

Global flags (before or after the command):
  --addr HOST:PORT      broker gRPC address (env CHAINCTL_ADDR; default 127.0.0.1:9090)
  -o, --output FORMAT   table (default) or json: one protojson document with proto field names
  --timeout DURATION    deadline of the whole command (default 30s)
  --api-key-file FILE   file holding the caller API key, sent as gRPC metadata x-api-key
                        (env CHAINCTL_API_KEY_FILE, or the key itself in CHAINCTL_API_KEY)
  --token-file FILE     file holding the caller bearer token, sent as authorization: Bearer
                        (env CHAINCTL_TOKEN_FILE, or the token itself in CHAINCTL_TOKEN)
  --api-key KEY, --token TOKEN
                        the same secrets on the command line: for tests only, since
                        other local users see arguments (ps) and shells keep them
  --tls                 connect with TLS, verifying the broker with the system roots
  --cacert FILE         PEM CA certificates to verify the broker with (implies --tls)
  --cert FILE           PEM client certificate for mutual TLS, with --key (implies --tls)
  --key FILE            PEM private key of --cert (implies --tls)
  --server-name NAME    name to verify in the broker's certificate (implies --tls)
  The connection is plaintext only when none of --tls, --cacert, --cert, --key,
  --server-name is given.

Exit codes:
  0  success
  1  any other error
  2  usage error: unknown command or flag, missing or malformed argument,
     unreadable file named by a flag
  3  the broker refused the caller: UNAUTHENTICATED (no or wrong
     credentials) or PERMISSION_DENIED (CHAIN_NOT_ALLOWED, SCOPE_NOT_ALLOWED,
     SUBJECT_NOT_ALLOWED, AUDIT_NOT_ALLOWED)
  4  INVALID_ARGUMENT or NOT_FOUND: e.g. DOMAIN_UNKNOWN, REQUEST_INVALID,
     SOURCE_UNDETERMINED, SUBJECT_TOKEN_INVALID, SUBJECT_TOKEN_EXPIRED, an
     audit event that does not exist
  5  the chain was refused: an authorization server rejected a hop
     (TOKEN_EXCHANGE_REJECTED, JWT_BEARER_REJECTED), the grant failed the
     target's checks (ASSERTION_*, including ASSERTION_REPLAYED), or any other
     FAILED_PRECONDITION; stderr shows the reason, hop, error, error_description
  6  UNAVAILABLE, DEADLINE_EXCEEDED or RATE_LIMITED: the broker, its store
     or an authorization server is unreachable or too slow, or the caller's
     rate limit is reached; retrying later may help

Errors are printed to stderr as "chainctl: REASON: message", followed by the
error's details (field, hop, error, error_description, retry_after).

Run "chainctl help COMMAND" or "chainctl COMMAND -h" for a command's flags.
`

// Exit codes. Scripts branch on them; keep docs/chainctl.md in step.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitDenied      = 3
	exitInvalid     = 4
	exitRefused     = 5
	exitUnavailable = 6
)

// Environment variables read for the global flags' defaults.
const (
	envAddr       = "CHAINCTL_ADDR"
	envAPIKey     = "CHAINCTL_API_KEY"
	envToken      = "CHAINCTL_TOKEN"
	envAPIKeyFile = "CHAINCTL_API_KEY_FILE"
	envTokenFile  = "CHAINCTL_TOKEN_FILE"
)

// maxCredentialBytes bounds a caller credential read from a file.
const maxCredentialBytes = 64 << 10

const (
	defaultAddr    = "127.0.0.1:9090"
	defaultTimeout = 30 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one chainctl command line and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, stdin, stdout, stderr, os.LookupEnv)
}

// runEnv is run with the environment given as a lookup function.
func runEnv(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	c := &cli{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, lookupEnv: lookupEnv}
	return c.report(c.dispatch(args))
}

// cli is one invocation: its streams, its global options and the secrets that
// must never be printed.
type cli struct {
	ctx       context.Context
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	lookupEnv func(string) (string, bool)

	g       globalOptions
	secrets []string // redacted from everything written to stderr
	command string   // for "Run 'chainctl COMMAND -h'" hints
}

// globalOptions are the flags every command accepts.
type globalOptions struct {
	addr       string
	output     string
	timeout    time.Duration
	apiKey     string
	token      string
	apiKeyFile string
	tokenFile  string
	tls        bool
	cacert     string
	cert       string
	key        string
	serverName string
}

// register adds the global flags to fs. Each flag's default is the option's
// current value, so that flags given before the command survive the
// command's own parse.
func (g *globalOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", g.addr, "broker gRPC address (env "+envAddr+"; default "+defaultAddr+")")
	fs.StringVar(&g.output, "o", g.output, "output format: table or json")
	fs.StringVar(&g.output, "output", g.output, "output format: table or json")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of the whole command")
	fs.StringVar(&g.apiKey, "api-key", g.apiKey, "caller API key, for tests: visible in ps (use --api-key-file or env "+envAPIKey+")")
	fs.StringVar(&g.token, "token", g.token, "caller bearer token, for tests: visible in ps (use --token-file or env "+envToken+")")
	fs.StringVar(&g.apiKeyFile, "api-key-file", g.apiKeyFile, "file holding the caller API key (env "+envAPIKeyFile+")")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "file holding the caller bearer token (env "+envTokenFile+")")
	fs.BoolVar(&g.tls, "tls", g.tls, "connect with TLS")
	fs.StringVar(&g.cacert, "cacert", g.cacert, "PEM CA certificates to verify the broker with (implies --tls)")
	fs.StringVar(&g.cert, "cert", g.cert, "PEM client certificate for mutual TLS (implies --tls)")
	fs.StringVar(&g.key, "key", g.key, "PEM private key of --cert (implies --tls)")
	fs.StringVar(&g.serverName, "server-name", g.serverName, "name to verify in the broker's certificate (implies --tls)")
}

// resolve applies the environment and the defaults once every flag is parsed,
// and checks the global options.
func (c *cli) resolve() error {
	g := &c.g
	if g.addr == "" {
		g.addr, _ = c.lookupEnv(envAddr)
	}
	if g.addr == "" {
		g.addr = defaultAddr
	}
	var err error
	if g.apiKey, err = c.credential("API key", g.apiKey, g.apiKeyFile, "--api-key", envAPIKey, envAPIKeyFile); err != nil {
		return err
	}
	if g.token, err = c.credential("bearer token", g.token, g.tokenFile, "--token", envToken, envTokenFile); err != nil {
		return err
	}
	switch g.output {
	case "":
		g.output = "table"
	case "table", "json":
	default:
		return usageErrorf("-o: unknown output format %q (want table or json)", g.output)
	}
	if g.timeout <= 0 {
		return usageErrorf("--timeout: must be positive, got %s", g.timeout)
	}
	if (g.cert == "") != (g.key == "") {
		return usageErrorf("--cert and --key go together")
	}
	if strings.ContainsAny(g.apiKey, "\r\n") || strings.ContainsAny(g.token, "\r\n") {
		return usageErrorf("--api-key and --token must not contain line breaks")
	}
	return nil
}

// credential resolves one caller credential: the flag (value or file; not
// both), else the environment (value, else file). A file's surrounding
// whitespace is ignored; it is bounded, must not be empty, and a file that
// cannot be read is a usage error. The result is recorded as a secret.
func (c *cli) credential(what, value, file, flagName, env, envFile string) (string, error) {
	if value != "" && file != "" {
		return "", usageErrorf("%s and %s-file: give one", flagName, flagName)
	}
	source := flagName + "-file"
	if value == "" && file == "" {
		value, _ = c.lookupEnv(env)
		if value == "" {
			file, _ = c.lookupEnv(envFile)
			source = envFile
		}
	}
	if value == "" && file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", usageErrorf("%s: %v", source, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxCredentialBytes+1))
		if err != nil {
			return "", usageErrorf("%s: %v", source, err)
		}
		if len(b) > maxCredentialBytes {
			return "", usageErrorf("%s: %s is larger than %d bytes", source, file, maxCredentialBytes)
		}
		if value = strings.TrimSpace(string(b)); value == "" {
			return "", usageErrorf("%s: no %s in %s", source, what, file)
		}
	}
	c.secret(value)
	return value, nil
}

// secret records a value that must never appear on stderr.
func (c *cli) secret(s string) {
	if s != "" {
		c.secrets = append(c.secrets, s)
	}
}

// redact replaces every recorded secret in s.
func (c *cli) redact(s string) string {
	for _, v := range c.secrets {
		s = strings.ReplaceAll(s, v, "[REDACTED]")
	}
	return s
}

func (c *cli) json() bool { return c.g.output == "json" }

// commands maps a command name to its handler. "audit" has subcommands.
func (c *cli) handler(name string) func(args []string) error {
	switch name {
	case "chain":
		return c.chain
	case "domains":
		return c.domains
	case "audit":
		return c.audit
	}
	return nil
}

func (c *cli) dispatch(args []string) error {
	c.g.timeout = defaultTimeout
	fs := newFlagSet("chainctl")
	c.g.register(fs)
	// Global flags stop at the command name.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, usage)
			return nil
		}
		return &usageError{msg: err.Error()}
	}
	args = fs.Args()
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return &usageError{msg: "no command given"}
	}
	name, args := args[0], args[1:]
	if name == "help" {
		return c.help(args)
	}
	h := c.handler(name)
	if h == nil {
		return usageErrorf("unknown command %q (want chain, domains, audit list, audit get)", name)
	}
	c.command = name
	return h(args)
}

// help prints the usage of the whole tool or of one command.
func (c *cli) help(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, usage)
		return nil
	}
	name := strings.Join(args, " ")
	text, ok := commandUsage[name]
	if !ok {
		return usageErrorf("help: unknown command %q", name)
	}
	fmt.Fprint(c.stdout, text)
	return nil
}

// commandUsage holds the help text of each command.
var commandUsage = map[string]string{
	"chain":      chainUsage,
	"domains":    domainsUsage,
	"audit":      auditUsage,
	"audit list": auditListUsage,
	"audit get":  auditGetUsage,
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // chainctl prints its own usage and errors
	fs.Usage = func() {}
	return fs
}

// parseCommand parses a command's flags, which may be mixed with its
// positional arguments ("audit get ID -o json"); "--" ends the flags. It
// returns the positional arguments, or errHelpShown after printing the
// command's usage for -h.
func (c *cli) parseCommand(fs *flag.FlagSet, name string, args []string) ([]string, error) {
	c.g.register(fs)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(c.stdout, commandUsage[name])
				return nil, errHelpShown
			}
			return nil, &usageError{msg: err.Error()}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), c.resolve()
		}
		if len(rest) == 0 {
			return positional, c.resolve()
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// errHelpShown ends a command that printed its usage on request: exit 0.
var errHelpShown = errors.New("help shown")

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// stringList is a repeatable flag; each value may also hold several
// space-separated items ("--scope 'profile email'").
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, " ") }

func (l *stringList) Set(v string) error {
	items := strings.Fields(v)
	if len(items) == 0 {
		return errors.New("empty value")
	}
	for _, it := range items {
		if !slices.Contains(*l, it) {
			*l = append(*l, it)
		}
	}
	return nil
}

// withTimeout bounds a command by --timeout.
func (c *cli) withTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.g.timeout)
}
