// Package redistest runs throwaway Redis deployments for tests: one
// redis-server process per Server, on a free loopback port, with its files in
// the test's temporary directory, stopped when the test ends. New starts a
// standalone server, NewCluster a 3-master Redis Cluster (cluster.go) and
// NewSentinel a master, a replica and Sentinels (sentinel.go). It never
// touches a Redis the machine already runs.
package redistest

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long Start waits for the server to answer PING.
	readyTimeout = 10 * time.Second
	// startAttempts is how many ports New tries when the chosen one is taken.
	startAttempts = 5
)

// Options configures a Server.
type Options struct {
	// AOF turns on the append-only file (--appendonly yes, --appendfsync
	// per Fsync), so that data survives Stop and Start. Without it the
	// server persists nothing.
	AOF bool
	// Fsync is the AOF fsync policy with AOF: "always" (the default) or
	// "everysec". With "everysec" an acknowledged write is in the kernel's
	// page cache, so it survives a kill of redis-server (what Stop does) but
	// not a machine crash.
	Fsync string
	// Args are extra redis-server arguments, added after the package's own
	// (e.g. "--replicaof", "127.0.0.1", "6379").
	Args []string

	// argsFor, when set, replaces the argument list built from the fields
	// above: it gets the server's directory and port (NewCluster and
	// NewSentinel use it for cluster bus ports and sentinel config files).
	argsFor func(dir string, port int) ([]string, error)
}

// Server is a redis-server child process. Its methods must be called from
// the test goroutine (they may call t.Fatal).
type Server struct {
	t    testing.TB
	opts Options
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Require skips t when redis-server is not on PATH, unless the environment
// variable CI is non-empty: then it fails t, because CI must never silently
// skip the Redis tests. It returns the path of redis-server.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("redistest: redis-server not found on PATH and CI is set, refusing to skip: %v", err)
	}
	t.Skipf("redistest: redis-server not found on PATH, skipping (install redis-server to run this test; set CI=1 to make this a failure): %v", err)
	return ""
}

// RequireCLI is Require for redis-cli (NewCluster needs it to create the
// cluster). It returns the path of redis-cli.
func RequireCLI(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-cli")
	if err == nil {
		return bin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("redistest: redis-cli not found on PATH and CI is set, refusing to skip: %v", err)
	}
	t.Skipf("redistest: redis-cli not found on PATH, skipping (install redis-tools to run this test; set CI=1 to make this a failure): %v", err)
	return ""
}

// New starts a redis-server on a free loopback port (calling Require first),
// waits until it answers PING, and stops it when t ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	return newServer(t, opts, t.TempDir())
}

// newServer starts a server with its files in dir.
func newServer(t testing.TB, opts Options, dir string) *Server {
	t.Helper()
	switch opts.Fsync {
	case "", "always", "everysec":
	default:
		t.Fatalf("redistest: Options.Fsync %q: want always or everysec", opts.Fsync)
	}
	s := &Server{t: t, opts: opts, bin: Require(t), dir: dir}
	t.Cleanup(s.Stop)

	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errAddrInUse) {
			break
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr returns the server's "127.0.0.1:port".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's URL for database 0, "redis://127.0.0.1:port/0".
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Dir returns the server's working directory (AOF and log files).
func (s *Server) Dir() string { return s.dir }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// Running reports whether the process is running (started and not stopped).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Log returns the last n bytes of the server's log file, for failure
// messages.
func (s *Server) Log(n int) string {
	b, _ := os.ReadFile(s.logPath())
	return string(tail(b, n))
}

func (s *Server) logPath() string {
	return filepath.Join(s.dir, "redis-"+strconv.Itoa(s.port)+".log")
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

// Start starts the server again on the same port and directory after Stop.
// With Options.AOF the data written before Stop is still there.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.t.Fatalf("redistest: Start: server on %s is already running", s.Addr())
	}
	// The port was ours a moment ago; retry briefly in case the kernel has
	// not released it yet.
	var err error
	for range startAttempts {
		if err = s.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("redistest: Start: %v", err)
	}
}

// Restart stops the server and starts it again on the same port and directory.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

var errAddrInUse = errors.New("address already in use")

// args returns redis-server's arguments for s.port.
func (s *Server) args() ([]string, error) {
	if s.opts.argsFor != nil {
		return s.opts.argsFor(s.dir, s.port)
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--daemonize", "no",
		"--logfile", "",
	}
	if s.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", cmp.Or(s.opts.Fsync, "always"))
	} else {
		args = append(args, "--appendonly", "no")
	}
	return append(args, s.opts.Args...), nil
}

// start launches redis-server on s.port and waits for PING to succeed.
func (s *Server) start() error {
	args, err := s.args()
	if err != nil {
		return err
	}
	logPath := s.logPath()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()

	if err := waitReady(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		logText, _ := os.ReadFile(logPath)
		if bytes.Contains(logText, []byte("Address already in use")) {
			err = fmt.Errorf("%w: port %d: %w", errAddrInUse, s.port, err)
		}
		return fmt.Errorf("redis-server on port %d did not become ready: %w\nlog:\n%s", s.port, err, tail(logText, 2000))
	}

	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// waitReady polls addr with PING until it answers +PONG, the process exits,
// or readyTimeout passes.
func waitReady(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited")
		default:
		}
		if lastErr = ping(addr); lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %s: %w", readyTimeout, lastErr)
}

// ping sends an inline PING and expects +PONG (a loading server answers
// -LOADING, which counts as not ready).
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
