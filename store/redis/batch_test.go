package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/store"
)

// pipelineCounter is a go-redis hook counting the pipelines sent and the
// commands in the largest one.
type pipelineCounter struct {
	pipelines, largest atomic.Int64
}

func (*pipelineCounter) DialHook(next goredis.DialHook) goredis.DialHook          { return next }
func (*pipelineCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }
func (p *pipelineCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		p.pipelines.Add(1)
		for n := int64(len(cmds)); ; {
			cur := p.largest.Load()
			if n <= cur || p.largest.CompareAndSwap(cur, n) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

// TestGroupCommit writes from many goroutines at once while Redis holds
// writes (CLIENT PAUSE), so that they queue and go out in batches: every
// caller gets its own answer (see writeBurst), and the commands did share
// pipelines.
func TestGroupCommit(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	ctx := t.Context()
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	hook := &pipelineCounter{}
	client.AddHook(hook)
	s, err := New(Options{Client: client, KeyPrefix: "gc"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := rawClient(t, srv).Do(ctx, "CLIENT", "PAUSE", 300, "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	writeBurst(t, s, 200, 40)
	if hook.largest.Load() < 2 {
		t.Errorf("no two commands shared a pipeline (%d pipelines, largest %d)", hook.pipelines.Load(), hook.largest.Load())
	}
	t.Logf("%d pipelines, largest %d", hook.pipelines.Load(), hook.largest.Load())
}

// The same burst on a Cluster: a batch's commands belong to several masters
// (replay markers spread over every slot), and each still gets its own reply.
func TestClusterGroupCommit(t *testing.T) {
	c := redistest.NewCluster(t)
	s := newClusterStore(t, c, Options{KeyPrefix: "gc"})
	t.Cleanup(func() { _ = s.Close() })
	hook := &pipelineCounter{}
	s.client.AddHook(hook)
	for _, addr := range c.Addrs() {
		node := goredis.NewClient(&goredis.Options{Addr: addr})
		err := node.Do(t.Context(), "CLIENT", "PAUSE", 300, "WRITE").Err()
		_ = node.Close()
		if err != nil {
			t.Fatalf("CLIENT PAUSE on %s: %v", addr, err)
		}
	}
	writeBurst(t, s, 200, 40)
	if hook.largest.Load() < 2 {
		t.Errorf("no two commands shared a pipeline (%d pipelines, largest %d)", hook.pipelines.Load(), hook.largest.Load())
	}
}

// writeBurst has callers goroutines each mark a jti of its own and append an
// event, and sameJTI more mark one shared jti, all at once: each fresh jti
// is marked, exactly one of the shared marks wins, every event is stored
// once under its own id.
func writeBurst(t *testing.T, s *Store, callers, sameJTI int) {
	t.Helper()
	ctx := t.Context()
	until := time.Now().Add(time.Hour)
	var (
		wg       sync.WaitGroup
		won      atomic.Int64
		replayed atomic.Int64
		mu       sync.Mutex
		ids      = map[string]string{} // id -> subject
		failures []error
	)
	fail := func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() }
	for i := range callers {
		wg.Go(func() {
			if err := s.Mark(ctx, store.ReplayKey{Target: "t", Issuer: "i", JTI: fmt.Sprint("own-", i)}, until); err != nil {
				fail(fmt.Errorf("mark of a fresh jti: %w", err))
			}
			subject := fmt.Sprint("subject-", i)
			id, err := s.Append(ctx, &store.Event{Subject: subject})
			if err != nil {
				fail(fmt.Errorf("append: %w", err))
				return
			}
			mu.Lock()
			if prev, dup := ids[id]; dup {
				failures = append(failures, fmt.Errorf("id %s given to %s and %s", id, prev, subject))
			}
			ids[id] = subject
			mu.Unlock()
		})
	}
	for range sameJTI {
		wg.Go(func() {
			switch err := s.Mark(ctx, store.ReplayKey{Target: "t", Issuer: "i", JTI: "shared"}, until); {
			case err == nil:
				won.Add(1)
			case errors.Is(err, store.ErrReplayed):
				replayed.Add(1)
			default:
				fail(fmt.Errorf("mark of the shared jti: %w", err))
			}
		})
	}
	wg.Wait()
	for _, err := range failures {
		t.Error(err)
	}
	if won.Load() != 1 || replayed.Load() != int64(sameJTI-1) {
		t.Errorf("shared jti: %d marks won, %d replayed; want 1 and %d", won.Load(), replayed.Load(), sameJTI-1)
	}
	for id, subject := range ids {
		got, err := s.Get(ctx, id)
		if err != nil || got.Subject != subject {
			t.Errorf("event %s: %+v, %v; want subject %s", id, got, err, subject)
		}
	}
	if n, err := s.client.XLen(ctx, s.stream).Result(); err != nil || n != int64(callers) {
		t.Errorf("stream holds %d events (%v), want %d: an event was lost or written twice", n, err, callers)
	}
}

// A caller's deadline bounds its wait even when Redis does not answer, and
// Close releases the callers still queued for a batch (those sending their
// own command are bounded by their context and OpTimeout, as without
// batching).
func TestGroupCommitDeadlineAndClose(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	ctx := t.Context()
	s := newStore(t, srv, Options{KeyPrefix: "gcd", OpTimeout: 10 * time.Second})
	if err := rawClient(t, srv).Do(ctx, "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Mark(short, store.ReplayKey{Target: "t", Issuer: "i", JTI: "paused"}, time.Now().Add(time.Hour))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Mark with Redis paused: %v, want ErrUnavailable", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("Mark waited %v past its 100ms deadline, until the pause ended", waited)
	}

	// directLimit callers send their own commands; the others queue.
	const callers = directLimit + 3
	done := make(chan error, callers)
	for range callers {
		go func() {
			_, err := s.Append(context.Background(), &store.Event{Subject: "waiting"})
			done <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // let them queue
	go s.Close()
	released := 0
	for released < callers-directLimit {
		select {
		case err := <-done:
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Append queued at Close: %v, want ErrUnavailable", err)
			}
			released++
		case <-time.After(2 * time.Second):
			t.Fatalf("Close released %d of the %d queued Appends", released, callers-directLimit)
		}
	}
	for range directLimit { // they end with the pause: done or unavailable
		if err := <-done; err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Append sent at Close: %v", err)
		}
	}
	if _, err := s.Append(ctx, &store.Event{}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Append after Close: %v, want ErrUnavailable", err)
	}
}

// TestBatchCmdReuse: a queued command's bookkeeping (batchCmd and its done
// channel) is reused once its caller has its reply, so queuing costs no
// allocation of its own: a queued PING allocates what a PING sent directly
// does, plus the worker's per-batch context and timer.
func TestBatchCmdReuse(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true, Protocol: 2})
	t.Cleanup(func() { _ = client.Close() })
	b := newBatcher(client, time.Second)
	t.Cleanup(b.close)
	ctx := context.Background()
	ping := func() {
		cmd := goredis.NewStatusCmd(ctx, "ping")
		if err := b.do(ctx, cmd); err != nil || cmd.Val() != "PONG" {
			t.Fatalf("PING: %v %q", err, cmd.Val())
		}
	}
	ping()
	direct := testing.AllocsPerRun(200, ping)
	b.direct.Store(directLimit) // every command queues from here on
	defer b.direct.Store(0)
	ping()
	queued := testing.AllocsPerRun(200, ping)
	// The worker's batch context (a timerCtx and its timer, about 4): two
	// more were the batchCmd and its channel.
	if queued > direct+5 {
		t.Errorf("a queued PING allocates %v objects, a direct one %v", queued, direct)
	}
	t.Logf("allocations: direct %v, queued %v", direct, queued)
}
