package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); empty,
// the module version and VCS stamp of the build info are used.
var version = ""

// errHelpShown ends a command whose help was asked for and printed: exit 0.
var errHelpShown = errors.New("help shown")

// isHelpArg reports whether a is a request for help.
func isHelpArg(a string) bool {
	return slices.Contains([]string{"-h", "-help", "--help", "help"}, a)
}

// exitCode maps run's error to the process exit code, printing the error:
// 0 on success and on help asked for (help, --help, COMMAND -h), 1 for an
// invalid file given to "config check", 2 otherwise (usage errors and
// failures alike, as before).
func exitCode(args []string, err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.Is(err, errConfigInvalid):
		fmt.Fprintln(stderr, "chainbroker:", err) // after the problems
		return 1
	case errors.Is(err, flag.ErrHelp):
		// A subcommand (keys) printed its usage: asked for, or for lack
		// of arguments.
		if slices.ContainsFunc(args, isHelpArg) {
			return 0
		}
		return 2
	}
	fmt.Fprintln(stderr, "chainbroker:", err)
	return 2
}

// versionString names the build: the link-time version, else the module
// version, with the VCS revision and time when the build recorded them.
func versionString() string {
	v := version
	var details []string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if r := settings["vcs.revision"]; r != "" {
			if len(r) > 12 {
				r = r[:12]
			}
			if settings["vcs.modified"] == "true" {
				r += "-dirty"
			}
			details = append(details, "commit "+r)
		}
		if t := settings["vcs.time"]; t != "" {
			details = append(details, t)
		}
	}
	if v == "" {
		v = "(devel)"
	}
	details = append(details, runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("chainbroker %s (%s)\n", v, strings.Join(details, ", "))
}

const serveHelp = `Usage: chainbroker serve --config FILE [flags]

Serve the gRPC API and its REST facade with the domains, chains, callers and
policy of FILE (YAML; docs/configuration.md). SIGHUP, or a change of FILE
(checked every second), reloads the configuration without a restart: domains,
chains, callers, policy, rate limits, cache keys, limits, issuer keys and
log.level; an invalid file, or one changing a key that needs a restart
(listen, tls, store, log.format, issuer.url, audit_export), is refused as a
whole and logged, the running configuration stays. SIGINT or SIGTERM drains
in-flight chains and stops.

Examples:
  chainbroker serve --config /etc/chainbroker/config.yaml
  chainbroker serve --config config.yaml --log-format text --log-level debug
  chainbroker serve --config config.yaml --grpc-addr :9090 --http-addr :8080

Environment:
  *_env keys of FILE          secrets (client secrets, Redis password, ...)
  OTEL_*                      tracing (OTLP/HTTP), off unless configured
  CHAINBROKER_ALLOW_INSECURE_KEY_PERMS=1
                              accept private key files readable by group or others

Flags:
`

const sandboxHelp = `Usage: chainbroker sandbox [flags]

Start three local authorization servers (domains A, B and C, with demo users
alice and bob; C receives ID-JAGs) and the broker wired to them, anonymous on
loopback: a demo for laptops, never for production.

Examples:
  chainbroker sandbox
  chainbroker sandbox --redis-url redis://127.0.0.1:6379/0
  chainbroker sandbox --http-addr 127.0.0.1:18080 --grpc-addr 127.0.0.1:19090

Flags:
`

const versionHelp = `Usage: chainbroker version

Print the version, the commit and the Go version of this build.
`

// commandHelp prints the help of a command, with its flags from fs.
func commandHelp(w io.Writer, text string, fs *flag.FlagSet) {
	fmt.Fprint(w, text)
	fs.SetOutput(w)
	fs.PrintDefaults()
}
