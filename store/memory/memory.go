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
// ascending positions of the events carrying it. A filtered List walks the
// shortest list among the filter's fields, newest first, and checks the
// other fields on the events it meets, so its cost follows the answer, not
// the trail. Trimming drops the oldest events, whose positions are exactly
// the heads of their lists: the indexes shrink with the events.
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
	// Clear dropped entries so the garbage collector can reclaim them
	// before append reallocates the backing arrays.
	clear(s.events[:n])
	s.events = s.events[n:]
	s.ids = s.ids[n:]
	s.base += uint64(n)
}

// List implements store.AuditLog. next is empty exactly when no further
// event matches f.
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
	var after eventID
	if pageToken != "" {
		var ok bool
		if after, ok = parseEventID(pageToken); !ok {
			return nil, "", fmt.Errorf("store/memory: list: malformed page token: %w", store.ErrInvalidArgument)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, "", errClosed("list")
	}
	s.trimLocked(s.now())
	// Start below the first id >= the token (exclusive continuation).
	end := len(s.ids)
	if pageToken != "" {
		end = sort.Search(len(s.ids), func(j int) bool { return !s.ids[j].less(after) })
	}
	var out []store.Event
	// add reports whether the walk is over: a match beyond a full page.
	add := func(i int) bool {
		if !f.Match(&s.events[i]) {
			return false
		}
		if len(out) == pageSize {
			return true
		}
		out = append(out, cloneEvent(&s.events[i]))
		return false
	}
	if keys := filterKeys(f); len(keys) > 0 {
		// Walk the shortest index list among the filter's fields.
		list := s.index[keys[0]]
		for _, k := range keys[1:] {
			if l := s.index[k]; len(l) < len(list) {
				list = l
			}
		}
		bound := s.base + uint64(end)
		for j := sort.Search(len(list), func(j int) bool { return list[j] >= bound }) - 1; j >= 0; j-- {
			if add(int(list[j] - s.base)) {
				return out, out[len(out)-1].ID, nil
			}
		}
		return out, "", nil
	}
	for i := end - 1; i >= 0; i-- {
		if add(i) {
			// One more match exists beyond this page.
			return out, out[len(out)-1].ID, nil
		}
	}
	return out, "", nil
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
