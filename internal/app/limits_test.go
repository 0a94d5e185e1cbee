package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
)

// brokerProcess makes TestBrokerProcess serve a broker instead of
// returning: the RSS test re-executes the test binary with it, so that the
// broker's memory is a process of its own to measure.
var brokerProcess = flag.Bool("broker-process", false, "TestBrokerProcess serves a broker until stdin closes (the child of TestHeaderFloodBoundedBeforeAuth)")

// TestBrokerProcess is the broker of TestHeaderFloodBoundedBeforeAuth when
// run as its child (-broker-process): a sandbox and a broker with the
// default listen bounds, serving until its stdin closes. Run normally, it
// has nothing to do.
func TestBrokerProcess(t *testing.T) {
	if !*brokerProcess {
		return
	}
	e := apptest.Start(t, nil)
	fmt.Printf("\nBROKER_GRPC_ADDR=%s\n", e.GRPCAddr)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it (or dies)
	e.Stop()
	if err := e.ServeErr(); err != nil {
		t.Error(err)
	}
}

// startBrokerProcess runs TestBrokerProcess in a child process and returns
// its pid and gRPC address.
func startBrokerProcess(t *testing.T) (pid int, grpcAddr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokerProcess$", "-test.count=1", "-broker-process")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "BROKER_GRPC_ADDR="); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("the broker process ended without serving")
		}
		return cmd.Process.Pid, a
	case <-time.After(2 * time.Minute):
		t.Fatal("the broker process did not start serving")
	}
	return 0, ""
}

// vmRSS is a process's resident set size, in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// Issue #14.1: before any authentication, one plaintext HTTP/2 connection
// to the gRPC listener opens streams, each with a huge header block (HEADERS
// + CONTINUATION frames, ~15 MB of distinct headers) and no body. With
// grpc-go's defaults (16 MB of headers per stream, unlimited streams) the
// broker held every block: 21 MB -> 577 MB RSS. With the listen bounds, the
// broker advertises its limits in its SETTINGS, refuses the blocks, its RSS
// grows by less than 50 MiB, and a normal call on another connection is
// answered during the attack.
func TestHeaderFloodBoundedBeforeAuth(t *testing.T) {
	const (
		streams      = 30
		blockBytes   = 15 << 20
		maxRSSGrowth = 50 << 20
	)
	pid, addr := startBrokerProcess(t)

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	normalCalls := func(when string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, svc := range []string{"", "chainbroker.v1.ChainService"} {
			h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health %q %s: %v %v", svc, when, h, err)
			}
		}
		if _, err := pb.NewChainServiceClient(conn).ListDomains(ctx, &pb.ListDomainsRequest{}); err != nil {
			t.Fatalf("ListDomains %s: %v", when, err)
		}
	}
	normalCalls("before the attack")
	before := vmRSS(t, pid)

	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	settings := make(chan map[http2.SettingID]uint32, 1)
	sent, writeErr := floodHeaders(t, raw, addr, streams, blockBytes, settings)
	t.Logf("attack: sent %d MiB of header blocks (%d streams of %d MiB each planned; stopped by: %v)", sent>>20, streams, blockBytes>>20, writeErr)

	select {
	case s := <-settings:
		if got := s[http2.SettingMaxHeaderListSize]; got == 0 || got > 64<<10 {
			t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want set and at most 64 KiB", got)
		}
		if got := s[http2.SettingMaxConcurrentStreams]; got == 0 || got > 1000 {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want set and at most 1000", got)
		}
	case <-time.After(30 * time.Second):
		t.Error("the broker sent no SETTINGS frame")
	}

	normalCalls("during the attack")
	after := vmRSS(t, pid)
	t.Logf("broker RSS: %d MiB before, %d MiB after the attack (growth %d MiB)", before>>20, after>>20, (after-before)>>20)
	if after-before > maxRSSGrowth {
		t.Errorf("broker RSS grew by %d MiB under a header flood before authentication, want < %d MiB", (after-before)>>20, maxRSSGrowth>>20)
	}
}

// floodHeaders speaks HTTP/2 with prior knowledge (h2c) on c: the preface,
// an empty SETTINGS, then streams gRPC requests whose header block is
// blockBytes of distinct literal headers, split into HEADERS + CONTINUATION
// frames, never sending a body. The server's SETTINGS go to settings.
// It returns the bytes of header blocks written and the write error that
// stopped it (nil: everything was sent; the server closing or no longer
// reading the connection is how a bounded server answers).
func floodHeaders(t *testing.T, c net.Conn, authority string, streams, blockBytes int, settings chan<- map[http2.SettingID]uint32) (int64, error) {
	t.Helper()
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS first (read before the flood, which a bounded
	// server answers by resetting the connection), then the rest of its
	// frames discarded until the connection ends.
	rfr := http2.NewFramer(io.Discard, c)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		f, err := rfr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			m := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error { m[s.ID] = s.Val; return nil })
			settings <- m
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	go func() {
		for {
			if _, err := rfr.ReadFrame(); err != nil {
				return
			}
		}
	}()

	pad := make([]byte, 4096)
	var sent int64
	for i := range streams {
		var block bytes.Buffer
		enc := hpack.NewEncoder(&block)
		for _, hf := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/chainbroker.v1.ChainService/Chain"}, {Name: ":authority", Value: authority},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		} {
			if err := enc.WriteField(hf); err != nil {
				t.Fatal(err)
			}
		}
		// blockBytes of decoded header list (as HTTP/2 counts it: name,
		// value and 32 bytes a field), just under grpc-go's default 16 MB.
		for n, listSize := 0, 0; listSize < blockBytes; n++ {
			if _, err := rand.Read(pad); err != nil {
				t.Fatal(err)
			}
			// Distinct names and random values: nothing to index.
			hf := hpack.HeaderField{Name: fmt.Sprintf("x-pad-%d", n), Value: hex.EncodeToString(pad), Sensitive: true}
			if err := enc.WriteField(hf); err != nil {
				t.Fatal(err)
			}
			listSize += int(hf.Size())
		}
		frag := block.Bytes()
		const maxFrame = 16 << 10 // the default SETTINGS_MAX_FRAME_SIZE
		streamID := uint32(2*i + 1)
		for first := true; len(frag) > 0; first = false {
			n := min(maxFrame, len(frag))
			chunk, last := frag[:n], n == len(frag)
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			var err error
			if first {
				err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: streamID, BlockFragment: chunk, EndHeaders: last})
			} else {
				err = fr.WriteContinuation(streamID, last, chunk)
			}
			if err != nil {
				return sent, err
			}
			sent += int64(n)
			frag = frag[n:]
		}
	}
	return sent, nil
}
