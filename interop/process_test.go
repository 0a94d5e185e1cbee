package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of every wait in this package.
const (
	startTimeout = 30 * time.Second // a process until it answers its health check
	stopTimeout  = 10 * time.Second // SIGTERM until SIGKILL
	callTimeout  = 30 * time.Second // one call to the broker or to Hydra
)

// process is a child process whose output goes to a file in the test's
// temporary directory; that output is shown when the test fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, once done is closed
	stopped sync.Once
}

// startProcess runs bin with args in dir and registers its stop in
// t.Cleanup. env is the whole environment (nothing is inherited but PATH and
// HOME, so that the user's variables cannot reconfigure Hydra or the broker).
func startProcess(t *testing.T, name, dir string, env []string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("--- %s output (last 6 KiB) ---\n%s", name, p.tail(6<<10))
		}
	})
	return p
}

// stop sends SIGTERM, waits up to stopTimeout, then kills. Idempotent.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.stopped.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Errorf("%s did not stop within %s of SIGTERM: killed", p.name, stopTimeout)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last n bytes of the process's output.
func (p *process) tail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// output returns everything the process has written so far.
func (p *process) output() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// errAddrInUse is returned by waitHealthy when the process exited because a
// port chosen by freePort was taken meanwhile; the caller retries.
var errAddrInUse = errors.New("address already in use")

// waitHealthy polls url until it answers 200, the process exits, or
// startTimeout passes.
func (p *process) waitHealthy(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			if bytes.Contains([]byte(p.output()), []byte("address already in use")) {
				return errAddrInUse
			}
			return fmt.Errorf("%s exited (%v) before %s answered 200:\n%s", p.name, p.err, url, p.tail(4<<10))
		case <-ctx.Done():
			return fmt.Errorf("%s: %s did not answer 200 within %s:\n%s", p.name, url, startTimeout, p.tail(4<<10))
		case <-tick.C:
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago. A process
// given it may still lose a race for it; startHydra and startBroker retry on
// errAddrInUse.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// ctxT is a context bounded by callTimeout and the test's life.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}
