package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/store"
)

// maxGroupCount bounds the COUNT of every consumer group read.
const maxGroupCount = 1000

// AuditGroup reads the audit stream through a Redis consumer group, for an
// exporter: XGROUP CREATE ... MKSTREAM, XREADGROUP, XAUTOCLAIM, XCLAIM
// (to keep entries in progress from being claimed) and XACK. Entries a
// consumer read stay pending (in the group's PEL) until acknowledged, so a
// consumer that stops before XACK loses nothing: it reads them again under
// the same name (ReadPending), or another consumer claims them (Claim).
//
// Events come back with ID set to their stream id. An entry that cannot be
// decoded, or that was trimmed from the stream while pending, cannot be
// exported: its id is returned apart (skipped), for the caller to
// acknowledge. No go-redis type or error escapes: errors are the store's
// (store.ErrUnavailable for every failure to reach Redis in time).
type AuditGroup struct {
	s        *Store
	group    string
	consumer string
}

// AuditGroup returns a reader of the audit stream as consumer of group.
// Neither may be empty, and neither is a key: they may hold any character.
func (s *Store) AuditGroup(group, consumer string) (*AuditGroup, error) {
	if group == "" || consumer == "" {
		return nil, fmt.Errorf("store/redis: audit group: empty group or consumer name: %w", store.ErrInvalidArgument)
	}
	return &AuditGroup{s: s, group: group, consumer: consumer}, nil
}

// Consumer is the consumer name.
func (g *AuditGroup) Consumer() string { return g.consumer }

// CreateGroup creates the group (XGROUP CREATE <stream> <group> 0
// MKSTREAM): a new group starts at the oldest entry the stream holds, so
// the first export covers the stream's whole retained history. A group that
// already exists is left as it is (its position is kept).
func (g *AuditGroup) CreateGroup(ctx context.Context) error {
	ctx, cancel, err := g.s.opContext(ctx, "xgroup create")
	if err != nil {
		return err
	}
	defer cancel()
	err = g.s.client.XGroupCreateMkStream(ctx, g.s.stream, g.group, "0").Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return nil
	}
	return g.s.translate("xgroup create", err)
}

// ReadNew reads up to count entries never delivered to any consumer of the
// group (XREADGROUP ... COUNT count BLOCK block STREAMS <stream> >),
// waiting up to block for one to arrive. They become pending for this
// consumer. No entry: empty slices and a nil error.
func (g *AuditGroup) ReadNew(ctx context.Context, count int, block time.Duration) (events []store.Event, skipped []string, err error) {
	if block <= 0 {
		block = time.Millisecond // BLOCK 0 would wait forever
	}
	return g.read(ctx, ">", count, block)
}

// ReadPending reads up to count entries pending for this consumer with ids
// after after ("0": from the first), without waiting: what this consumer
// read and did not acknowledge before it stopped.
func (g *AuditGroup) ReadPending(ctx context.Context, after string, count int) (events []store.Event, skipped []string, err error) {
	if after == "" {
		after = "0"
	}
	return g.read(ctx, after, count, -1)
}

func (g *AuditGroup) read(ctx context.Context, id string, count int, block time.Duration) ([]store.Event, []string, error) {
	const op = "xreadgroup"
	if err := ctx.Err(); err != nil {
		return nil, nil, g.s.translate(op, err)
	}
	// The operation's deadline covers the wait on top of the usual bound.
	ctx, cancel := context.WithTimeout(ctx, g.s.opTimeout+max(block, 0))
	defer cancel()
	streams, err := g.s.client.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group: g.group, Consumer: g.consumer, Streams: []string{g.s.stream, id},
		Count: int64(boundCount(count)), Block: block,
	}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, g.s.translate(op, err)
	}
	var msgs []goredis.XMessage
	for _, st := range streams {
		msgs = append(msgs, st.Messages...)
	}
	events, skipped := decodeEntries(op, msgs)
	return events, skipped, nil
}

// Claim takes over up to count entries pending for any consumer of the
// group for at least minIdle (XAUTOCLAIM <stream> <group> <consumer>
// minIdle start COUNT count), scanning the group's pending list from start
// ("0-0": the beginning). It returns the claimed entries, now pending for
// this consumer, and the cursor for the next call ("0-0" once the scan is
// complete). Entries trimmed from the stream meanwhile are dropped from the
// pending list by Redis itself.
func (g *AuditGroup) Claim(ctx context.Context, minIdle time.Duration, start string, count int) (events []store.Event, skipped []string, next string, err error) {
	const op = "xautoclaim"
	if start == "" {
		start = "0-0"
	}
	ctx, cancel, err := g.s.opContext(ctx, op)
	if err != nil {
		return nil, nil, "", err
	}
	defer cancel()
	msgs, next, err := g.s.client.XAutoClaim(ctx, &goredis.XAutoClaimArgs{
		Stream: g.s.stream, Group: g.group, Consumer: g.consumer, MinIdle: minIdle, Start: start, Count: int64(boundCount(count)),
	}).Result()
	if err != nil {
		return nil, nil, "", g.s.translate(op, err)
	}
	events, skipped = decodeEntries(op, msgs)
	return events, skipped, next, nil
}

// Touch resets the idle time of ids pending for this consumer (XCLAIM
// <stream> <group> <consumer> minIdle ids... JUSTID), so that other
// consumers, which claim entries idle for longer, leave alone the entries
// this one is still working on. Only entries idle for at least minIdle are
// touched: an entry another consumer claimed since (and so touched) is not
// taken back.
func (g *AuditGroup) Touch(ctx context.Context, minIdle time.Duration, ids []string) error {
	const op = "xclaim"
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel, err := g.s.opContext(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	err = g.s.client.XClaimJustID(ctx, &goredis.XClaimArgs{
		Stream: g.s.stream, Group: g.group, Consumer: g.consumer, MinIdle: minIdle, Messages: ids,
	}).Err()
	if errors.Is(err, goredis.Nil) {
		return nil
	}
	return g.s.translate(op, err)
}

// Ack acknowledges ids (XACK <stream> <group> ids...): they leave the
// group's pending list and are never delivered again.
func (g *AuditGroup) Ack(ctx context.Context, ids []string) error {
	const op = "xack"
	if len(ids) == 0 {
		return nil
	}
	ctx, cancel, err := g.s.opContext(ctx, op)
	if err != nil {
		return err
	}
	defer cancel()
	return g.s.translate(op, g.s.client.XAck(ctx, g.s.stream, g.group, ids...).Err())
}

// boundCount keeps a COUNT between 1 and maxGroupCount.
func boundCount(n int) int {
	return min(max(n, 1), maxGroupCount)
}

// decodeEntries decodes stream entries into events; the ids of entries
// without a decodable event (trimmed while pending: no fields) are returned
// apart.
func decodeEntries(op string, msgs []goredis.XMessage) ([]store.Event, []string) {
	events := make([]store.Event, 0, len(msgs))
	var skipped []string
	for _, m := range msgs {
		ev, err := decodeEvent(op, m)
		if err != nil {
			skipped = append(skipped, m.ID)
			continue
		}
		events = append(events, ev)
	}
	return events, skipped
}

// forgetConsumers deletes, atomically, the consumers of group ARGV[1] that
// have no pending entry and have been idle for ARGV[2] ms or more, except
// ARGV[3] (the caller). A consumer with pending entries is never deleted
// (XGROUP DELCONSUMER would drop its entries from the pending list), and the
// check and the deletion cannot be separated by a read.
var forgetConsumers = goredis.NewScript(`
local gone = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i+1]
    elseif c[i] == 'pending' then pending = c[i+1]
    elseif c[i] == 'idle' then idle = c[i+1] end
  end
  if name ~= ARGV[3] and pending == 0 and idle ~= nil and idle >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    gone = gone + 1
  end
end
return gone
`)

// ForgetIdleConsumers deletes the group's consumers other than this one
// that hold no pending entry and have been idle for at least idle (replicas
// gone for good, under names that will not come back), and returns how many.
func (g *AuditGroup) ForgetIdleConsumers(ctx context.Context, idle time.Duration) (int, error) {
	const op = "forget consumers"
	ctx, cancel, err := g.s.opContext(ctx, op)
	if err != nil {
		return 0, err
	}
	defer cancel()
	n, err := forgetConsumers.Run(ctx, g.s.client, []string{g.s.stream}, g.group, idle.Milliseconds(), g.consumer).Int()
	if err != nil {
		return 0, g.s.translate(op, err)
	}
	return n, nil
}
