package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// batcher is group commit for the writes of every chain (replay markers and
// audit events): concurrent callers' commands go to Redis together, in one
// pipeline, one write and one read for the whole batch instead of one round
// trip (two system calls on each side) per command. While few commands are
// out (up to directLimit), a caller sends its own at once, from its own
// goroutine, as without batching: a lone chain waits for nothing and hands
// nothing to another goroutine. Beyond that, commands queue for the batch
// workers, and those that arrive while a batch is out form the next one.
// Each caller still waits for its own reply, so an acknowledged write is one
// Redis has applied, as without batching.
//
// go-redis has an autopipeliner of its own (experimental); it does not honour
// a command's context once queued, which this store promises (OpTimeout and
// the caller's deadline bound every operation), hence this small one.
type batcher struct {
	client  goredis.UniversalClient
	timeout time.Duration // bounds each pipeline
	queue   chan *batchCmd
	closing chan struct{}
	workers sync.WaitGroup
	closed  sync.Once
	direct  atomic.Int32 // commands being sent by their callers
}

type batchCmd struct {
	cmd  goredis.Cmder
	done chan struct{} // receives once cmd holds its reply or error (buffered: the worker never waits)
}

// batchCmds are the batchCmds whose callers received their done: a batchCmd
// (and its channel) is reused by the next queued command instead of two
// allocations per command. One given up on by its caller (its context, or
// the store closing) is never reused: its worker may still be sending.
var batchCmds = sync.Pool{New: func() any { return &batchCmd{done: make(chan struct{}, 1)} }}

const (
	// batchWorkers pipelines may be out at once: enough to keep Redis busy
	// while a batch travels, few enough that batches grow under load.
	batchWorkers = 4
	// maxBatch bounds one pipeline (and the memory of its replies).
	maxBatch = 256
	// directLimit commands may be out, each sent alone by its caller,
	// before commands queue for batches.
	directLimit = 4
)

func newBatcher(c goredis.UniversalClient, timeout time.Duration) *batcher {
	b := &batcher{
		client:  c,
		timeout: timeout,
		queue:   make(chan *batchCmd, maxBatch*batchWorkers),
		closing: make(chan struct{}),
	}
	b.workers.Add(batchWorkers)
	for range batchWorkers {
		go b.work()
	}
	return b
}

// errClosed is a command that found the store closed.
// translate reports it as store.ErrUnavailable.
var errClosed = errors.New("the store is closed")

// do runs cmd in the next batch and waits for its reply, or for ctx. The
// reply (or error) is left in cmd, as go-redis does; the returned error is
// ctx's or errClosed, when the reply could not be waited for. A command given
// up on by its caller may still be applied by Redis (as when a reply is lost
// on the way back).
func (b *batcher) do(ctx context.Context, cmd goredis.Cmder) error {
	select {
	case <-b.closing:
		return errClosed
	default:
	}
	if b.direct.Add(1) <= directLimit {
		defer b.direct.Add(-1)
		// ctx bounds the call: the client has ContextTimeoutEnabled.
		_ = b.client.Process(ctx, cmd)
		return ctx.Err()
	}
	b.direct.Add(-1)
	c := batchCmds.Get().(*batchCmd)
	c.cmd = cmd
	select {
	case b.queue <- c:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.closing:
		return errClosed
	}
	select {
	case <-c.done:
		c.cmd = nil
		batchCmds.Put(c)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.closing:
		return errClosed
	}
}

func (b *batcher) work() {
	defer b.workers.Done()
	batch := make([]*batchCmd, 0, maxBatch)
	for {
		select {
		case c := <-b.queue:
			batch = append(batch[:0], c)
		case <-b.closing:
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case c := <-b.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.exec(batch)
		clear(batch) // let the commands go
	}
}

// exec sends one batch. Its commands' replies, or the transport error that
// failed them, are left in the commands. No command is ever sent twice (the
// client has MaxRetries -1): a lost reply fails the batch's commands rather
// than risking a second audit event or a false replay.
func (b *batcher) exec(batch []*batchCmd) {
	ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
	defer cancel()
	if len(batch) == 1 {
		_ = b.client.Process(ctx, batch[0].cmd)
	} else {
		pipe := b.client.Pipeline()
		for _, c := range batch {
			_ = pipe.Process(ctx, c.cmd)
		}
		// On a transport failure go-redis sets the error on every command
		// that has none, including any whose reply was read before it.
		_, _ = pipe.Exec(ctx)
	}
	for _, c := range batch {
		c.done <- struct{}{}
	}
}

// close stops the workers; callers still waiting get errClosed.
func (b *batcher) close() {
	b.closed.Do(func() { close(b.closing) })
	b.workers.Wait()
}
