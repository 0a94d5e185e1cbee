package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/chainbroker/chainbroker/keyset"
	"github.com/chainbroker/chainbroker/token"
)

const keysUsage = `Usage:
  chainbroker keys generate [--alg ALG] [--out FILE]
      make a signing key (PKCS#8 PEM; ALG one of %s, default %s).
      With --out, write FILE (mode 0600, never overwriting) and print the kid;
      without, write the PEM to stdout and the kid to stderr.
  chainbroker keys jwks [--alg ALG] FILE...
      print the public JWKS of private key files (PEM or JWK), as the broker
      publishes it: kid = RFC 7638 thumbprint, no private member.
`

// runKeys implements `chainbroker keys`: key generation and public JWKS
// rendering, for the broker's own signing keys (issuer mode).
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	_ = ctx // nothing here blocks
	if len(args) == 0 {
		printKeysUsage(stderr)
		return flag.ErrHelp
	}
	switch args[0] {
	case "generate":
		return keysGenerate(args[1:], stdout, stderr)
	case "jwks":
		return keysJWKS(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		printKeysUsage(stderr)
		return flag.ErrHelp
	default:
		printKeysUsage(stderr)
		return fmt.Errorf("keys: unknown subcommand %q", args[0])
	}
}

func printKeysUsage(w io.Writer) {
	fmt.Fprintf(w, keysUsage, strings.Join(keyset.GenerateAlgs, ", "), keyset.DefaultAlg)
}

func keysFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keys "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printKeysUsage(stderr) }
	return fs
}

func keysGenerate(args []string, stdout, stderr io.Writer) error {
	fs := keysFlagSet("generate", stderr)
	alg := fs.String("alg", keyset.DefaultAlg, "signing algorithm")
	out := fs.String("out", "", "write the key to this file (mode 0600; refuses to overwrite)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("keys generate: unexpected argument %q", fs.Arg(0))
	}
	pemBytes, kid, err := keyset.Generate(*alg)
	if err != nil {
		return err
	}
	if *out == "" {
		if _, err := stdout.Write(pemBytes); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "kid %s (%s)\n", kid, *alg)
	} else {
		if err := writeNewFile(*out, pemBytes); err != nil {
			return fmt.Errorf("keys generate: %w", err)
		}
		fmt.Fprintln(stdout, kid)
		fmt.Fprintf(stderr, "wrote %s key %s to %s\n", *alg, kid, *out)
	}
	// RS256, ES* and EdDSA are what the key type gives by default.
	if *alg != "RS256" && *alg != "EdDSA" && !strings.HasPrefix(*alg, "ES") {
		fmt.Fprintf(stderr, "note: a PEM file does not record its algorithm: configure alg: %s for this key\n", *alg)
	}
	return nil
}

// writeNewFile creates path with mode 0600 and data, failing if it exists;
// a partial file is removed on error.
func writeNewFile(path string, data []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: not overwriting a key", path)
		}
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // whatever the umask did
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

func keysJWKS(args []string, stdout, stderr io.Writer) error {
	fs := keysFlagSet("jwks", stderr)
	alg := fs.String("alg", "", "signing algorithm of every file (default: by key type)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("keys jwks: at least one key file is required")
	}
	var signers []*token.Signer
	var errs []error
	seen := map[string]string{}
	for _, path := range fs.Args() {
		sg, err := keyset.LoadFile(path, *alg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, dup := seen[sg.KeyID()]; dup {
			errs = append(errs, fmt.Errorf("%s: same key as %s", path, other))
			continue
		}
		seen[sg.KeyID()] = path
		signers = append(signers, sg)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("keys jwks: %w", err)
	}
	doc, err := token.PublicJWKS(signers...)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, doc, "", "  "); err != nil {
		return err
	}
	pretty.WriteByte('\n')
	_, err = stdout.Write(pretty.Bytes())
	return err
}
