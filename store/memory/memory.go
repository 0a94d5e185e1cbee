// Package memory is the embedded, in-process store.Store backend: replay
// markers and audit events live in this process's memory and are lost when it
// exits. It is the default backend for a single broker instance; deployments
// with several replicas need a shared backend (store/redis) so that a replayed
// assertion is caught whichever replica sees it.
//
// Audit event ids have the form "<unix-ms>-<seq>" like Redis stream ids, and
// are assigned with the same algorithm: the millisecond part is
// max(now, last), so ids keep increasing even if the wall clock steps back.
// Event times are kept at full (nanosecond) precision, normalised to UTC.
//
// Filtered listing uses in-memory indexes: for each filter field (subject,
// caller, source and target domain, outcome) a map from value to the
// ascending positions of the events carrying it, and the positions of the
// skewed events: those whose Time lies more than a second (inStep) from
// their append time (the millisecond of their id). Trimming drops the
// oldest events, whose positions are exactly the heads of their lists: the
// indexes shrink with the events.
//
// List walks candidates newest first and checks the whole filter on each:
// the shortest index list among the filter's fields (every event when no
// field is set). A time range [Start, End) narrows the walk to the ids of
// the events in step with it, [floor(Start) - 1s, ceil(End) + 1s) (found
// by binary search), plus the skewed events outside those ids, walked
// before and after them. So a page costs in proportion to the page, plus
// the candidates that do not match the other fields, plus the events
// appended within a second of the range's ends; store.CollectPage bounds
// the work of one call and states the page guarantee. This is the same
// walk as the Redis backend's.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

// DefaultMaxEvents is the audit retention used when Options.MaxEvents is not positive.
const DefaultMaxEvents = 100_000

// minSweep is the replay map size below which expired markers are not swept.
const minSweep = 1024

// inStep is how far an event's Time may lie from its append time for the
// event to be found by the id range of a time-bounded List; events further
// off are listed apart (see the package comment).
const inStep = time.Second

// Options configures a Store.
type Options struct {
	// MaxEvents bounds the audit log: once it holds more events, the oldest
	// are dropped. Zero or negative means DefaultMaxEvents.
	MaxEvents int
	// AuditRetention, when positive, drops events appended longer ago than
	// that (by their id's millisecond, i.e. append time): on every Append,
	// List and Get, so an expired event is never returned. MaxEvents still
	// bounds the count.
	AuditRetention time.Duration
}

// Store is an in-memory store.Store. The zero value is not usable; use New.
// A Store is safe for concurrent use.
type Store struct {
	maxEvents int
	retention time.Duration    // 0: no time bound
	now       func() time.Time // wall clock; replaced only by tests

	mu     sync.Mutex
	closed bool

	// replay maps ReplayKey.Digest() to the marker's deadline.
	replay map[string]time.Time
	// nextSweep is the replay map size at which expired markers are pruned.
	// After a sweep it is twice the surviving size, so pruning costs O(1)
	// amortised per Mark and the map holds at most about twice the live
	// markers (plus minSweep).
	nextSweep int

	// cache holds token cache entries and leases, by key.
	cache  map[string]cacheEntry
	leases map[string]time.Time
	// nextCacheSweep is the cache size at which expired entries are pruned.
	nextCacheSweep int

	// events is ordered by id (oldest first); events[i] has id ids[i].
	events []store.Event
	ids    []eventID
	lastID eventID
	// base is the position of events[0] among every event ever appended:
	// the event at position p is events[p-base].
	base uint64
	// index maps a filter field's value to the ascending positions of the
	// events carrying it (see the package comment).
	index map[indexKey][]uint64
	// skew holds the ascending positions of the skewed events.
	skew []uint64
	// listBudget and listSlice bound List's work (store.CollectPage);
	// changed only by tests.
	listBudget, listSlice int

	// groups and wake serve the audit export (export.go).
	groups map[string]*exportGroup
	wake   chan struct{} // closed by Append, for ReadNew waiting
}

// indexKey names one value of one filter field.
type indexKey struct {
	field byte // 's'ubject, 'c'aller, 'f'rom (source), 't'arget, 'o'utcome
	value string
}

// eventKeys returns the index keys of e (its non-empty filter fields).
func eventKeys(dst []indexKey, e *store.Event) []indexKey {
	return appendKeys(dst, e.Subject, e.Caller, e.SourceDomain, e.TargetDomain, e.Outcome)
}

// filterKeys returns the index keys a filter needs (its non-empty fields).
func filterKeys(f store.Filter) []indexKey {
	return appendKeys(nil, f.Subject, f.Caller, f.SourceDomain, f.TargetDomain, f.Outcome)
}

func appendKeys(dst []indexKey, subject, caller, source, target string, o store.Outcome) []indexKey {
	for _, k := range []indexKey{{'s', subject}, {'c', caller}, {'f', source}, {'t', target}} {
		if k.value != "" {
			dst = append(dst, k)
		}
	}
	if o != store.OutcomeUnspecified {
		dst = append(dst, indexKey{'o', strconv.Itoa(int(o))})
	}
	return dst
}

var _ store.Store = (*Store)(nil)

// New returns an empty Store.
func New(opts Options) *Store {
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
	}
	return &Store{
		maxEvents: opts.MaxEvents,
		retention: max(opts.AuditRetention, 0),
		index:     make(map[indexKey][]uint64),
		now:       time.Now,
		replay:    make(map[string]time.Time),
		nextSweep: minSweep,
		cache:     make(map[string]cacheEntry),
		leases:    make(map[string]time.Time),

		nextCacheSweep: minSweep,
		listBudget:     store.ListBudget,
		listSlice:      store.ListSlice,
	}
}

// Mark implements store.ReplayGuard.
func (s *Store) Mark(ctx context.Context, key store.ReplayKey, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/memory: mark: %w", err)
	}
	if key.Target == "" || key.Issuer == "" || key.JTI == "" {
		return fmt.Errorf("store/memory: mark: replay key has an empty part: %w", store.ErrInvalidArgument)
	}
	now := s.now()
	if !until.After(now) {
		return fmt.Errorf("store/memory: mark: deadline is not in the future: %w", store.ErrInvalidArgument)
	}
	digest := key.Digest()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed("mark")
	}
	if prev, ok := s.replay[digest]; ok && now.Before(prev) {
		return fmt.Errorf("store/memory: mark: %w", store.ErrReplayed)
	}
	s.replay[digest] = until
	if len(s.replay) >= s.nextSweep {
		s.sweepLocked(now)
	}
	return nil
}

// sweepLocked drops expired replay markers. s.mu must be held.
func (s *Store) sweepLocked(now time.Time) {
	for d, until := range s.replay {
		if !now.Before(until) {
			delete(s.replay, d)
		}
	}
	s.nextSweep = max(2*len(s.replay), minSweep)
}

// Append implements store.AuditLog. The stored event is a deep copy of e,
// with Time set to now when zero and converted to UTC; e is not modified.
func (s *Store) Append(ctx context.Context, e *store.Event) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("store/memory: append: %w", err)
	}
	if e == nil {
		return "", fmt.Errorf("store/memory: append: nil event: %w", store.ErrInvalidArgument)
	}
	ev := cloneEvent(e)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errClosed("append")
	}
	now := s.now()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC().Round(0)

	// Same as Redis: ms = max(now, last ms); seq restarts at 0 on a new ms.
	id := eventID{ms: uint64(max(now.UnixMilli(), 0))}
	if id.ms <= s.lastID.ms {
		id = eventID{ms: s.lastID.ms, seq: s.lastID.seq + 1}
	}
	s.lastID = id
	ev.ID = id.String()

	pos := s.base + uint64(len(s.events))
	var keys [5]indexKey
	for _, k := range eventKeys(keys[:0], &ev) {
		s.index[k] = append(s.index[k], pos)
	}
	if skewed(ev.Time, id) {
		s.skew = append(s.skew, pos)
	}
	s.events = append(s.events, ev)
	s.ids = append(s.ids, id)
	s.trimLocked(now)
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
	return ev.ID, nil
}

// trimLocked drops the events beyond MaxEvents and those older than the
// retention, with their index entries. s.mu must be held.
func (s *Store) trimLocked(now time.Time) {
	n := max(len(s.events)-s.maxEvents, 0)
	if s.retention > 0 {
		cutoff := uint64(max(now.Add(-s.retention).UnixMilli(), 0))
		old := sort.Search(len(s.ids), func(j int) bool { return s.ids[j].ms >= cutoff })
		n = max(n, old)
	}
	if n == 0 {
		return
	}
	var keys [5]indexKey
	for i := range n {
		// The oldest events' positions head their lists.
		for _, k := range eventKeys(keys[:0], &s.events[i]) {
			if l := s.index[k]; len(l) <= 1 {
				delete(s.index, k)
			} else {
				s.index[k] = l[1:]
			}
		}
	}
	k := sort.Search(len(s.skew), func(j int) bool { return s.skew[j] >= s.base+uint64(n) })
	s.skew = s.skew[k:]
	// Clear dropped entries so the garbage collector can reclaim them
	// before append reallocates the backing arrays.
	clear(s.events[:n])
	s.events = s.events[n:]
	s.ids = s.ids[n:]
	s.base += uint64(n)
}

// List implements store.AuditLog with store.CollectPage over a walk of the
// events, newest first, in steps of at most store.ListSlice candidates
// (one hold of the lock each; see the package comment for the walk).
func (s *Store) List(ctx context.Context, f store.Filter, pageSize int, pageToken string) ([]store.Event, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("store/memory: list: %w", err)
	}
	switch {
	case pageSize < 0:
		return nil, "", fmt.Errorf("store/memory: list: negative page size: %w", store.ErrInvalidArgument)
	case pageSize == 0:
		pageSize = store.DefaultPageSize
	case pageSize > store.MaxPageSize:
		pageSize = store.MaxPageSize
	}
	w := s.newWalk(f)
	if pageToken != "" {
		var ok bool
		if w.upper, ok = parseEventID(pageToken); !ok {
			return nil, "", fmt.Errorf("store/memory: list: malformed page token: %w", store.ErrInvalidArgument)
		}
		w.hasUpper = true
	}
	return store.CollectPage(ctx, pageSize, s.listBudget, s.listSlice, w.step)
}

// newWalk returns the walk of f from the newest event.
func (s *Store) newWalk(f store.Filter) *walk {
	w := &walk{s: s, f: f, keys: filterKeys(f), timed: !f.Start.IsZero() || !f.End.IsZero()}
	if !f.End.IsZero() {
		// In step: Time < End gives id ms <= Time ms + tolerance < ceil(End) + tolerance.
		w.stepHi = eventID{ms: uint64(max(store.CeilMillis(f.End)+inStep.Milliseconds(), 0))}
		w.hasStepHi = true
	}
	if !f.Start.IsZero() {
		// In step: Time >= Start gives id ms >= floor(Start) - tolerance.
		w.stepLo = eventID{ms: uint64(max(store.FloorMillis(f.Start)-inStep.Milliseconds(), 0))}
	}
	return w
}

// walk is the position of one List call's walk (see the package comment).
type walk struct {
	s     *Store
	f     store.Filter
	keys  []indexKey
	timed bool // f has a time range
	// upper: the walk continues strictly below this id (when hasUpper).
	upper    eventID
	hasUpper bool
	// [stepLo, stepHi) holds the ids of the in-step events of the time
	// range (stepHi unbounded unless hasStepHi).
	stepLo, stepHi eventID
	hasStepHi      bool
}

// segment is a part of the walk: the candidates of one source (a list of
// positions, or every position when all) between two positions.
type segment struct {
	list     []uint64
	all      bool
	from, to uint64 // positions [from, to)
}

// step implements store.PageStep under the lock.
func (w *walk) step(ctx context.Context, need, limit int) ([]store.Event, int, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("store/memory: list: %w", err)
	}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, false, errClosed("list")
	}
	s.trimLocked(s.now())
	// pos(id) is the position of the first event with an id >= id.
	pos := func(id eventID) uint64 {
		return s.base + uint64(sort.Search(len(s.ids), func(j int) bool { return !s.ids[j].less(id) }))
	}
	end := s.base + uint64(len(s.ids))
	if w.hasUpper {
		end = pos(w.upper)
	}
	// The source of the in-step candidates: the shortest index list among
	// the filter's fields, or every event.
	var drive []uint64
	all := len(w.keys) == 0
	for i, k := range w.keys {
		if l := s.index[k]; i == 0 || len(l) < len(drive) {
			drive = l
		}
	}
	var segs [3]segment
	n := 0
	if !w.timed {
		segs[0] = segment{list: drive, all: all, from: s.base, to: end}
		n = 1
	} else {
		lo := pos(w.stepLo)
		hi := end
		if w.hasStepHi {
			hi = min(pos(w.stepHi), end)
		}
		lo = min(lo, hi)
		// Newest first: skewed events above the in-step range, the in-step
		// range, skewed events below it. Skewed events inside the range are
		// walked with it (they are in the index lists too).
		segs[0] = segment{list: s.skew, from: hi, to: end}
		segs[1] = segment{list: drive, all: all, from: lo, to: hi}
		segs[2] = segment{list: s.skew, from: s.base, to: lo}
		n = 3
	}
	var (
		found    []store.Event
		examined int
		last     eventID
	)
	visit := func(p uint64) bool { // reports whether the step is over
		if examined == limit {
			return true
		}
		examined++
		e := &s.events[p-s.base]
		last = s.ids[p-s.base]
		if w.f.Match(e) {
			found = append(found, cloneEvent(e))
		}
		return len(found) == need
	}
	for _, sg := range segs[:n] {
		if sg.from >= sg.to {
			continue
		}
		if sg.all {
			for p := sg.to; p > sg.from; p-- {
				if visit(p - 1) {
					return w.stopped(found, examined, last)
				}
			}
			continue
		}
		l := sg.list
		for j := sort.Search(len(l), func(j int) bool { return l[j] >= sg.to }) - 1; j >= 0 && l[j] >= sg.from; j-- {
			if visit(l[j]) {
				return w.stopped(found, examined, last)
			}
		}
	}
	return found, examined, true, nil
}

// stopped records where a step stopped before the end of the walk.
func (w *walk) stopped(found []store.Event, examined int, last eventID) ([]store.Event, int, bool, error) {
	if examined > 0 {
		w.upper, w.hasUpper = last, true
	}
	return found, examined, false, nil
}

// skewed reports whether an event's Time lies further than inStep from its
// append time (the millisecond of its id).
func skewed(t time.Time, id eventID) bool {
	d := store.FloorMillis(t) - int64(id.ms)
	return d > inStep.Milliseconds() || d < -inStep.Milliseconds()
}

// Get implements store.AuditLog. A malformed id gives store.ErrInvalidArgument.
func (s *Store) Get(ctx context.Context, id string) (store.Event, error) {
	if err := ctx.Err(); err != nil {
		return store.Event{}, fmt.Errorf("store/memory: get: %w", err)
	}
	want, ok := parseEventID(id)
	if !ok {
		return store.Event{}, fmt.Errorf("store/memory: get: malformed event id: %w", store.ErrInvalidArgument)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Event{}, errClosed("get")
	}
	s.trimLocked(s.now())
	i := sort.Search(len(s.ids), func(j int) bool { return !s.ids[j].less(want) })
	if i == len(s.ids) || s.ids[i] != want {
		return store.Event{}, fmt.Errorf("store/memory: get: %w", store.ErrNotFound)
	}
	return cloneEvent(&s.events[i]), nil
}

// Ping implements store.Store: it fails with store.ErrUnavailable once the
// Store is closed.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/memory: ping: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed("ping")
	}
	return nil
}

// Close implements store.Store. It drops all state; later calls fail with
// store.ErrUnavailable. Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.replay = nil
	s.events = nil
	s.ids = nil
	s.index = nil
	s.skew = nil
	s.groups = nil
	return nil
}

func errClosed(op string) error {
	return fmt.Errorf("store/memory: %s: store is closed: %w", op, store.ErrUnavailable)
}

// cloneEvent returns a copy of e sharing no slice with it.
func cloneEvent(e *store.Event) store.Event {
	c := *e
	c.Scopes = cloneSlice(e.Scopes)
	c.Hops = cloneSlice(e.Hops)
	c.AssertionAudience = cloneSlice(e.AssertionAudience)
	c.TranscribedClaims = cloneSlice(e.TranscribedClaims)
	return c
}

// cloneSlice copies s, keeping nil as nil and empty as empty.
func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// eventID is a parsed "<ms>-<seq>" id.
type eventID struct{ ms, seq uint64 }

func (a eventID) less(b eventID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a eventID) String() string { return fmt.Sprintf("%d-%d", a.ms, a.seq) }

// parseEventID parses "<ms>-<seq>", both unsigned 64-bit decimal numbers.
func parseEventID(s string) (eventID, bool) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok {
		return eventID{}, false
	}
	// ParseUint rejects empty strings, signs and anything but digits.
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return eventID{}, false
	}
	seq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil {
		return eventID{}, false
	}
	return eventID{ms: ms, seq: seq}, true
}

type cacheEntry struct {
	value []byte
	until time.Time
}

// CacheGet implements store.TokenCache.
func (s *Store) CacheGet(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store/memory: cache get: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed("cache get")
	}
	e, ok := s.cache[key]
	if !ok || !now.Before(e.until) {
		return nil, fmt.Errorf("store/memory: cache get: %w", store.ErrNotFound)
	}
	return bytes.Clone(e.value), nil
}

// CachePut implements store.TokenCache.
func (s *Store) CachePut(ctx context.Context, key string, value []byte, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store/memory: cache put: %w", err)
	}
	now := s.now()
	if key == "" || !until.After(now) {
		return fmt.Errorf("store/memory: cache put: empty key or deadline not in the future: %w", store.ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed("cache put")
	}
	s.cache[key] = cacheEntry{value: bytes.Clone(value), until: until}
	s.maybeSweepCacheLocked(now)
	return nil
}

// maybeSweepCacheLocked drops expired cache entries and leases once the two
// maps together reach nextCacheSweep, then sets it to twice the survivors:
// O(1) amortised per insert (CachePut and CacheLease both insert), and the
// maps hold at most about twice the live entries and leases (plus
// minSweep). s.mu must be held.
func (s *Store) maybeSweepCacheLocked(now time.Time) {
	if len(s.cache)+len(s.leases) < s.nextCacheSweep {
		return
	}
	for k, e := range s.cache {
		if !now.Before(e.until) {
			delete(s.cache, k)
		}
	}
	for k, until := range s.leases {
		if !now.Before(until) {
			delete(s.leases, k)
		}
	}
	s.nextCacheSweep = max(2*(len(s.cache)+len(s.leases)), minSweep)
}

// CacheLease implements store.TokenCache.
func (s *Store) CacheLease(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("store/memory: cache lease: %w", err)
	}
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("store/memory: cache lease: empty key or ttl: %w", store.ErrInvalidArgument)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed("cache lease")
	}
	if until, held := s.leases[key]; held && now.Before(until) {
		return false, nil
	}
	s.leases[key] = now.Add(ttl)
	// Leases taken without a CachePut after them (the exchange failed)
	// would otherwise never be swept.
	s.maybeSweepCacheLocked(now)
	return true, nil
}
