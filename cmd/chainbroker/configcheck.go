package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/chainbroker/chainbroker/config"
)

const configHelp = `Usage: chainbroker config check FILE

Check a configuration file offline: every problem that needs no network call
(unknown keys, wrong types, validation, secrets from the environment or files,
TLS, CA and key files), by YAML path and line, one per line. Discovery and the
domains' keys are not fetched. Exit 0 when the file is valid, 1 when it is not,
2 on a usage error.

Examples:
  chainbroker config check /etc/chainbroker/config.yaml
  CHAINBROKER_DOMAIN_A_SECRET=... chainbroker config check config.yaml
`

// errConfigInvalid ends "config check" on an invalid file: exit 1.
var errConfigInvalid = errors.New("configuration invalid")

// runConfig runs "chainbroker config SUBCOMMAND".
func runConfig(_ context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelpArg(args[0]) {
		fmt.Fprint(stdout, configHelp)
		return errHelpShown
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprint(stderr, configHelp)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	if err := parseFlags(fs, args[1:], configHelp, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		commandHelp(stderr, configHelp, fs)
		return errors.New("config check: one FILE is required")
	}
	path := fs.Arg(0)
	if _, err := config.LoadAndCheck(path, lookupEnv); err != nil {
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%s: %w", path, errConfigInvalid)
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return nil
}
