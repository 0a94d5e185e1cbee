// Package export follows the audit trail through a consumer group (a Redis
// stream's, or the memory store's equivalent within the process) and hands
// its events, in bounded batches, to a sink (JSON lines on stdout or in
// a file, OpenTelemetry log records over OTLP/HTTP), for a SIEM.
//
// Delivery is at least once: a batch is acknowledged (XACK) only after the
// sink accepted it. A batch the sink refuses is retried with backoff, never
// dropped. An exporter that stops before acknowledging (crash, kill) leaves
// its batch pending in the group: it reads it again when it restarts under
// the same consumer name, and any other consumer claims it (XAUTOCLAIM) once
// it has been idle for ClaimIdle. Replicas sharing a group share the stream:
// each entry is delivered to one of them, again only once it is claimed.
//
// Events hold hashes only, never a token; the sinks add nothing to them.
package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

// Source is a consumer of the audit trail's group (store/redis.AuditGroup,
// store/memory.AuditGroup).
type Source interface {
	// CreateGroup creates the consumer group if it does not exist.
	CreateGroup(ctx context.Context) error
	// ReadNew reads up to count entries never delivered in the group,
	// waiting up to block for one. skipped are ids of entries that hold no
	// decodable event.
	ReadNew(ctx context.Context, count int, block time.Duration) (events []store.Event, skipped []string, err error)
	// ReadPending reads up to count entries pending for this consumer with
	// ids after after ("0": all).
	ReadPending(ctx context.Context, after string, count int) (events []store.Event, skipped []string, err error)
	// Claim takes over up to count entries idle for at least minIdle,
	// scanning the pending list from start ("0-0"); next is the cursor of
	// the next call, "0-0" when the scan is complete.
	Claim(ctx context.Context, minIdle time.Duration, start string, count int) (events []store.Event, skipped []string, next string, err error)
	// Touch resets the idle time of ids idle for at least minIdle.
	Touch(ctx context.Context, minIdle time.Duration, ids []string) error
	// Ack acknowledges ids.
	Ack(ctx context.Context, ids []string) error
	// ForgetIdleConsumers deletes other consumers without pending entries
	// idle for at least idle, and says how many.
	ForgetIdleConsumers(ctx context.Context, idle time.Duration) (int, error)
}

// Sink receives batches of events.
type Sink interface {
	// Write delivers events, in order; nil means the sink accepted all of
	// them (written and synced, or answered 2xx). Write must not keep
	// events after it returns.
	Write(ctx context.Context, events []store.Event) error
	// Close releases the sink.
	Close() error
}

// Defaults and bounds of Options.
const (
	DefaultBatchSize  = 100
	MaxBatchSize      = 1000
	DefaultClaimIdle  = time.Minute
	DefaultBlock      = 2 * time.Second
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	DefaultForgetIdle = 24 * time.Hour
)

// Options configures an Exporter.
type Options struct {
	Source Source
	Sink   Sink
	// BatchSize bounds every read (COUNT) and so every batch; 0 means
	// DefaultBatchSize, at most MaxBatchSize.
	BatchSize int
	// ClaimIdle is how long an entry stays pending (read, not acknowledged)
	// before another consumer claims it: it must exceed the time one
	// delivery may take. 0 means DefaultClaimIdle.
	ClaimIdle time.Duration
	// Block is how long one read waits for new entries; 0 means DefaultBlock.
	Block time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a failed
	// read, write or acknowledgement (doubling, with jitter); 0 means the
	// defaults. MaxBackoff is lowered to ClaimIdle/4, so that entries being
	// retried are touched often enough not to be claimed by others.
	MinBackoff, MaxBackoff time.Duration
	// Lag, when set, receives the export lag in seconds after every read
	// and every delivery attempt: now minus the time of the oldest event
	// not yet accepted by the sink, or of the newest one exported; 0 when
	// the group has nothing left to deliver.
	Lag func(seconds float64)
	// ForgetIdle: after each complete claim scan, consumers of the group
	// with nothing pending and idle this long (replicas gone under names
	// that do not come back) are deleted; 0 means DefaultForgetIdle.
	ForgetIdle time.Duration
	Logger     *slog.Logger
}

// Exporter moves audit events from a Source to a Sink. Run it once.
type Exporter struct {
	src       Source
	sink      Sink
	batch     int
	claimIdle time.Duration
	block     time.Duration
	minB      time.Duration
	maxB      time.Duration
	lag       func(float64)
	forget    time.Duration
	log       *slog.Logger
}

// New checks opts and returns an Exporter.
func New(opts Options) (*Exporter, error) {
	if opts.Source == nil || opts.Sink == nil {
		return nil, errors.New("export: Source and Sink are required")
	}
	if opts.BatchSize < 0 || opts.BatchSize > MaxBatchSize {
		return nil, fmt.Errorf("export: BatchSize must be between 1 and %d; got %d", MaxBatchSize, opts.BatchSize)
	}
	if opts.ClaimIdle < 0 || opts.Block < 0 || opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.ForgetIdle < 0 {
		return nil, errors.New("export: durations must not be negative")
	}
	e := &Exporter{
		src: opts.Source, sink: opts.Sink,
		batch:     cmpOr(opts.BatchSize, DefaultBatchSize),
		claimIdle: cmpOr(opts.ClaimIdle, DefaultClaimIdle),
		block:     cmpOr(opts.Block, DefaultBlock),
		minB:      cmpOr(opts.MinBackoff, DefaultMinBackoff),
		maxB:      cmpOr(opts.MaxBackoff, DefaultMaxBackoff),
		lag:       opts.Lag,
		forget:    cmpOr(opts.ForgetIdle, DefaultForgetIdle),
		log:       opts.Logger,
	}
	e.maxB = max(min(e.maxB, e.claimIdle/4), e.minB)
	if e.lag == nil {
		e.lag = func(float64) {}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	return e, nil
}

// Run exports until ctx ends, then returns nil. It first creates the group
// (retrying until Redis answers), then delivers what this consumer left
// pending, then new entries, claiming entries other consumers left idle
// for ClaimIdle at start and every ClaimIdle/2.
func (e *Exporter) Run(ctx context.Context) error {
	b := e.backoff()
	for {
		err := e.src.CreateGroup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		e.log.Warn("audit export: cannot create the consumer group; retrying", "error", err)
		if !sleep(ctx, b.next()) {
			return nil
		}
	}
	b.reset()
	pendingAfter, pendingDone := "0", false
	claimCursor, nextClaim := "0-0", time.Now()
	for ctx.Err() == nil {
		var (
			events  []store.Event
			skipped []string
			err     error
			what    string
		)
		switch {
		case !pendingDone:
			what = "pending"
			events, skipped, err = e.src.ReadPending(ctx, pendingAfter, e.batch)
			if err == nil {
				if len(events)+len(skipped) == 0 {
					pendingDone = true
					continue
				}
				pendingAfter = lastID(events, skipped)
			}
		case !time.Now().Before(nextClaim):
			what = "claim"
			var next string
			events, skipped, next, err = e.src.Claim(ctx, e.claimIdle, claimCursor, e.batch)
			if err == nil {
				claimCursor = next
				if next == "0-0" || next == "" {
					claimCursor, nextClaim = "0-0", time.Now().Add(e.claimIdle/2)
					e.forgetConsumers(ctx)
				}
				if len(events)+len(skipped) > 0 {
					e.log.Info("audit export: claimed entries left idle by another consumer", "entries", len(events)+len(skipped))
				}
			}
		default:
			what = "read"
			events, skipped, err = e.src.ReadNew(ctx, e.batch, e.block)
			if err == nil && len(events)+len(skipped) == 0 {
				e.lag(0) // nothing left to deliver
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.log.Warn("audit export: reading the audit stream failed; retrying", "step", what, "error", err)
			sleep(ctx, b.next())
			continue
		}
		b.reset()
		if len(events)+len(skipped) > 0 {
			e.deliver(ctx, events, skipped)
		}
	}
	return nil
}

// deliver hands events to the sink until it accepts them, then acknowledges
// them and skipped, retrying with backoff; it returns early only when ctx
// ends (the batch then stays pending, to be delivered again).
func (e *Exporter) deliver(ctx context.Context, events []store.Event, skipped []string) {
	ids := make([]string, 0, len(events)+len(skipped))
	oldest, newest := time.Time{}, time.Time{}
	for i := range events {
		ids = append(ids, events[i].ID)
		if t := events[i].Time; oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
		if t := events[i].Time; t.After(newest) {
			newest = t
		}
	}
	ids = append(ids, skipped...)
	if len(skipped) > 0 {
		e.log.Warn("audit export: stream entries without a readable event are acknowledged without export",
			"entries", len(skipped), "first_id", skipped[0])
	}
	b := e.backoff()
	for attempt := 1; len(events) > 0; attempt++ {
		if !oldest.IsZero() {
			e.lag(max(time.Since(oldest).Seconds(), 0))
		}
		err := e.sink.Write(ctx, events)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("audit export: the sink refused a batch; retrying", "events", len(events), "attempt", attempt, "error", err)
		e.touch(ctx, ids)
		if !sleep(ctx, b.next()) {
			return
		}
	}
	// Accepted: acknowledge even if ctx just ended (a shutdown), so that a
	// restart does not export the batch again; further tries stop with ctx.
	actx := context.WithoutCancel(ctx)
	b.reset()
	for attempt := 1; ; attempt++ {
		err := e.src.Ack(actx, ids)
		if err == nil {
			break
		}
		e.log.Warn("audit export: acknowledging an exported batch failed; retrying", "entries", len(ids), "attempt", attempt, "error", err)
		if ctx.Err() != nil || !sleep(ctx, b.next()) {
			return
		}
		actx = ctx
		e.touch(ctx, ids)
	}
	if !newest.IsZero() {
		e.lag(max(time.Since(newest).Seconds(), 0))
	}
}

// forgetConsumers deletes consumers gone for good (best effort).
func (e *Exporter) forgetConsumers(ctx context.Context) {
	n, err := e.src.ForgetIdleConsumers(ctx, e.forget)
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.Warn("audit export: deleting idle consumers failed", "error", err)
	case n > 0:
		e.log.Info("audit export: deleted consumers idle with nothing pending", "consumers", n, "idle", e.forget.String())
	}
}

// touch keeps ids from being claimed by other consumers while this one is
// still retrying them.
func (e *Exporter) touch(ctx context.Context, ids []string) {
	if err := e.src.Touch(ctx, e.claimIdle/2, ids); err != nil && ctx.Err() == nil {
		e.log.Warn("audit export: touching pending entries failed", "error", err)
	}
}

// lastID is the last id of a read (entries come in id order; skipped ones
// are interleaved, so both are compared).
func lastID(events []store.Event, skipped []string) string {
	var last string
	if len(events) > 0 {
		last = events[len(events)-1].ID
	}
	if len(skipped) > 0 && (last == "" || idLess(last, skipped[len(skipped)-1])) {
		last = skipped[len(skipped)-1]
	}
	return last
}

// idLess compares two "<ms>-<seq>" stream ids.
func idLess(a, b string) bool {
	var am, as, bm, bs uint64
	_, _ = fmt.Sscanf(a, "%d-%d", &am, &as)
	_, _ = fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am < bm || am == bm && as < bs
}

type backoff struct {
	min, max, cur time.Duration
}

func (e *Exporter) backoff() *backoff { return &backoff{min: e.minB, max: e.maxB} }

func (b *backoff) reset() { b.cur = 0 }

// next is the wait before the next try: min, doubling up to max, with
// jitter of up to a quarter either way.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	j := b.cur / 4
	if j <= 0 {
		return b.cur
	}
	return b.cur - j + rand.N(2*j)
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
