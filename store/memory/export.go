package memory

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

// maxGroupCount bounds every read of a group, as in store/redis.
const maxGroupCount = 1000

// AuditGroup reads the memory audit trail as one consumer of a named group,
// for an exporter, with the semantics of store/redis.AuditGroup (a Redis
// consumer group): entries a consumer read stay pending until acknowledged,
// so an exporter that stops before Ack loses nothing: a new exporter under
// the same name reads them again (ReadPending), or one under another name
// takes them over once idle (Claim). The group's state lives in the Store:
// it lasts as long as the process, like the trail itself.
//
// Pending entries are bounded by the trail: an entry trimmed from it
// (MaxEvents, AuditRetention) while pending is dropped, as Redis drops an
// entry trimmed from the stream from its pending list.
type AuditGroup struct {
	s        *Store
	group    string
	consumer string
}

// exportGroup is one group's state; Store.mu guards it.
type exportGroup struct {
	// last is the id of the last entry delivered to any consumer (zero: none).
	last eventID
	// pending holds the entries delivered and not acknowledged, in id order.
	pending []pendingEntry
	// seen is when each consumer last used the group.
	seen map[string]time.Time
}

type pendingEntry struct {
	id        eventID
	consumer  string
	delivered time.Time // last delivery (or touch): the start of its idle time
}

// AuditGroup returns a reader of the audit trail as consumer of group.
// Neither may be empty.
func (s *Store) AuditGroup(group, consumer string) (*AuditGroup, error) {
	if group == "" || consumer == "" {
		return nil, fmt.Errorf("store/memory: audit group: empty group or consumer name: %w", store.ErrInvalidArgument)
	}
	return &AuditGroup{s: s, group: group, consumer: consumer}, nil
}

// Consumer is the consumer name.
func (g *AuditGroup) Consumer() string { return g.consumer }

// CreateGroup creates the group if it does not exist: a new group starts at
// the oldest event the trail holds. An existing group keeps its position.
func (g *AuditGroup) CreateGroup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/memory: create group: %w", err)
	}
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	if g.s.closed {
		return errClosed("create group")
	}
	if g.s.groups == nil {
		g.s.groups = make(map[string]*exportGroup)
	}
	if _, ok := g.s.groups[g.group]; !ok {
		g.s.groups[g.group] = &exportGroup{seen: make(map[string]time.Time)}
	}
	g.s.groups[g.group].seen[g.consumer] = g.s.now()
	return nil
}

// lockedGroup locks the store, trims the trail (retention), drops the
// pending entries trimmed from it and returns the group; on error the store
// is unlocked. The caller unlocks.
func (g *AuditGroup) lockedGroup(ctx context.Context, op string) (*exportGroup, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("store/memory: %s: %w", op, err)
	}
	g.s.mu.Lock()
	if g.s.closed {
		g.s.mu.Unlock()
		return nil, time.Time{}, errClosed(op)
	}
	grp := g.s.groups[g.group]
	if grp == nil {
		g.s.mu.Unlock()
		return nil, time.Time{}, fmt.Errorf("store/memory: %s: no group %q (CreateGroup first): %w", op, g.group, store.ErrNotFound)
	}
	now := g.s.now()
	g.s.trimLocked(now)
	// The trail only loses its oldest events: the pending entries trimmed
	// from it are a prefix of the (id-ordered) pending list.
	n := len(grp.pending)
	if len(g.s.ids) > 0 {
		first := g.s.ids[0]
		n = sort.Search(len(grp.pending), func(i int) bool { return !grp.pending[i].id.less(first) })
	}
	if n > 0 {
		clear(grp.pending[:n])
		grp.pending = grp.pending[n:]
	}
	grp.seen[g.consumer] = now
	return grp, now, nil
}

// ReadNew reads up to count events never delivered to any consumer of the
// group, waiting up to block for one; they become pending for this
// consumer. No event: empty slices and a nil error. skipped is always empty
// (the memory trail holds only decodable events).
func (g *AuditGroup) ReadNew(ctx context.Context, count int, block time.Duration) (events []store.Event, skipped []string, err error) {
	const op = "read new"
	deadline := time.Now().Add(max(block, 0))
	for {
		grp, now, err := g.lockedGroup(ctx, op)
		if err != nil {
			return nil, nil, err
		}
		i := sort.Search(len(g.s.ids), func(j int) bool { return grp.last.less(g.s.ids[j]) })
		if end := min(i+boundCount(count), len(g.s.ids)); end > i {
			events = make([]store.Event, 0, end-i)
			for j := i; j < end; j++ {
				events = append(events, cloneEvent(&g.s.events[j]))
				grp.pending = append(grp.pending, pendingEntry{id: g.s.ids[j], consumer: g.consumer, delivered: now})
			}
			grp.last = g.s.ids[end-1]
			g.s.mu.Unlock()
			return events, nil, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			g.s.mu.Unlock()
			return nil, nil, nil
		}
		if g.s.wake == nil {
			g.s.wake = make(chan struct{})
		}
		wake := g.s.wake
		g.s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("store/memory: %s: %w", op, ctx.Err())
		case <-t.C:
			return nil, nil, nil
		case <-wake:
			t.Stop()
		}
	}
}

// ReadPending reads up to count entries pending for this consumer with ids
// after after ("0" or "": from the first), without waiting, and restarts
// their idle time.
func (g *AuditGroup) ReadPending(ctx context.Context, after string, count int) (events []store.Event, skipped []string, err error) {
	const op = "read pending"
	var from eventID
	if after != "" && after != "0" {
		var ok bool
		if from, ok = parseEventID(after); !ok {
			return nil, nil, fmt.Errorf("store/memory: %s: malformed id %q: %w", op, after, store.ErrInvalidArgument)
		}
	}
	grp, now, err := g.lockedGroup(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	defer g.s.mu.Unlock()
	count = boundCount(count)
	start := sort.Search(len(grp.pending), func(i int) bool { return from.less(grp.pending[i].id) })
	for i := start; i < len(grp.pending) && len(events)+len(skipped) < count; i++ {
		p := &grp.pending[i]
		if p.consumer != g.consumer {
			continue
		}
		p.delivered = now
		if ev, ok := g.eventLocked(p.id); ok {
			events = append(events, ev)
		} else {
			skipped = append(skipped, p.id.String())
		}
	}
	return events, skipped, nil
}

// Claim takes over up to count entries pending for any consumer of the
// group for at least minIdle, scanning the pending list from start ("0-0":
// the beginning). It returns them, now pending for this consumer, and the
// cursor of the next call ("0-0" once the scan is complete).
func (g *AuditGroup) Claim(ctx context.Context, minIdle time.Duration, start string, count int) (events []store.Event, skipped []string, next string, err error) {
	const op = "claim"
	from, ok := parseEventID(start)
	if start == "" {
		from, ok = eventID{}, true
	}
	if !ok {
		return nil, nil, "", fmt.Errorf("store/memory: %s: malformed cursor %q: %w", op, start, store.ErrInvalidArgument)
	}
	grp, now, err := g.lockedGroup(ctx, op)
	if err != nil {
		return nil, nil, "", err
	}
	defer g.s.mu.Unlock()
	count = boundCount(count)
	i := sort.Search(len(grp.pending), func(i int) bool { return !grp.pending[i].id.less(from) })
	for ; i < len(grp.pending) && len(events)+len(skipped) < count; i++ {
		p := &grp.pending[i]
		if now.Sub(p.delivered) < minIdle {
			continue
		}
		p.consumer, p.delivered = g.consumer, now
		if ev, ok := g.eventLocked(p.id); ok {
			events = append(events, ev)
		} else {
			skipped = append(skipped, p.id.String())
		}
	}
	next = "0-0"
	if i < len(grp.pending) {
		next = grp.pending[i].id.String()
	}
	return events, skipped, next, nil
}

// Touch restarts the idle time of those of ids pending (for any consumer)
// and idle for at least minIdle, and makes them this consumer's: like
// XCLAIM, an entry another consumer claimed since is not taken back.
func (g *AuditGroup) Touch(ctx context.Context, minIdle time.Duration, ids []string) error {
	const op = "touch"
	if len(ids) == 0 {
		return nil
	}
	parsed, err := parseIDs(op, ids)
	if err != nil {
		return err
	}
	grp, now, err := g.lockedGroup(ctx, op)
	if err != nil {
		return err
	}
	defer g.s.mu.Unlock()
	for _, id := range parsed {
		if i, ok := grp.find(id); ok {
			if p := &grp.pending[i]; now.Sub(p.delivered) >= minIdle {
				p.consumer, p.delivered = g.consumer, now
			}
		}
	}
	return nil
}

// Ack acknowledges ids: they leave the pending list and are never
// delivered again. Ids not pending are ignored.
func (g *AuditGroup) Ack(ctx context.Context, ids []string) error {
	const op = "ack"
	if len(ids) == 0 {
		return nil
	}
	parsed, err := parseIDs(op, ids)
	if err != nil {
		return err
	}
	grp, _, err := g.lockedGroup(ctx, op)
	if err != nil {
		return err
	}
	defer g.s.mu.Unlock()
	acked := make(map[eventID]bool, len(parsed))
	for _, id := range parsed {
		if _, ok := grp.find(id); ok {
			acked[id] = true
		}
	}
	if len(acked) == 0 {
		return nil
	}
	kept := grp.pending[:0]
	for _, p := range grp.pending {
		if !acked[p.id] {
			kept = append(kept, p)
		}
	}
	clear(grp.pending[len(kept):])
	grp.pending = kept
	return nil
}

// ForgetIdleConsumers deletes the group's consumers other than this one
// that hold no pending entry and have been idle for at least idle, and
// returns how many.
func (g *AuditGroup) ForgetIdleConsumers(ctx context.Context, idle time.Duration) (int, error) {
	grp, now, err := g.lockedGroup(ctx, "forget consumers")
	if err != nil {
		return 0, err
	}
	defer g.s.mu.Unlock()
	holding := make(map[string]bool)
	for _, p := range grp.pending {
		holding[p.consumer] = true
	}
	n := 0
	for name, seen := range grp.seen {
		if name != g.consumer && !holding[name] && now.Sub(seen) >= idle {
			delete(grp.seen, name)
			n++
		}
	}
	return n, nil
}

// Pending is the number of entries delivered to the group's consumers and
// not acknowledged (Redis: XPENDING's count).
func (g *AuditGroup) Pending(ctx context.Context) (int, error) {
	grp, _, err := g.lockedGroup(ctx, "pending")
	if err != nil {
		return 0, err
	}
	defer g.s.mu.Unlock()
	return len(grp.pending), nil
}

// find returns the position of id in the pending list.
func (grp *exportGroup) find(id eventID) (int, bool) {
	i := sort.Search(len(grp.pending), func(i int) bool { return !grp.pending[i].id.less(id) })
	return i, i < len(grp.pending) && grp.pending[i].id == id
}

// eventLocked returns a copy of the trail's event id. s.mu must be held.
func (g *AuditGroup) eventLocked(id eventID) (store.Event, bool) {
	ids := g.s.ids
	i := sort.Search(len(ids), func(j int) bool { return !ids[j].less(id) })
	if i == len(ids) || ids[i] != id {
		return store.Event{}, false
	}
	return cloneEvent(&g.s.events[i]), true
}

func parseIDs(op string, ids []string) ([]eventID, error) {
	out := make([]eventID, 0, len(ids))
	for _, s := range ids {
		id, ok := parseEventID(s)
		if !ok {
			return nil, fmt.Errorf("store/memory: %s: malformed id %q: %w", op, s, store.ErrInvalidArgument)
		}
		out = append(out, id)
	}
	return out, nil
}

// boundCount keeps a count between 1 and maxGroupCount.
func boundCount(n int) int {
	return min(max(n, 1), maxGroupCount)
}
