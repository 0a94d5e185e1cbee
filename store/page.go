package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Work bounds of one List call, shared by the backends.
const (
	// ListBudget is how many candidate entries (index entries, or stream
	// entries for a listing without a filter field) one List call examines
	// before it may return a page that is not full: past it, the call
	// stops at the first point where it holds at least one event and knows
	// of one more (see CollectPage).
	ListBudget = 100 * MaxPageSize
	// ListSlice bounds the entries one step of a walk examines (one Redis
	// script call, or one hold of the memory store's lock), so that a long
	// walk never blocks the backend's other clients for long.
	ListSlice = MaxPageSize
)

// PageStep is one bounded step of a backend's List walk. It continues where
// the previous step stopped (the backend keeps the position), examines at
// most limit candidates, newest first, and returns the events matching the
// filter that it met (at most need of them, in order: it stops at the
// need-th), how many candidates it examined, and whether the walk has met
// every candidate (exhausted). A step that examines nothing must report
// exhausted.
type PageStep func(ctx context.Context, need, limit int) (found []Event, examined int, exhausted bool, err error)

// errNoProgress reports a PageStep that neither examined anything nor
// reported the walk exhausted.
var errNoProgress = errors.New("store: list walk made no progress")

// CollectPage runs step until it can answer a List call of pageSize
// (1..MaxPageSize) events, with this guarantee:
//
//   - the page holds pageSize events, unless the walk is exhausted (the
//     page holds the rest, and next is empty), or it examined more than
//     budget candidates first, or ctx's deadline came close (the budget is
//     spent either way): closer than twice the longest step so far, or
//     than a quarter of the time the call had;
//   - past the budget, the call stops as soon as it holds two matches: it
//     returns all but the last, so a page that is not full still holds at
//     least one event;
//   - a next token is returned only when one more matching event is known
//     (the lookahead), so following next never yields an empty page. The
//     token is the lookahead's id with its sequence number plus one: an id
//     bound, exclusive, under which the next call starts exactly at the
//     lookahead, without walking again the candidates between the page's
//     last event and it (none of them matches). Events appended later have
//     larger ids, so they never enter a walk that started.
//
// Past the budget with fewer than two matches, the call keeps walking until
// ctx ends: then it fails with step's error. A step that fails once ctx has
// ended (it overran the deadline) while the call holds two matches gives
// the short page instead.
func CollectPage(ctx context.Context, pageSize, budget, slice int, step PageStep) ([]Event, string, error) {
	var (
		found    []Event
		examined int
		slowest  time.Duration
	)
	deadline, hasDeadline := ctx.Deadline()
	reserve := time.Until(deadline) / 4
	spent := func() bool {
		return examined >= budget || (hasDeadline && time.Until(deadline) < max(2*slowest, reserve))
	}
	short := func() ([]Event, string, error) {
		k := len(found) - 1
		return found[:k], tokenBefore(found[k-1].ID, found[k].ID), nil
	}
	for {
		want, limit := pageSize+1, slice
		if spent() {
			want = 2
		} else {
			limit = min(slice, max(budget-examined, 1))
		}
		start := time.Now()
		got, n, exhausted, err := step(ctx, want-len(found), limit)
		if err != nil {
			if ctx.Err() != nil && len(found) >= 2 {
				return short()
			}
			return nil, "", err
		}
		slowest = max(slowest, time.Since(start))
		found = append(found, got...)
		examined += n
		switch {
		case len(found) > pageSize:
			return found[:pageSize], tokenBefore(found[pageSize-1].ID, found[pageSize].ID), nil
		case exhausted:
			return found, "", nil
		case spent() && len(found) >= 2:
			return short()
		case n == 0:
			return nil, "", errNoProgress
		}
	}
}

// tokenBefore returns the page token that resumes at lookahead, the next
// match after the page's last event last: lookahead's id plus one in the
// sequence, or last itself if lookahead is not a "<ms>-<seq>" id.
func tokenBefore(last, lookahead string) string {
	msPart, seqPart, ok := strings.Cut(lookahead, "-")
	if !ok {
		return last
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	switch {
	case err1 != nil || err2 != nil:
		return last
	case seq < ^uint64(0):
		return strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10)
	case ms < ^uint64(0):
		return strconv.FormatUint(ms+1, 10) + "-0"
	default:
		return last
	}
}
