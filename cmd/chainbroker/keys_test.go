package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/keyset"
)

func runKeysT(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runKeys(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestKeysGenerate(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		alg, wantAlg string
		note         bool
	}{
		{"", "ES256", false},
		{"RS256", "RS256", false},
		{"EdDSA", "EdDSA", false},
		{"PS256", "PS256", true},
	} {
		t.Run("out "+tc.wantAlg, func(t *testing.T) {
			path := filepath.Join(dir, tc.wantAlg+".pem")
			args := []string{"generate", "--out", path}
			if tc.alg != "" {
				args = append(args, "--alg", tc.alg)
			}
			stdout, stderr, err := runKeysT(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			kid := strings.TrimSpace(stdout)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			sg, err := keyset.LoadFile(path, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if sg.KeyID() != kid || sg.Alg() != tc.wantAlg {
				t.Errorf("stdout kid %q, file kid %q alg %q", kid, sg.KeyID(), sg.Alg())
			}
			if got := strings.Contains(stderr, "configure alg: "+tc.wantAlg); got != tc.note {
				t.Errorf("alg note %v in %q", got, stderr)
			}

			// Never overwrite: the file keeps its key.
			before, _ := os.ReadFile(path)
			_, _, err = runKeysT(t, args...)
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("second generate = %v", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the existing key file changed")
			}
		})
	}
	t.Run("stdout", func(t *testing.T) {
		stdout, stderr, err := runKeysT(t, "generate", "--alg", "EdDSA")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stdout, "-----BEGIN PRIVATE KEY-----\n") || strings.Contains(stdout, "kid") {
			t.Errorf("stdout is not just the PEM: %q", stdout)
		}
		path := filepath.Join(t.TempDir(), "k.pem")
		if err := os.WriteFile(path, []byte(stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		sg, err := keyset.LoadFile(path, "")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "kid "+sg.KeyID()) {
			t.Errorf("stderr %q does not name kid %s", stderr, sg.KeyID())
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad alg", []string{"generate", "--alg", "HS256"}, `alg "HS256"`},
		{"extra argument", []string{"generate", "key.pem"}, "unexpected argument"},
		{"unknown flag", []string{"generate", "--bits", "4096"}, "flag provided but not defined"},
		{"missing directory", []string{"generate", "--out", filepath.Join(dir, "no", "k.pem")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := runKeysT(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestKeysJWKS(t *testing.T) {
	dir := t.TempDir()
	var paths, kids []string
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		p := filepath.Join(dir, alg+".pem")
		stdout, _, err := runKeysT(t, "generate", "--alg", alg, "--out", p)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		kids = append(kids, strings.TrimSpace(stdout))
	}
	stdout, _, err := runKeysT(t, append([]string{"jwks"}, paths...)...)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	var got []string
	for i, k := range doc.Keys {
		got = append(got, k["kid"].(string))
		if want := []string{"ES256", "RS256", "EdDSA"}[i]; k["alg"] != want || k["use"] != "sig" {
			t.Errorf("key %d: alg %v use %v", i, k["alg"], k["use"])
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %d has private member %q", i, private)
			}
		}
	}
	if !slices.Equal(got, kids) {
		t.Errorf("kids %v, want %v", got, kids)
	}
	if !strings.Contains(stdout, "\n  \"keys\"") {
		t.Errorf("not indented for pasting: %s", stdout)
	}

	// The JWKS the command prints is the one the broker serves.
	s, err := keyset.Load([]keyset.KeyConfig{
		{File: paths[0], State: keyset.Active}, {File: paths[1], State: keyset.Published}, {File: paths[2], State: keyset.Published},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(stdout)); err != nil {
		t.Fatal(err)
	}
	if compact.String() != string(s.JWKS()) {
		t.Errorf("keys jwks:\n%s\nSet.JWKS:\n%s", compact.String(), s.JWKS())
	}

	// --alg applies to every file.
	stdout, _, err = runKeysT(t, "jwks", "--alg", "PS256", paths[1])
	if err != nil || !strings.Contains(stdout, `"alg": "PS256"`) {
		t.Errorf("--alg PS256: %v %s", err, stdout)
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"no file", []string{"jwks"}, []string{"at least one key file"}},
		{"every bad file named", []string{"jwks", bad, paths[0], filepath.Join(dir, "missing.pem")}, []string{bad, "missing.pem"}},
		{"same key twice", []string{"jwks", paths[0], paths[0]}, []string{"same key as"}},
		{"alg misfit", []string{"jwks", "--alg", "RS256", paths[0]}, []string{paths[0], "does not fit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := runKeysT(t, tc.args...)
			if err == nil || stdout != "" {
				t.Fatalf("err = %v, stdout %q", err, stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestKeysCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		help bool
		want string
	}{
		{"no subcommand", nil, true, ""},
		{"help", []string{"help"}, true, ""},
		{"unknown", []string{"rotate"}, false, `unknown subcommand "rotate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runKeysT(t, tc.args...)
			if tc.help != errors.Is(err, flag.ErrHelp) || (tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want))) {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(stderr, "chainbroker keys generate") {
				t.Errorf("no usage on stderr: %q", stderr)
			}
		})
	}
	// Reachable from the top-level command.
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"keys"}, &stderr); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(stderr.String(), "chainbroker keys jwks") {
		t.Errorf("run keys: %v %q", err, stderr.String())
	}
	stderr.Reset()
	_ = run(context.Background(), nil, &stderr)
	if !strings.Contains(stderr.String(), "chainbroker keys generate|jwks") {
		t.Errorf("top-level usage lacks keys: %q", stderr.String())
	}
}
