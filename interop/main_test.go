package interop

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// HydraVersion is the Ory Hydra release these tests and docs/interop.md are
// about; the binary under test must be built from it (checked through its
// embedded build information).
const HydraVersion = "v2.3.0"

// Environment variables read by TestMain (and only there).
const (
	// envHydraBin is the Hydra binary; default interop/.bin/hydra, where
	// `make interop` builds it.
	envHydraBin = "HYDRA_BIN"
	// envBrokerBin is a prebuilt chainbroker binary; unset, TestMain builds
	// ../cmd/chainbroker from the main module into a temporary directory.
	envBrokerBin = "CHAINBROKER_BIN"
	// envMinIOBin is the MinIO binary; default interop/.bin/minio, where
	// `make interop` builds it.
	envMinIOBin = "MINIO_BIN"
	// envCI set (to anything) turns a missing Hydra or MinIO into a failure
	// instead of a skip: CI must never pass without running these tests.
	envCI = "CI"
)

// bins are the binaries under test, resolved once by TestMain.
var bins struct {
	hydra, broker, minio string
	// missing explains why Hydra is not available; tests skip with it
	// (outside CI only: in CI TestMain fails instead).
	missing string
	// minioMissing is the same for MinIO (the MinIO tests only).
	minioMissing string
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// Each server missing makes its own tests skip, outside CI; in CI it
	// fails the run.
	missing := func(what string, err error, env string) (string, bool) {
		msg := fmt.Sprintf("interop: %v\n  build it with `make interop` (cached in interop/.bin) or set %s", err, env)
		if os.Getenv(envCI) != "" {
			fmt.Fprintf(os.Stderr, "FAIL: %s\n  CI requires the interop suite to run: it must not skip (%s)\n", msg, what)
			return "", false
		}
		return msg, true
	}
	var err error
	var ok bool
	if bins.hydra, err = findHydra(); err != nil {
		if bins.missing, ok = missing("Hydra", err, envHydraBin); !ok {
			return 1
		}
	}
	if bins.minio, err = findMinIO(); err != nil {
		if bins.minioMissing, ok = missing("MinIO", err, envMinIOBin); !ok {
			return 1
		}
	}
	if bins.missing != "" && bins.minioMissing != "" {
		return m.Run() // every test skips
	}

	broker, cleanup, err := brokerBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: interop:", err)
		return 1
	}
	defer cleanup()
	bins.broker = broker
	return m.Run()
}

// findHydra returns the Hydra binary's absolute path after checking that it
// is Hydra HydraVersion built with the sqlite tag (needed for dsn: memory).
func findHydra() (string, error) {
	path := os.Getenv(envHydraBin)
	if path == "" {
		path = filepath.Join(".bin", "hydra")
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no usable Hydra binary at %s: %w", path, err)
	}
	if info.Main.Path != "github.com/ory/hydra/v2" || info.Main.Version != HydraVersion {
		return "", fmt.Errorf("%s is %s@%s, want github.com/ory/hydra/v2@%s", path, info.Main.Path, info.Main.Version, HydraVersion)
	}
	for _, s := range info.Settings {
		if s.Key == "-tags" && strings.Contains(","+s.Value+",", ",sqlite,") {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s was built without -tags sqlite: its in-memory database (dsn: memory) would not work", path)
}

// brokerBinary returns CHAINBROKER_BIN, or builds the main module's
// cmd/chainbroker (with the main module's own go.mod, exactly as shipped)
// into a temporary directory that cleanup removes.
func brokerBinary() (path string, cleanup func(), err error) {
	cleanup = func() {}
	if p := os.Getenv(envBrokerBin); p != "" {
		p, err = filepath.Abs(p)
		if err != nil {
			return "", cleanup, err
		}
		if _, err := os.Stat(p); err != nil {
			return "", cleanup, fmt.Errorf("%s: %w", envBrokerBin, err)
		}
		return p, cleanup, nil
	}
	dir, err := os.MkdirTemp("", "chainbroker-interop-")
	if err != nil {
		return "", cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "chainbroker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/chainbroker")
	cmd.Dir = ".." // the main module: its go.mod, not this one, decides the broker's dependencies
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = ctx.Err()
		}
		return "", func() {}, fmt.Errorf("building chainbroker: %w\n%s", err, out)
	}
	return path, cleanup, nil
}

// requireBroker skips the test when no broker binary was built (outside
// CI, when neither Hydra nor MinIO is there).
func requireBroker(t *testing.T) {
	t.Helper()
	if bins.broker == "" {
		t.Skip("interop: no chainbroker binary (neither Hydra nor MinIO is available)")
	}
}

// requireBinaries skips the test when Hydra is missing outside CI (TestMain
// has already failed the run in CI).
func requireBinaries(t *testing.T) {
	t.Helper()
	if bins.missing != "" {
		t.Skip(bins.missing)
	}
}
