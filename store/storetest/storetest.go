// Package storetest is the conformance suite every store.Store backend runs:
// call RunTests from the backend's own test.
//
// Beyond the doc comments of package store, the suite pins down these
// behaviours, which every backend shares:
//   - audit event ids have the Redis stream form "<ms>-<seq>" (two unsigned
//     decimal numbers) and increase with every Append;
//   - Event.Time is kept at full (nanosecond) precision; its location is not
//     kept (compare with time.Equal);
//   - a malformed event id in Get, like a malformed page token in List, gives
//     store.ErrInvalidArgument (a well-formed unknown id gives
//     store.ErrNotFound); a negative page size gives store.ErrInvalidArgument;
//   - events handed to Append and returned by Get and List share no memory
//     with the store;
//   - with an already canceled context, every operation fails with an error
//     matching context.Canceled or store.ErrUnavailable;
//   - a filtered List (subject, caller, source or target domain, outcome,
//     alone or combined, with or without a time range) returns full pages
//     until the answer is exhausted, however rare the matches (the suite
//     uses trails where they are rarer than one in 10,000 entries of every
//     index, and busy trails where a time range's end has over 10,000 newer
//     events), never an empty page after the first, and its token resumes
//     exactly after the page's last event, whatever is appended meanwhile;
//   - with the backend's work budget lowered (Options.SetListBudget), a page
//     may be short, but never empty while more events match, and its token
//     always leads to one more event (see store.CollectPage);
//   - a time range finds every event whose Time lies in it, however far
//     that Time lies from the moment of the append.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

// RunTests runs the conformance suite against the backend made by newStore.
// newStore must return a new, empty store on every call: the subtests run in
// parallel, each with its own store, and RunTests closes each store when its
// subtest ends.
//
// Options add tests that need a backend's help (see Options).
func RunTests(t *testing.T, newStore func(t *testing.T) store.Store, opts ...Options) {
	open := func(t *testing.T) store.Store {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"Mark/FirstThenReplayed", testMarkFirstThenReplayed},
		{"Mark/IndependentParts", testMarkIndependentParts},
		{"Mark/Expiry", testMarkExpiry},
		{"Mark/InvalidDeadline", testMarkInvalidDeadline},
		{"Mark/EmptyKeyPart", testMarkEmptyKeyPart},
		{"Mark/Concurrent", testMarkConcurrent},
		{"Append/IncreasingIDs", testAppendIncreasingIDs},
		{"Append/ZeroTimeIsNow", testAppendZeroTime},
		{"Append/IgnoresID", testAppendIgnoresID},
		{"Append/Nil", testAppendNil},
		{"Get/Roundtrip", testGetRoundtrip},
		{"Get/Unknown", testGetUnknown},
		{"Get/MalformedID", testGetMalformed},
		{"List/NewestFirst", testListNewestFirst},
		{"List/Paging", testListPaging},
		{"List/Filters", testListFilters},
		{"List/PageSize", testListPageSize},
		{"List/PageToken", testListPageToken},
		{"Copies", testCopies},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentAppendAndList", testConcurrentAppendList},
		{"Cache/PutGet", testCachePutGet},
		{"Cache/Expiry", testCacheExpiry},
		{"Cache/Invalid", testCacheInvalid},
		{"Cache/LeaseExclusive", testCacheLease},
		{"List/IndexedFullPages", testListIndexedFullPages},
		{"List/IndexedCombinedAndTime", testListIndexedCombined},
		{"List/PagingWhileAppending", testListPagingWhileAppending},
		{"List/SparseCombined", testListSparseCombined},
		{"List/BusyTimeRange", testListBusyTimeRange},
		{"List/TokensAcrossFilters", testListTokensAcrossFilters},
	}
	for _, o := range opts {
		if o.NewWithRetention != nil {
			t.Run("Retention", func(t *testing.T) {
				t.Parallel()
				testRetention(t, o.NewWithRetention)
			})
		}
		if o.SetListBudget != nil {
			set := o.SetListBudget
			tests = append(tests, struct {
				name string
				run  func(t *testing.T, s store.Store)
			}{"List/WorkBudget", func(t *testing.T, s store.Store) { testListWorkBudget(t, s, set) }})
		}
		if o.DeleteEvent != nil {
			del := o.DeleteEvent
			tests = append(tests, struct {
				name string
				run  func(t *testing.T, s store.Store)
			}{"List/DeletedEventSkipped", func(t *testing.T, s store.Store) { testListDeletedEvent(t, s, del) }})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// Options extends RunTests.
type Options struct {
	// DeleteEvent, when set, removes the event id from s behind its indexes'
	// back (Redis: XDEL), as a trim or a crash between writes would leave
	// an index entry without its event.
	DeleteEvent func(t *testing.T, s store.Store, id string)
	// NewWithRetention, when set, returns a new, empty store whose audit
	// retention is retention, reading the time from now (the suite moves it
	// forward; a backend whose ids come from another clock still reads the
	// retention's cutoff from now). RunTests closes it.
	NewWithRetention func(t *testing.T, retention time.Duration, now func() time.Time) store.Store
	// SetListBudget, when set, lowers s's List work budget to budget
	// entries per call and slice entries per step (store.CollectPage).
	SetListBudget func(s store.Store, budget, slice int)
}

// mustErrIs fails t unless errors.Is(err, want).
func mustErrIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testPing(t *testing.T, s store.Store) {
	mustOK(t, "Ping", s.Ping(t.Context()))
}

// --- Replay guard ---

func key(jti string) store.ReplayKey {
	return store.ReplayKey{Target: "partner.example", Issuer: "https://corp.example", JTI: jti}
}

func testMarkFirstThenReplayed(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := key("jti-1")
	until := time.Now().Add(time.Hour)
	mustOK(t, "first Mark", s.Mark(ctx, k, until))
	mustErrIs(t, "second Mark", s.Mark(ctx, k, until), store.ErrReplayed)
	// A later deadline does not help either.
	mustErrIs(t, "third Mark", s.Mark(ctx, k, until.Add(time.Hour)), store.ErrReplayed)
}

func testMarkIndependentParts(t *testing.T, s store.Store) {
	ctx := t.Context()
	until := time.Now().Add(time.Hour)
	base := store.ReplayKey{Target: "t", Issuer: "i", JTI: "j"}
	mustOK(t, "Mark base", s.Mark(ctx, base, until))
	for _, k := range []store.ReplayKey{
		{Target: "t2", Issuer: "i", JTI: "j"},    // other target
		{Target: "t", Issuer: "i2", JTI: "j"},    // other issuer
		{Target: "t", Issuer: "i", JTI: "j2"},    // other jti
		{Target: "ab", Issuer: "c", JTI: "j"},    // same concatenation as the next one
		{Target: "a", Issuer: "bc", JTI: "j"},    // ...
		{Target: "i", Issuer: "t", JTI: "j"},     // parts swapped
		{Target: "T", Issuer: "i", JTI: "j"},     // case matters
		{Target: "t", Issuer: "i", JTI: "j\x00"}, // bytes matter
	} {
		mustOK(t, fmt.Sprintf("Mark %+q", k), s.Mark(ctx, k, until))
		mustErrIs(t, fmt.Sprintf("Mark %+q again", k), s.Mark(ctx, k, until), store.ErrReplayed)
	}
	mustErrIs(t, "Mark base again", s.Mark(ctx, base, until), store.ErrReplayed)
}

func testMarkExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	k := key("jti-expiring")
	until := time.Now().Add(150 * time.Millisecond)
	mustOK(t, "first Mark", s.Mark(ctx, k, until))
	err := s.Mark(ctx, k, time.Now().Add(time.Hour))
	if time.Now().Before(until) {
		mustErrIs(t, "Mark before the deadline", err, store.ErrReplayed)
	}
	timeout := time.Now().Add(3 * time.Second)
	for {
		time.Sleep(25 * time.Millisecond)
		err := s.Mark(ctx, k, time.Now().Add(time.Hour))
		if err == nil {
			if now := time.Now(); now.Before(until) {
				t.Fatalf("Mark succeeded at %v, %v before the previous marker's deadline", now, until.Sub(now))
			}
			break
		}
		if !errors.Is(err, store.ErrReplayed) {
			t.Fatalf("Mark while waiting for expiry: %v", err)
		}
		if time.Now().After(timeout) {
			t.Fatalf("Mark still ErrReplayed %v after the deadline", time.Since(until))
		}
	}
	// The new marker holds.
	mustErrIs(t, "Mark after re-marking", s.Mark(ctx, k, time.Now().Add(time.Hour)), store.ErrReplayed)
}

func testMarkInvalidDeadline(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		until time.Time
	}{
		{"zero", time.Time{}},
		{"past", time.Now().Add(-time.Second)},
		{"now", time.Now()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := key("jti-deadline-" + tc.name)
			mustErrIs(t, "Mark", s.Mark(ctx, k, tc.until), store.ErrInvalidArgument)
			// Nothing was recorded.
			mustOK(t, "Mark with a valid deadline", s.Mark(ctx, k, time.Now().Add(time.Hour)))
		})
	}
}

func testMarkEmptyKeyPart(t *testing.T, s store.Store) {
	ctx := t.Context()
	until := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name string
		key  store.ReplayKey
	}{
		{"target", store.ReplayKey{Issuer: "i", JTI: "j"}},
		{"issuer", store.ReplayKey{Target: "t", JTI: "j"}},
		{"jti", store.ReplayKey{Target: "t", Issuer: "i"}},
		{"all", store.ReplayKey{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustErrIs(t, "Mark", s.Mark(ctx, tc.key, until), store.ErrInvalidArgument)
		})
	}
}

func testMarkConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 32
	k := key("jti-contended")
	until := time.Now().Add(time.Hour)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.Mark(ctx, k, until)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrReplayed):
		default:
			t.Errorf("Mark #%d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent Marks of one key succeeded, want exactly 1", wins, n)
	}
}

// --- Audit log ---

// eventID is a parsed "<ms>-<seq>" id.
type eventID struct{ ms, seq uint64 }

func parseID(t *testing.T, id string) eventID {
	t.Helper()
	msPart, seqPart, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("event id %q is not of the form <ms>-<seq>", id)
	}
	return eventID{ms, seq}
}

func (a eventID) less(b eventID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

// fullEvent returns an event with every field set, a fresh copy each call.
func fullEvent(tm time.Time) store.Event {
	return store.Event{
		ID:                       "ignored",
		Time:                     tm,
		Caller:                   "spiffe://corp.example/ns/app/sa/client",
		Subject:                  "alice@corp.example",
		SourceDomain:             "corp",
		TargetDomain:             "partner",
		Scopes:                   []string{"orders.read", "orders.write"},
		Outcome:                  store.OutcomeFailure,
		Reason:                   "UPSTREAM_REJECTED",
		UpstreamError:            "invalid_grant",
		UpstreamErrorDescription: "assertion expired \"quoted\" \u00e9\n",
		Message:                  "hop 2 of 2 failed",
		Hops: []store.Hop{
			{
				Domain:    "corp",
				Endpoint:  "https://corp.example/oauth2/token",
				GrantType: "urn:ietf:params:oauth:grant-type:token-exchange",
				Duration:  12*time.Millisecond + 345*time.Microsecond + 678,
			},
			{
				Domain:           "partner",
				Endpoint:         "https://partner.example/token",
				GrantType:        "urn:ietf:params:oauth:grant-type:jwt-bearer",
				Duration:         time.Second + 1,
				AssertionJTIHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			},
		},
		SubjectTokenHash:   "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		AssertionJTIHash:   "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		AssertionIssuer:    "https://corp.example",
		AssertionAudience:  []string{"https://partner.example/token", "partner"},
		SubjectVerified:    true,
		UnverifiedSubject:  "mallory@corp.example",
		Actor:              "agent-7",
		ActorTokenHash:     "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9",
		Profile:            "id_jag",
		DPoPJKT:            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
		AWSAccessKeyIDHash: "3b5d3c7d207e37dceeedd301e35e2e58",
	}
}

// baseTime is a recent instant, so that backends narrowing time-filtered
// scans by append time (within a bounded clock skew) see realistic data.
func baseTime() time.Time {
	return time.Now().Add(-10 * time.Minute).Truncate(time.Second)
}

// equalEvent reports the difference between got and want, or "".
func equalEvent(got, want store.Event) string {
	if !got.Time.Equal(want.Time) {
		return fmt.Sprintf("Time = %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("got  %+v\nwant %+v", got, want)
	}
	return ""
}

func appendN(t *testing.T, s store.Store, events []store.Event) []string {
	t.Helper()
	ids := make([]string, len(events))
	for i := range events {
		id, err := s.Append(t.Context(), &events[i])
		mustOK(t, fmt.Sprintf("Append #%d", i), err)
		ids[i] = id
	}
	return ids
}

// simpleEvents returns n events, one second apart, message "event <i>".
func simpleEvents(n int) []store.Event {
	base := baseTime()
	out := make([]store.Event, n)
	for i := range out {
		out[i] = store.Event{
			Time:    base.Add(time.Duration(i) * time.Second),
			Subject: "subject",
			Outcome: store.OutcomeSuccess,
			Message: fmt.Sprintf("event %d", i),
		}
	}
	return out
}

func testAppendIncreasingIDs(t *testing.T, s store.Store) {
	ids := appendN(t, s, simpleEvents(50))
	prev := parseID(t, ids[0])
	for _, id := range ids[1:] {
		cur := parseID(t, id)
		if !prev.less(cur) {
			t.Fatalf("ids not increasing: %v", ids)
		}
		prev = cur
	}
}

func testAppendZeroTime(t *testing.T, s store.Store) {
	before := time.Now()
	id, err := s.Append(t.Context(), &store.Event{Subject: "no time"})
	after := time.Now()
	mustOK(t, "Append", err)
	got, err := s.Get(t.Context(), id)
	mustOK(t, "Get", err)
	if got.Time.Before(before) || got.Time.After(after) {
		t.Fatalf("Time = %v, want between %v and %v", got.Time, before, after)
	}
}

func testAppendIgnoresID(t *testing.T, s store.Store) {
	e := store.Event{ID: "1-1", Subject: "x"}
	id, err := s.Append(t.Context(), &e)
	mustOK(t, "Append", err)
	if id == "1-1" {
		t.Fatalf("Append kept the caller's ID")
	}
	got, err := s.Get(t.Context(), id)
	mustOK(t, "Get", err)
	if got.ID != id {
		t.Fatalf("Get(%q).ID = %q", id, got.ID)
	}
	mustErrIs(t, "Get caller's ID", func() error { _, err := s.Get(t.Context(), "1-1"); return err }(), store.ErrNotFound)
}

func testAppendNil(t *testing.T, s store.Store) {
	_, err := s.Append(t.Context(), nil)
	mustErrIs(t, "Append(nil)", err, store.ErrInvalidArgument)
}

func testGetRoundtrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	inputs := []store.Event{
		// Sub-millisecond precision, non-UTC location.
		fullEvent(baseTime().Add(123456789).In(time.FixedZone("UTC+5:30", 5*3600+1800))),
		// Only the required fields.
		{Time: baseTime().Add(time.Second), Outcome: store.OutcomeCacheHit},
		// One-element slices, zero durations.
		{Time: baseTime().Add(2 * time.Second), Scopes: []string{""}, Hops: []store.Hop{{}}, AssertionAudience: []string{"a"}},
	}
	for i, in := range inputs {
		id, err := s.Append(ctx, &in)
		mustOK(t, fmt.Sprintf("Append #%d", i), err)
		got, err := s.Get(ctx, id)
		mustOK(t, fmt.Sprintf("Get #%d", i), err)
		want := in
		want.ID = id
		if diff := equalEvent(got, want); diff != "" {
			t.Errorf("event #%d roundtrip: %s", i, diff)
		}
	}
}

func testGetUnknown(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"1-0", "99999999999999-0"} {
		_, err := s.Get(ctx, id)
		mustErrIs(t, "Get "+id+" from an empty store", err, store.ErrNotFound)
	}
	ids := appendN(t, s, simpleEvents(2))
	last := parseID(t, ids[1])
	for _, id := range []string{
		"1-0",
		fmt.Sprintf("%d-%d", last.ms, last.seq+1),
		fmt.Sprintf("%d-0", last.ms+1),
	} {
		_, err := s.Get(ctx, id)
		mustErrIs(t, "Get "+id, err, store.ErrNotFound)
	}
}

// malformedIDs returns strings that are neither event ids nor page tokens.
func malformedIDs() []string {
	return []string{
		"", " ", "abc", "1", "1-", "-1", "-", "+", "1-a", "a-1", "1-0-0", "(1-0",
		"1 -0", " 1-0", "1-0 ", "+1-0", "1-+0", "0x1-0", "1_0-0", "1.5-0",
		"18446744073709551616-0", "0-18446744073709551616",
	}
}

func testGetMalformed(t *testing.T, s store.Store) {
	appendN(t, s, simpleEvents(1))
	for _, id := range malformedIDs() {
		_, err := s.Get(t.Context(), id)
		mustErrIs(t, fmt.Sprintf("Get(%q)", id), err, store.ErrInvalidArgument)
	}
}

// listAll pages through List and fails on duplicates or an endless chain.
func listAll(t *testing.T, s store.Store, f store.Filter, pageSize, total int) []store.Event {
	t.Helper()
	maxCalls := total + 2
	if pageSize > 0 {
		maxCalls = total/pageSize + 2
	}
	var (
		all   []store.Event
		token string
		seen  = map[string]bool{}
	)
	for call := 0; ; call++ {
		if call == maxCalls {
			t.Fatalf("List(pageSize=%d) still returns a next token after %d calls", pageSize, call)
		}
		page, next, err := s.List(t.Context(), f, pageSize, token)
		mustOK(t, fmt.Sprintf("List(pageSize=%d, token=%q)", pageSize, token), err)
		if pageSize > 0 && len(page) > pageSize {
			t.Fatalf("List(pageSize=%d) returned %d events", pageSize, len(page))
		}
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("List returned event %s twice", e.ID)
			}
			seen[e.ID] = true
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		if next == token {
			t.Fatalf("List returned its own page token %q as next", next)
		}
		token = next
	}
}

func eventIDs(events []store.Event) []string {
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].ID
	}
	return ids
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[len(s)-1-i] = s[i]
	}
	return out
}

func testListNewestFirst(t *testing.T, s store.Store) {
	page, next, err := s.List(t.Context(), store.Filter{}, 0, "")
	mustOK(t, "List empty store", err)
	if len(page) != 0 || next != "" {
		t.Fatalf("List of an empty store = %d events, next %q", len(page), next)
	}

	in := simpleEvents(5)
	ids := appendN(t, s, in)
	page, next, err = s.List(t.Context(), store.Filter{}, 10, "")
	mustOK(t, "List", err)
	if got, want := eventIDs(page), reversed(ids); !slices.Equal(got, want) {
		t.Fatalf("List ids = %v, want newest first %v", got, want)
	}
	if next != "" {
		t.Fatalf("List of every event returned next %q, want empty", next)
	}
	for i := range page {
		want := in[len(in)-1-i]
		want.ID = ids[len(in)-1-i]
		if diff := equalEvent(page[i], want); diff != "" {
			t.Fatalf("List event %d: %s", i, diff)
		}
	}
}

func testListPaging(t *testing.T, s store.Store) {
	const n = 23
	want := reversed(appendN(t, s, simpleEvents(n)))
	for _, size := range []int{1, 4, 5, n - 1, n, n + 1, 100} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			got := eventIDs(listAll(t, s, store.Filter{}, size, n))
			if !slices.Equal(got, want) {
				t.Fatalf("paged List ids =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func testListFilters(t *testing.T, s store.Store) {
	base := baseTime()
	type ev struct {
		subject, caller, source, target string
		outcome                         store.Outcome
	}
	// Appended in this order, one minute apart.
	data := []ev{
		{"alice", "c1", "corp", "partner", store.OutcomeSuccess}, // e0
		{"bob", "c1", "corp", "other", store.OutcomeFailure},     // e1
		{"alice", "c2", "lab", "partner", store.OutcomeCacheHit}, // e2
		{"carol", "c2", "corp", "partner", store.OutcomeSuccess}, // e3
		{"alice", "c1", "lab", "other", store.OutcomeFailure},    // e4
		{"bob", "c2", "lab", "partner", store.OutcomeSuccess},    // e5
	}
	events := make([]store.Event, len(data))
	for i, d := range data {
		events[i] = store.Event{
			Time:         base.Add(time.Duration(i) * time.Minute),
			Subject:      d.subject,
			Caller:       d.caller,
			SourceDomain: d.source,
			TargetDomain: d.target,
			Outcome:      d.outcome,
			Message:      "e" + strconv.Itoa(i),
		}
	}
	ids := appendN(t, s, events)
	minute := func(i int) time.Time { return base.Add(time.Duration(i) * time.Minute) }

	for _, tc := range []struct {
		name   string
		filter store.Filter
		want   []int // indexes into data, newest first
	}{
		{"none", store.Filter{}, []int{5, 4, 3, 2, 1, 0}},
		{"subject", store.Filter{Subject: "alice"}, []int{4, 2, 0}},
		{"caller", store.Filter{Caller: "c2"}, []int{5, 3, 2}},
		{"source", store.Filter{SourceDomain: "lab"}, []int{5, 4, 2}},
		{"target", store.Filter{TargetDomain: "other"}, []int{4, 1}},
		{"outcome success", store.Filter{Outcome: store.OutcomeSuccess}, []int{5, 3, 0}},
		{"outcome cache hit", store.Filter{Outcome: store.OutcomeCacheHit}, []int{2}},
		{"start inclusive", store.Filter{Start: minute(3)}, []int{5, 4, 3}},
		{"start between events", store.Filter{Start: minute(3).Add(time.Nanosecond)}, []int{5, 4}},
		{"end exclusive", store.Filter{End: minute(2)}, []int{1, 0}},
		{"end between events", store.Filter{End: minute(2).Add(time.Nanosecond)}, []int{2, 1, 0}},
		{"start and end", store.Filter{Start: minute(1), End: minute(4)}, []int{3, 2, 1}},
		{"empty time range", store.Filter{Start: minute(4), End: minute(4)}, nil},
		{"after every event", store.Filter{Start: minute(6)}, nil},
		{"before every event", store.Filter{End: minute(0)}, nil},
		{"subject and target", store.Filter{Subject: "alice", TargetDomain: "partner"}, []int{2, 0}},
		{"caller, outcome and start", store.Filter{Caller: "c1", Outcome: store.OutcomeFailure, Start: minute(2)}, []int{4}},
		{"all fields", store.Filter{
			Subject: "bob", Caller: "c2", SourceDomain: "lab", TargetDomain: "partner",
			Outcome: store.OutcomeSuccess, Start: minute(5), End: minute(6),
		}, []int{5}},
		{"no match", store.Filter{Subject: "nobody"}, nil},
		{"fields match separately, not together", store.Filter{Subject: "carol", SourceDomain: "lab"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := make([]string, len(tc.want))
			for i, j := range tc.want {
				want[i] = ids[j]
			}
			page, next, err := s.List(t.Context(), tc.filter, 0, "")
			mustOK(t, "List", err)
			if got := eventIDs(page); !slices.Equal(got, want) {
				t.Fatalf("List ids = %v, want %v", got, want)
			}
			if next != "" {
				t.Fatalf("List of a single page returned next %q, want empty", next)
			}
			// The same filter, one event per page.
			if got := eventIDs(listAll(t, s, tc.filter, 1, len(data))); !slices.Equal(got, want) {
				t.Fatalf("paged List ids = %v, want %v", got, want)
			}
		})
	}
}

func testListPageSize(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = store.MaxPageSize + 1
	// Append concurrently to keep remote backends fast.
	events := simpleEvents(n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := s.Append(ctx, &events[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}

	page, next, err := s.List(ctx, store.Filter{}, 0, "")
	mustOK(t, "List(pageSize=0)", err)
	if len(page) != store.DefaultPageSize || next == "" {
		t.Fatalf("List(pageSize=0) = %d events, next %q; want %d and a token", len(page), next, store.DefaultPageSize)
	}

	page, next, err = s.List(ctx, store.Filter{}, store.MaxPageSize+500, "")
	mustOK(t, "List(pageSize>max)", err)
	if len(page) != store.MaxPageSize || next == "" {
		t.Fatalf("List(pageSize=%d) = %d events, next %q; want %d and a token", store.MaxPageSize+500, len(page), next, store.MaxPageSize)
	}
	page2, next2, err := s.List(ctx, store.Filter{}, store.MaxPageSize+500, next)
	mustOK(t, "List second page", err)
	if len(page2) != 1 || next2 != "" {
		t.Fatalf("second page = %d events, next %q; want 1 and none", len(page2), next2)
	}

	_, _, err = s.List(ctx, store.Filter{}, -1, "")
	mustErrIs(t, "List(pageSize=-1)", err, store.ErrInvalidArgument)
}

func testListPageToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	ids := appendN(t, s, simpleEvents(3))
	for _, tok := range malformedIDs()[1:] { // "" means "from the newest"
		_, _, err := s.List(ctx, store.Filter{}, 0, tok)
		mustErrIs(t, fmt.Sprintf("List(token=%q)", tok), err, store.ErrInvalidArgument)
	}
	// Well-formed tokens need not name a stored event: listing continues
	// with the events older than the token.
	for _, tc := range []struct {
		token string
		want  []string
	}{
		{"0-0", nil},
		{"1-0", nil},
		{ids[1], []string{ids[0]}},
		{ids[2], []string{ids[1], ids[0]}},
		{"99999999999999-0", reversed(ids)},
		{"18446744073709551615-18446744073709551615", reversed(ids)},
	} {
		page, next, err := s.List(ctx, store.Filter{}, 0, tc.token)
		mustOK(t, fmt.Sprintf("List(token=%q)", tc.token), err)
		if got := eventIDs(page); !slices.Equal(got, tc.want) {
			t.Errorf("List(token=%q) ids = %v, want %v", tc.token, got, tc.want)
		}
		if next != "" {
			t.Errorf("List(token=%q) next = %q, want empty", tc.token, next)
		}
	}
}

func testCopies(t *testing.T, s store.Store) {
	ctx := t.Context()
	tm := baseTime()
	in := fullEvent(tm)
	id, err := s.Append(ctx, &in)
	mustOK(t, "Append", err)
	want := fullEvent(tm)
	want.ID = id

	// Mutating the appended event does not reach the store.
	in.Scopes[0] = "mutated"
	in.Hops[0].Domain = "mutated"
	in.AssertionAudience[0] = "mutated"
	in.Subject = "mutated"
	check := func(what string) {
		t.Helper()
		got, err := s.Get(ctx, id)
		mustOK(t, "Get", err)
		if diff := equalEvent(got, want); diff != "" {
			t.Fatalf("after mutating %s: %s", what, diff)
		}
	}
	check("the appended event")

	got, err := s.Get(ctx, id)
	mustOK(t, "Get", err)
	got.Scopes[0] = "mutated"
	got.Hops[0].Domain = "mutated"
	got.AssertionAudience[0] = "mutated"
	check("an event returned by Get")

	page, _, err := s.List(ctx, store.Filter{}, 0, "")
	mustOK(t, "List", err)
	if len(page) != 1 {
		t.Fatalf("List returned %d events, want 1", len(page))
	}
	page[0].Scopes[0] = "mutated"
	page[0].Hops[1].Domain = "mutated"
	page[0].AssertionAudience[1] = "mutated"
	check("an event returned by List")
}

func testCanceledContext(t *testing.T, s store.Store) {
	id, err := s.Append(t.Context(), &store.Event{Subject: "x"})
	mustOK(t, "Append", err)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) && !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with a canceled context: got %v, want context.Canceled or store.ErrUnavailable", op, err)
		}
	}
	check("Ping", s.Ping(ctx))
	check("Mark", s.Mark(ctx, key("jti-canceled"), time.Now().Add(time.Hour)))
	_, err = s.Append(ctx, &store.Event{Subject: "y"})
	check("Append", err)
	_, _, err = s.List(ctx, store.Filter{}, 0, "")
	check("List", err)
	_, err = s.Get(ctx, id)
	check("Get", err)
}

func testConcurrentAppendList(t *testing.T, s store.Store) {
	ctx := t.Context()
	const writers, perWriter = 8, 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  = map[string]bool{}
		done = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id, err := s.Append(ctx, &store.Event{Subject: fmt.Sprintf("w%d", w), Message: strconv.Itoa(i)})
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				if ids[id] {
					t.Errorf("Append returned id %s twice", id)
				}
				ids[id] = true
				mu.Unlock()
			}
		})
	}
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, _, err := s.List(ctx, store.Filter{Subject: "w3"}, 10, ""); err != nil {
				t.Errorf("List: %v", err)
				return
			}
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
	if t.Failed() {
		return
	}
	all := listAll(t, s, store.Filter{}, 30, writers*perWriter)
	if len(all) != writers*perWriter {
		t.Fatalf("List found %d events, want %d", len(all), writers*perWriter)
	}
	for _, e := range all {
		if !ids[e.ID] {
			t.Fatalf("List returned unknown id %s", e.ID)
		}
	}
}

func testCachePutGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := store.ReplayKey{Target: "t", Issuer: "i", JTI: t.Name()}.Digest()
	if _, err := s.CacheGet(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CacheGet of a missing key: %v, want ErrNotFound", err)
	}
	value := []byte("k1.\x00\xffopaque ciphertext")
	if err := s.CachePut(ctx, key, value, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.CacheGet(ctx, key)
	if err != nil || string(got) != string(value) {
		t.Fatalf("CacheGet = %q, %v; want %q", got, err, value)
	}
	got[0] = 'X'
	if again, _ := s.CacheGet(ctx, key); string(again) != string(value) {
		t.Fatal("a returned value aliases the stored one")
	}
	if err := s.CachePut(ctx, key, []byte("v2"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.CacheGet(ctx, key); string(got) != "v2" {
		t.Fatalf("overwrite: %q", got)
	}
}

func testCacheExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := store.ReplayKey{Target: "t", Issuer: "i", JTI: t.Name()}.Digest()
	if err := s.CachePut(ctx, key, []byte("v"), time.Now().Add(150*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CacheGet(ctx, key); err != nil {
		t.Fatalf("before the deadline: %v", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := s.CacheGet(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry still there long after its deadline: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func testCacheInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	for name, err := range map[string]error{
		"empty key":     s.CachePut(ctx, "", []byte("v"), time.Now().Add(time.Minute)),
		"past deadline": s.CachePut(ctx, "k", []byte("v"), time.Now().Add(-time.Second)),
	} {
		if !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := s.CacheLease(ctx, "k", 0); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("zero ttl: %v", err)
	}
}

func testCacheLease(t *testing.T, s store.Store) {
	ctx := context.Background()
	key := store.ReplayKey{Target: "t", Issuer: "i", JTI: t.Name()}.Digest()
	var wg sync.WaitGroup
	var won atomic.Int32
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.CacheLease(ctx, key, 300*time.Millisecond)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d concurrent lease takers won, want exactly 1", won.Load())
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		ok, err := s.CacheLease(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return // the first lease expired
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease never expired")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// pageAll pages through List with f and checks the page shape: every page
// but the last holds exactly pageSize events, the last is not empty (unless
// the first is), no event comes twice.
func pageAll(t *testing.T, s store.Store, f store.Filter, pageSize, total int) []store.Event {
	t.Helper()
	var (
		all   []store.Event
		token string
		seen  = map[string]bool{}
	)
	for call := 0; ; call++ {
		if call > total/pageSize+2 {
			t.Fatalf("List(%+v, pageSize=%d) still returns a next token after %d calls", f, pageSize, call)
		}
		page, next, err := s.List(t.Context(), f, pageSize, token)
		mustOK(t, fmt.Sprintf("List(token=%q)", token), err)
		switch {
		case next != "" && len(page) != pageSize:
			t.Fatalf("List(%+v, pageSize=%d) call %d: %d events and a next token; want full pages", f, pageSize, call, len(page))
		case next == "" && len(page) == 0 && call > 0:
			t.Fatalf("List(%+v, pageSize=%d) call %d: an empty last page (the previous next token led nowhere)", f, pageSize, call)
		}
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("List returned event %s twice", e.ID)
			}
			seen[e.ID] = true
			if !f.Match(&e) {
				t.Fatalf("List(%+v) returned a non-matching event %+v", f, e)
			}
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		token = next
	}
}

// mixedEvents returns n events one second apart; event i has subject
// "s<i%7>", caller "c<i%3>", source "d<i%2>", target "t<i%5>" and outcome
// success, failure or cache hit by i%3 (shifted by i/3 so that caller and
// outcome vary independently).
func mixedEvents(n int) []store.Event {
	base := baseTime()
	out := make([]store.Event, n)
	outcomes := []store.Outcome{store.OutcomeSuccess, store.OutcomeFailure, store.OutcomeCacheHit}
	for i := range out {
		out[i] = store.Event{
			Time:         base.Add(time.Duration(i) * time.Second),
			Subject:      fmt.Sprintf("s%d", i%7),
			Caller:       fmt.Sprintf("c%d", i%3),
			SourceDomain: fmt.Sprintf("d%d", i%2),
			TargetDomain: fmt.Sprintf("t%d", i%5),
			Outcome:      outcomes[(i+i/3)%3],
			Message:      fmt.Sprintf("event %d", i),
		}
	}
	return out
}

// wantIDs returns the ids of the events matching f, newest first.
func wantIDs(events []store.Event, ids []string, f store.Filter) []string {
	var out []string
	for i := len(events) - 1; i >= 0; i-- {
		if f.Match(&events[i]) {
			out = append(out, ids[i])
		}
	}
	return out
}

func testListIndexedFullPages(t *testing.T, s store.Store) {
	const n = 210
	events := mixedEvents(n)
	ids := appendN(t, s, events)
	for _, f := range []store.Filter{
		{Subject: "s3"},
		{Caller: "c1"},
		{SourceDomain: "d0"},
		{TargetDomain: "t4"},
		{Outcome: store.OutcomeFailure},
	} {
		want := wantIDs(events, ids, f)
		for _, size := range []int{1, 4, 5, len(want), len(want) + 1} {
			t.Run(fmt.Sprintf("%+v/%d", f, size), func(t *testing.T) {
				if got := eventIDs(pageAll(t, s, f, size, n)); !slices.Equal(got, want) {
					t.Fatalf("paged List ids =\n%v\nwant\n%v", got, want)
				}
			})
		}
	}
}

// testListIndexedCombined lists combined fields and time ranges over two
// trails of the same events: one with times minutes before the append (as
// events a backend receives late, or from a skewed clock), one with the
// time of the append; the ranges are bounded by either trail's times.
func testListIndexedCombined(t *testing.T, s store.Store) {
	const n = 210
	skewed := mixedEvents(n)
	ids := appendN(t, s, skewed)
	inStep := mixedEvents(n)
	for i := range inStep {
		inStep[i].Time = time.Now()
		ids = append(ids, appendN(t, s, inStep[i:i+1])...)
	}
	events := append(slices.Clone(skewed), inStep...)
	for _, trail := range []struct {
		name   string
		events []store.Event
	}{{"skewed", skewed}, {"in step", inStep}} {
		at := func(i int) time.Time { return trail.events[i].Time }
		testListCombinedTable(t, s, trail.name, events, ids, at)
	}
}

func testListCombinedTable(t *testing.T, s store.Store, trail string, events []store.Event, ids []string, at func(int) time.Time) {
	const n = 210
	for _, tc := range []struct {
		name string
		f    store.Filter
	}{
		{"subject and caller", store.Filter{Subject: "s2", Caller: "c0"}},
		{"caller and outcome", store.Filter{Caller: "c2", Outcome: store.OutcomeSuccess}},
		{"all fields", store.Filter{Subject: "s1", Caller: "c1", SourceDomain: "d1", TargetDomain: "t1", Outcome: store.OutcomeSuccess}},
		{"subject and time range", store.Filter{Subject: "s4", Start: at(30), End: at(150)}},
		{"subject and range between events", store.Filter{Subject: "s4", Start: at(32).Add(time.Nanosecond), End: at(172).Add(-time.Nanosecond)}},
		{"outcome and start", store.Filter{Outcome: store.OutcomeCacheHit, Start: at(200)}},
		{"target and end", store.Filter{TargetDomain: "t0", End: at(20)}},
		{"source, target and range", store.Filter{SourceDomain: "d1", TargetDomain: "t3", Start: at(10), End: at(100)}},
		{"no match together", store.Filter{Subject: "s0", Caller: "c1", SourceDomain: "d1", TargetDomain: "t2", Outcome: store.OutcomeFailure, Start: at(209)}},
		{"unknown value", store.Filter{Subject: "nobody", Caller: "c1"}},
	} {
		want := wantIDs(events, ids, tc.f)
		for _, size := range []int{1, 3, 50} {
			t.Run(fmt.Sprintf("%s/%s/%d", trail, tc.name, size), func(t *testing.T) {
				if got := eventIDs(pageAll(t, s, tc.f, size, 2*n)); !slices.Equal(got, want) {
					t.Fatalf("paged List ids =\n%v\nwant\n%v", got, want)
				}
			})
		}
	}
}

// testListPagingWhileAppending pages through a subject (alone, with another
// field, with a time range) while other events, matching too, are
// appended: the pages hold exactly the events that existed at the first
// call, each once, in order.
func testListPagingWhileAppending(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n, size, maxLate = 60, 7, 40 // maxLate: events appended while one subtest pages
	start := time.Now()
	events := make([]store.Event, n)
	for i := range events {
		events[i] = store.Event{Time: time.Now(), Subject: "paged", Caller: fmt.Sprintf("c%d", i%2), Message: strconv.Itoa(i)}
		if i%3 == 0 {
			events[i].Subject = "other"
		}
	}
	ids := appendN(t, s, events)
	var mu sync.Mutex // guards events and ids, which the appenders extend
	later := start.Add(time.Hour)
	for _, f := range []store.Filter{
		{Subject: "paged"},
		{Subject: "paged", Caller: "c1"},
		{},
		{Start: start},
		{Subject: "paged", Start: start, End: later},
		{Subject: "paged", Caller: "c1", End: later},
	} {
		t.Run(fmt.Sprintf("%+v", f), func(t *testing.T) {
			// Every event so far (those appended by the previous subtest too).
			want := wantIDs(events, ids, f)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer func() { close(stop); wg.Wait() }()
			var (
				got   []string
				token string
			)
			// The pages hold the events that existed at the first call
			// (want, which grows with the previous subtests' appenders):
			// one call per full page, one more for an empty last page.
			maxCalls := len(want)/size + 1
			for call := 0; ; call++ {
				if call > maxCalls {
					t.Fatalf("List still returns a token after %d calls (%d events at the first call, pages of %d)", call, len(want), size)
				}
				page, next, err := s.List(ctx, f, size, token)
				mustOK(t, "List", err)
				if call == 0 {
					// From now on, appends run while paging.
					wg.Go(func() {
						// A bounded, paced appender: unbounded, it appended
						// more the longer the paging took, and each subtest
						// then paged through the previous one's appends
						// (a run away on a fast store).
						for i := range maxLate {
							select {
							case <-stop:
								return
							case <-time.After(time.Millisecond):
							}
							e := store.Event{Time: time.Now(), Subject: "paged", Caller: "c1", Message: "late " + strconv.Itoa(i)}
							id, err := s.Append(ctx, &e)
							if err != nil {
								t.Errorf("Append: %v", err)
								return
							}
							mu.Lock()
							events, ids = append(events, e), append(ids, id)
							mu.Unlock()
						}
					})
				}
				got = append(got, eventIDs(page)...)
				if next != "" && len(page) != size {
					t.Fatalf("call %d: %d events and a next token", call, len(page))
				}
				if next == "" {
					break
				}
				token = next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paged List while appending =\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// testListDeletedEvent removes events behind the indexes' back: a filtered
// List skips them and still fills its pages, Get does not find them, and
// listing again gives the same answer.
func testListDeletedEvent(t *testing.T, s store.Store, del func(t *testing.T, s store.Store, id string)) {
	const n = 70
	events := mixedEvents(n)
	ids := appendN(t, s, events)
	f := store.Filter{Caller: "c1"}
	deleted := map[string]bool{}
	for i := range events {
		if f.Match(&events[i]) && (i%2 == 0 || i > 60) {
			del(t, s, ids[i])
			deleted[ids[i]] = true
		}
	}
	var want []string
	for _, id := range wantIDs(events, ids, f) {
		if !deleted[id] {
			want = append(want, id)
		}
	}
	for _, round := range []string{"first", "again"} {
		for _, size := range []int{1, 3, 4} {
			if got := eventIDs(pageAll(t, s, f, size, n)); !slices.Equal(got, want) {
				t.Fatalf("%s, page size %d: paged List ids =\n%v\nwant\n%v", round, size, got, want)
			}
		}
		for id := range deleted {
			_, err := s.Get(t.Context(), id)
			mustErrIs(t, "Get of a deleted event", err, store.ErrNotFound)
		}
	}
}

// testRetention appends events, moves the clock past their retention, and
// appends more: the old events are gone from List (filtered or not) and
// Get, the new ones stay.
func testRetention(t *testing.T, newStore func(t *testing.T, retention time.Duration, now func() time.Time) store.Store) {
	const retention = time.Hour
	var frozen atomic.Pointer[time.Time]
	now := func() time.Time {
		if p := frozen.Load(); p != nil {
			return *p
		}
		return time.Now()
	}
	s := newStore(t, retention, now)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx := t.Context()
	var old []string
	for i := range 5 {
		old = append(old, appendN(t, s, []store.Event{{Subject: "old", Caller: "c", Outcome: store.OutcomeSuccess, Message: strconv.Itoa(i)}})...)
	}
	// The boundary lies in a millisecond after the old events' and before
	// the new ones'.
	last := parseID(t, old[len(old)-1])
	for uint64(time.Now().UnixMilli()) <= last.ms+1 {
		time.Sleep(time.Millisecond)
	}
	boundary := time.Now()
	for time.Now().UnixMilli() <= boundary.UnixMilli()+1 {
		time.Sleep(time.Millisecond)
	}
	later := boundary.Add(retention)
	frozen.Store(&later) // the old events are now just past retention
	kept := appendN(t, s, []store.Event{
		{Subject: "new", Caller: "c", Outcome: store.OutcomeSuccess, Time: boundary},
		{Subject: "new", Caller: "c", Outcome: store.OutcomeFailure, Time: boundary},
	})
	for _, f := range []store.Filter{{}, {Subject: "old"}, {Caller: "c"}, {Outcome: store.OutcomeSuccess}, {Subject: "new"}} {
		var want []string
		for _, id := range reversed(kept) {
			e, err := s.Get(ctx, id)
			mustOK(t, "Get of a kept event", err)
			if f.Match(&e) {
				want = append(want, id)
			}
		}
		if got := eventIDs(pageAll(t, s, f, 1, 10)); !slices.Equal(got, want) {
			t.Errorf("List(%+v) after retention = %v, want %v", f, got, want)
		}
	}
	for _, id := range old {
		_, err := s.Get(ctx, id)
		mustErrIs(t, "Get of an event past retention", err, store.ErrNotFound)
	}
}

// appendParallel appends events from 16 goroutines (a large trail in
// reasonable time on a networked backend) and returns their ids, in the
// order of events (not the order of the ids).
func appendParallel(t *testing.T, s store.Store, events []store.Event) []string {
	t.Helper()
	ids := make([]string, len(events))
	const workers = 16
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(events); i += workers {
				id, err := s.Append(t.Context(), &events[i])
				if err != nil {
					t.Errorf("Append #%d: %v", i, err)
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return ids
}

// matching returns the ids of the events matching f (with their stored
// Time, times[i]) and below the id bound before ("" none), newest first.
func matching(events []store.Event, ids []string, times []time.Time, f store.Filter, before string) []string {
	type idx struct {
		id eventID
		s  string
	}
	var out []idx
	for i := range events {
		e := events[i]
		if times != nil {
			e.Time = times[i]
		}
		if !f.Match(&e) {
			continue
		}
		var id eventID
		if _, err := fmt.Sscanf(ids[i], "%d-%d", &id.ms, &id.seq); err != nil {
			panic(err)
		}
		if before != "" {
			var b eventID
			if _, err := fmt.Sscanf(before, "%d-%d", &b.ms, &b.seq); err != nil {
				panic(err)
			}
			if !id.less(b) {
				continue
			}
		}
		out = append(out, idx{id, ids[i]})
	}
	slices.SortFunc(out, func(a, b idx) int {
		switch {
		case b.id.less(a.id):
			return -1
		case a.id.less(b.id):
			return 1
		}
		return 0
	})
	res := make([]string, len(out))
	for i := range out {
		res[i] = out[i].s
	}
	return res
}

// storedTimes reads back the Time of each event (set by Append when zero),
// listing the whole trail (which must hold only these events).
func storedTimes(t *testing.T, s store.Store, ids []string) []time.Time {
	t.Helper()
	byID := map[string]time.Time{}
	for _, e := range listAll(t, s, store.Filter{}, store.MaxPageSize, len(ids)+store.MaxPageSize) {
		byID[e.ID] = e.Time
	}
	out := make([]time.Time, len(ids))
	for i, id := range ids {
		tm, ok := byID[id]
		if !ok {
			t.Fatalf("event %s is not listed", id)
		}
		out[i] = tm
	}
	return out
}

// testListSparseCombined: two fields that each match about half of a trail
// of 24,000 events match together only three, all among the oldest: every
// index walk meets over 10,000 entries before the first match. Pages are
// full anyway (a backend that returns after examining 10,000 entries with
// what it found fails here), with and without a time range.
func testListSparseCombined(t *testing.T, s store.Store) {
	const n = 24_000
	events := make([]store.Event, n)
	for i := range events {
		// Subject "a" on even events, caller "x" on odd ones: never both,
		// but for the needles.
		events[i] = store.Event{Subject: "b", Caller: "x", TargetDomain: "t", Message: strconv.Itoa(i)}
		if i%2 == 0 {
			events[i].Subject, events[i].Caller = "a", "y"
		}
	}
	for _, i := range []int{7, 11, 13} {
		events[i].Subject, events[i].Caller = "a", "x"
	}
	ids := appendParallel(t, s, events)
	times := storedTimes(t, s, ids)
	first, last := times[0], times[0]
	for _, tm := range times {
		if tm.Before(first) {
			first = tm
		}
		if tm.After(last) {
			last = tm
		}
	}
	for _, tc := range []struct {
		name string
		f    store.Filter
	}{
		{"two fields", store.Filter{Subject: "a", Caller: "x"}},
		{"three fields", store.Filter{Subject: "a", Caller: "x", TargetDomain: "t"}},
		{"two fields and start", store.Filter{Subject: "a", Caller: "x", Start: first}},
		{"two fields and range", store.Filter{Subject: "a", Caller: "x", Start: first, End: last.Add(time.Nanosecond)}},
		{"two fields and end", store.Filter{Subject: "a", Caller: "x", End: last.Add(time.Hour)}},
		{"no match", store.Filter{Subject: "a", Caller: "x", Outcome: store.OutcomeFailure}},
	} {
		want := matching(events, ids, times, tc.f, "")
		for _, size := range []int{1, 2, 3, 50} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				if got := eventIDs(pageAll(t, s, tc.f, size, n)); !slices.Equal(got, want) {
					t.Fatalf("paged List(%+v) ids = %v, want %v", tc.f, got, want)
				}
			})
		}
	}
}

// testListBusyTimeRange: 40 events, then over 10,000 more, all with the
// time of their append: a range ending between the two groups answers the
// first 40 in full pages, although every newer event lies past its end
// (alone, with a busy field, with a rare one, and with a start).
func testListBusyTimeRange(t *testing.T, s store.Store) {
	const early, late = 40, 10_200
	events := make([]store.Event, early+late)
	for i := range events {
		events[i] = store.Event{Subject: "u" + strconv.Itoa(i%4), Outcome: store.OutcomeSuccess, Message: strconv.Itoa(i)}
	}
	ids := appendN(t, s, events[:early])
	times := storedTimes(t, s, ids)
	mid := times[early-1].Add(time.Nanosecond)
	// The later events are appended after mid (their Time is set by Append).
	for !time.Now().After(mid) {
		time.Sleep(time.Millisecond)
	}
	ids = append(ids, appendParallel(t, s, events[early:])...)
	times = storedTimes(t, s, ids)
	for i := early; i < len(times); i++ {
		if times[i].Before(mid) {
			t.Fatalf("event %d has Time %v, before %v", i, times[i], mid)
		}
	}
	for _, tc := range []struct {
		name string
		f    store.Filter
	}{
		{"end", store.Filter{End: mid}},
		{"end and busy field", store.Filter{End: mid, Outcome: store.OutcomeSuccess}},
		{"end and field", store.Filter{End: mid, Subject: "u1"}},
		{"end and two fields", store.Filter{End: mid, Subject: "u1", Outcome: store.OutcomeSuccess}},
		{"range", store.Filter{Start: times[5], End: mid}},
		{"range and field", store.Filter{Start: times[5], End: mid, Subject: "u2"}},
		{"the last early event", store.Filter{Start: times[early-1], End: mid}},
		{"start after the early events", store.Filter{Start: mid, Subject: "u3"}},
	} {
		want := matching(events, ids, times, tc.f, "")
		for _, size := range []int{1, 7, 50} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				if got := eventIDs(pageAll(t, s, tc.f, size, len(events))); !slices.Equal(got, want) {
					t.Fatalf("paged List(%+v) ids = %v, want %v", tc.f, got, want)
				}
			})
		}
	}
}

// testListTokensAcrossFilters: any id is a page token for any filter: the
// listing continues with the matching events below it. Tokens from one
// filter's pages, from another's, event ids and ids between events, with
// combined fields and time ranges, on skewed and in-step events.
func testListTokensAcrossFilters(t *testing.T, s store.Store) {
	const n = 120
	events := mixedEvents(n) // Time ten minutes before the append
	for i := range events {
		if i%2 == 1 {
			events[i].Time = time.Time{} // the append's time
		}
	}
	ids := appendN(t, s, events)
	times := storedTimes(t, s, ids)
	mid := times[n/2]
	filters := []store.Filter{
		{},
		{Subject: "s2"},
		{Caller: "c1", Outcome: store.OutcomeSuccess},
		{Start: times[0], End: mid},
		{Start: mid},
		{Caller: "c2", End: mid},
		{SourceDomain: "d1", Start: times[10], End: times[n-1]},
	}
	tokens := []string{ids[n-1], ids[n/2], ids[3]}
	for _, f := range filters {
		page, _, err := s.List(t.Context(), f, 5, "")
		mustOK(t, "List", err)
		for _, e := range page {
			tokens = append(tokens, e.ID)
		}
		if _, next, err := s.List(t.Context(), f, 3, ""); err == nil && next != "" {
			tokens = append(tokens, next)
		}
	}
	for _, f := range filters {
		for _, tok := range tokens {
			want := matching(events, ids, times, f, tok)
			var all []string
			token := tok
			for call := 0; ; call++ {
				if call > n {
					t.Fatalf("List(%+v) from %s: no end", f, tok)
				}
				page, next, err := s.List(t.Context(), f, 4, token)
				mustOK(t, "List", err)
				if next != "" && len(page) != 4 {
					t.Fatalf("List(%+v, token %s) = %d events and a next token", f, token, len(page))
				}
				all = append(all, eventIDs(page)...)
				if next == "" {
					break
				}
				token = next
			}
			if !slices.Equal(all, want) {
				t.Fatalf("List(%+v) from token %s = %v, want %v", f, tok, all, want)
			}
		}
	}
}

// testListWorkBudget lowers the work budget to 40 entries a call (steps of
// 16): matches 50 index entries apart make short pages, each of at least
// one event, each next token leading to more; every match is found once,
// in order. Dense matches still fill their pages.
func testListWorkBudget(t *testing.T, s store.Store, set func(s store.Store, budget, slice int)) {
	const n = 1000
	events := make([]store.Event, n)
	for i := range events {
		// Subject "a" and caller "y" on even events, "b" and "x" on odd
		// ones; ten needles (even) have "a" and "x".
		events[i] = store.Event{Subject: "b", Caller: "x", Message: strconv.Itoa(i)}
		if i%2 == 0 {
			events[i].Subject, events[i].Caller = "a", "y"
		}
		if i%100 == 50 {
			events[i].Caller = "x"
		}
	}
	ids := appendN(t, s, events)
	times := storedTimes(t, s, ids)
	set(s, 40, 16)
	for _, tc := range []struct {
		name  string
		f     store.Filter
		dense bool
	}{
		{"sparse combined", store.Filter{Subject: "a", Caller: "x"}, false},
		{"sparse with time range", store.Filter{Subject: "a", Caller: "x", Start: time.Unix(0, 0)}, false},
		{"dense", store.Filter{Caller: "y"}, true},
		{"dense time range", store.Filter{Start: time.Unix(0, 0)}, true},
	} {
		want := matching(events, ids, times, tc.f, "")
		for _, size := range []int{1, 3, 20} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				var (
					got   []string
					token string
				)
				for call := 0; ; call++ {
					if call > len(want)+1 {
						t.Fatalf("still a next token after %d calls", call)
					}
					page, next, err := s.List(t.Context(), tc.f, size, token)
					mustOK(t, "List", err)
					switch {
					case len(page) == 0 && (next != "" || call > 0):
						t.Fatalf("call %d: an empty page (next %q)", call, next)
					case len(page) > size:
						t.Fatalf("call %d: %d events", call, len(page))
					case tc.dense && next != "" && len(page) != size:
						t.Fatalf("call %d: %d events and a next token; want a full page", call, len(page))
					}
					got = append(got, eventIDs(page)...)
					if next == "" {
						break
					}
					token = next
				}
				if !slices.Equal(got, want) {
					t.Fatalf("ids = %v, want %v", got, want)
				}
			})
		}
	}
}
