package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/apptest"
)

// result is what one chainctl invocation produced.
type result struct {
	code           int
	stdout, stderr string
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// chainctl runs the CLI with args, the given stdin and environment (nil: an
// empty environment, so the developer's CHAINCTL_* variables do not leak in).
func chainctl(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := runEnv(ctxT(t), args, strings.NewReader(stdin), &out, &errOut, lookup)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// testBroker is a sandbox (domains A and B) and a broker wired to it,
// served in-process on loopback with the memory store.
type testBroker struct{ *apptest.Env }

func startBroker(t *testing.T) *testBroker {
	t.Helper()
	return startBrokerWith(t, nil)
}

// startBrokerWith is startBroker with the sandbox configuration changed by
// mutate before the broker is built.
func startBrokerWith(t *testing.T, mutate func(*config.File)) *testBroker {
	t.Helper()
	return &testBroker{apptest.Start(t, mutate)}
}

// run runs chainctl against this broker.
func (b *testBroker) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return chainctl(t, nil, stdin, append([]string{"--addr", b.GRPCAddr}, args...)...)
}

// noLeak fails when any secret appears in the output.
func noLeak(t *testing.T, r result, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(r.stdout, s) {
			t.Errorf("stdout contains a secret (%.12s...)", s)
		}
		if strings.Contains(r.stderr, s) {
			t.Errorf("stderr contains a secret (%.12s...)", s)
		}
	}
}

// wantCode fails unless r exited with code.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// wantStderr fails unless stderr contains every fragment.
func wantStderr(t *testing.T, r result, fragments ...string) {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(r.stderr, f) {
			t.Errorf("stderr lacks %q:\n%s", f, r.stderr)
		}
	}
}
