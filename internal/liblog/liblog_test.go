package liblog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/grpclog"
)

const childEnv = "CHAINBROKER_LIBLOG_CHILD"

// TestLibraryLogsAreJSON (#22.10) runs a child process that logs JSON to
// stderr with slog, routes the libraries' loggers with Route, and then makes
// go-redis fail to reach a Redis that is down (a closed loopback port), and
// grpc-go and OpenTelemetry log an error. Every line of the child's stderr
// must be a JSON object, and each library's line must be among them.
func TestLibraryLogsAreJSON(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		child()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLibraryLogsAreJSON$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	components := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("stderr line is not JSON: %q", line)
			continue
		}
		if c, ok := rec["component"].(string); ok {
			components[c]++
		}
	}
	for _, c := range []string{"go-redis", "grpc", "opentelemetry"} {
		if components[c] == 0 {
			t.Errorf("no %s line in the JSON log; stderr:\n%s", c, stderr.String())
		}
	}
}

func child() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	Route(log)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	l.Close() // Redis is down: nothing listens there
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.Ping(ctx).Err(); err == nil {
			panic("PING answered on a closed port")
		}
		cancel()
	}
	grpclog.Component("liblogtest").Error("an error logged by grpc-go")
	otel.Handle(errors.New("an error reported to OpenTelemetry"))
	log.Info("child done")
}

// TestBound: a library message is cut at MaxMessageBytes.
func TestBound(t *testing.T) {
	if got := bound(strings.Repeat("x", 3*MaxMessageBytes) + "\n"); len(got) != MaxMessageBytes+3 {
		t.Errorf("len = %d", len(got))
	}
	if got := bound("short\n"); got != "short" {
		t.Errorf("bound = %q", got)
	}
}
