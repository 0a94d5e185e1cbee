// Package proc is chainbench's process control: every part of a benchmark
// run (the domains, redis-server, the broker, the skeleton) is a child
// process, so that its CPU time and memory can be read from /proc, and none
// outlives the benchmark.
package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a child process started by the benchmark. Every Proc is registered
// with a Set and stopped (SIGTERM, then SIGKILL) when the benchmark ends,
// also on Ctrl-C. Children run in their own process group, so a Ctrl-C in the
// terminal reaches the benchmark only, which then stops them in order; on
// Linux they also get SIGKILL if the benchmark itself dies (Pdeathsig).
type Proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, valid after done
	stdin   io.WriteCloser
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is Wait's result, valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.

func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the process to exit and kills it if it has not after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// LogTail returns the last lines of the process's log, for error messages.
func (p *Proc) LogTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// Set owns every child process.
type Set struct {
	dir   string
	mu    sync.Mutex
	procs []*Proc
}

// NewSet returns a Set whose processes keep their logs and files in dir.
func NewSet(dir string) *Set { return &Set{dir: dir} }

// Start runs name with args, stdout and stderr to a log file in the set's
// directory. With pipeStdout the process's stdout is returned line by line
// instead (stderr still goes to the log). With keepStdin the child gets a
// pipe as stdin, closed by stop: a child that exits on EOF then cannot
// outlive the benchmark.
func (s *Set) Start(name string, env []string, pipeStdout, keepStdin bool, bin string, args ...string) (*Proc, *bufio.Scanner, error) {
	logPath := filepath.Join(s.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttrs()
	p := &Proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	var scanner *bufio.Scanner
	if pipeStdout {
		out, err := cmd.StdoutPipe()
		if err != nil {
			logf.Close()
			return nil, nil, err
		}
		scanner = bufio.NewScanner(out)
	} else {
		cmd.Stdout = logf
	}
	if keepStdin {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			logf.Close()
			return nil, nil, err
		}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, scanner, nil
}

// StopAll stops every process still running, newest first.
func (s *Set) StopAll() {
	s.mu.Lock()
	procs := append([]*Proc(nil), s.procs...)
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
}

// PIDs returns the ids of the running processes.
func (s *Set) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, p := range s.procs {
		if !p.Exited() {
			out = append(out, p.PID())
		}
	}
	return out
}

// Remove forgets p after the caller stopped it.
func (s *Set) Remove(p *Proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			return
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartRedis starts a throwaway redis-server on a free loopback port that
// persists nothing, and waits for PING.
func (s *Set) StartRedis(ctx context.Context) (*Proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("redis-server not found on PATH (install it, or use --store memory): %w", err)
	}
	var lastErr error
	for range 5 {
		port, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		dir := filepath.Join(s.dir, "redis")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", err
		}
		p, _, err := s.Start("redis", nil, false, false, bin,
			"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--protected-mode", "yes", "--loglevel", "warning")
		if err != nil {
			return nil, "", err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = waitRedis(ctx, p, addr); lastErr == nil {
			return p, addr, nil
		}
		p.Stop(2 * time.Second)
		s.Remove(p)
	}
	return nil, "", fmt.Errorf("redis-server did not start: %w", lastErr)
}

func waitRedis(ctx context.Context, p *Proc, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("exited: %v\n%s", p.err, p.LogTail())
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("no PONG within 10s")
}

// WaitHTTP polls url until it answers 200, the process exits, or 60 s pass.
func WaitHTTP(ctx context.Context, p *Proc, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	last := ""
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.LogTail())
		}
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready at %s within 60s (%s)\n%s", p.name, url, last, p.LogTail())
}

// ChildContext is a child process's context: it ends on SIGTERM or SIGINT,
// or when stdin reaches EOF. The parent holds stdin open (Start with
// keepStdin), so a child cannot outlive it.
func ChildContext() (context.Context, context.CancelFunc) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, cancel
}
