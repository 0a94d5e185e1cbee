package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// replyDropper is a TCP proxy in front of redis-server that can lose one
// reply: once armed with a command name, the next request naming it is
// forwarded to Redis (which executes it), and when Redis answers, the
// connection is cut instead of the answer being delivered. This is what a
// client sees when Redis, or the network, fails between executing a write
// and acknowledging it.
type replyDropper struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	armed []byte // RESP bulk string of the command name, lower case; nil: off
	fired int
}

func newReplyDropper(t *testing.T, upstream string) *replyDropper {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyDropper{ln: ln, upstream: upstream}
	var wg sync.WaitGroup
	conns := map[net.Conn]bool{}
	var cmu sync.Mutex
	track := func(c net.Conn, on bool) {
		cmu.Lock()
		defer cmu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			track(c, true)
			track(u, true)
			wg.Go(func() { p.pipe(c, u); track(c, false); track(u, false) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *replyDropper) Addr() string { return p.ln.Addr().String() }

// arm makes the next request naming command lose its reply.
func (p *replyDropper) arm(command string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = []byte("\r\n" + command + "\r\n")
}

func (p *replyDropper) firedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

// pipe copies both ways between client c and upstream u.
func (p *replyDropper) pipe(c, u net.Conn) {
	defer c.Close()
	defer u.Close()
	var mu sync.Mutex
	drop := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				p.mu.Lock()
				if p.armed != nil && bytes.Contains(bytes.ToLower(buf[:n]), p.armed) {
					p.armed = nil
					p.fired++
					mu.Lock()
					drop = true
					mu.Unlock()
				}
				p.mu.Unlock()
				if _, werr := u.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			mu.Lock()
			d := drop
			mu.Unlock()
			if d {
				return // cut both connections: the reply is lost
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	u.Close()
	<-done
}

// A write that Redis executed but whose reply was lost must not change the
// outcome of the chain: the store may report it unavailable (the chain then
// fails closed, no token), but it must neither record the audit event twice
// nor take its own replay marker for a replay. Both happen when the Redis
// client re-sends the write on a new connection (go-redis retries commands
// on network errors by default): a second XADD appends a second event, and
// a second SET NX finds the marker the first one wrote.
func TestRedisReplyLost(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	proxy := newReplyDropper(t, srv.Addr())
	sb := apptest.StartSandbox(t, sandbox.Options{})
	b := startBroker(t, "broker", brokerConfig(sb, cfgOptions{redis: &config.Redis{URL: "redis://" + proxy.Addr() + "/0"}}))
	if _, err := b.chainOnce(t, sb, sandbox.Alice); err != nil {
		t.Fatalf("warm-up chain: %v", err)
	}

	tests := []struct {
		name, command string
	}{
		{"audit append (the XADD script, EVALSHA) reply lost", "evalsha"},
		{"replay mark (SET NX) reply lost", "set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subject := apptest.SubjectToken(t, sb, sandbox.Alice)
			fired := proxy.firedCount()
			bCalls := sb.B.JWTBearerCount()
			proxy.arm(tt.command)
			resp, err := b.chain.Chain(callCtx(t, 15*time.Second), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sb.B.Name()})
			if proxy.firedCount() != fired+1 {
				t.Fatalf("the proxy did not see %s during the chain", tt.command)
			}
			switch {
			case err == nil:
				t.Logf("chain succeeded (audit id %s)", resp.AuditId)
			case status.Code(err) == codes.Unavailable:
				t.Logf("chain failed closed: %v", err)
			default:
				t.Errorf("chain: %v; want success or UNAVAILABLE: the grant was presented once", err)
			}
			if n := sb.B.JWTBearerCount() - bCalls; n > 1 {
				t.Errorf("domain B received %d jwt-bearer requests", n)
			}
			events := b.listAll(t, &pb.ListAuditEventsRequest{Caller: callerName})
			var mine []*pb.AuditEvent
			for _, ev := range events {
				if ev.SubjectTokenHash == hashToken(subject) {
					mine = append(mine, ev)
				}
			}
			if len(mine) != 1 {
				var desc []string
				for _, ev := range mine {
					desc = append(desc, ev.Id+" "+ev.Outcome.String()+" "+ev.Reason)
				}
				t.Errorf("%d audit events for one chain, want exactly 1: %v", len(mine), desc)
			}
			if err == nil && (len(mine) == 0 || mine[0].Id != resp.AuditId) {
				t.Errorf("the response's audit id %s is not the chain's event", resp.AuditId)
			}
		})
	}
}

// hashToken is how audit events name a subject token: hex SHA-256.
func hashToken(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
