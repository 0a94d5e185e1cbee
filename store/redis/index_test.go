package redis

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/store"
)

// TestIndexedListFullPages: a subject met once in 60 events fills its pages
// although one List may examine only 50 entries before it may return a
// short page: the index walk reads the subject's events only. (A scan of
// the stream returns short pages here.)
func TestIndexedListFullPages(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	s := newStore(t, srv, Options{})
	s.listBudget, s.listSlice = 50, 10
	ctx := t.Context()
	var want []string
	for i := range 600 {
		e := store.Event{Subject: "hay", Message: fmt.Sprint(i)}
		if i%60 == 0 {
			e.Subject = "needle"
		}
		id, err := s.Append(ctx, &e)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if e.Subject == "needle" {
			want = append([]string{id}, want...)
		}
	}
	var got []string
	token := ""
	for call := 0; ; call++ {
		page, next, err := s.List(ctx, store.Filter{Subject: "needle"}, 3, token)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if call > 4 || (next != "" && len(page) != 3) || len(page) == 0 {
			t.Fatalf("call %d: %d events, next %q; want pages of 3, the last not empty", call, len(page), next)
		}
		for _, e := range page {
			got = append(got, e.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
}

// indexLen is the number of entries of an index key, either kind.
func indexLen(t *testing.T, raw *goredis.Client, s *Store, key string) int64 {
	t.Helper()
	if s.kinds([]string{key}) == "z" {
		return raw.ZCard(t.Context(), key).Val()
	}
	return raw.XLen(t.Context(), key).Val()
}

// TestIndexCleanup checks the index upkeep: an entry whose event is gone
// is removed when a List meets it (sorted-set and stream indexes); an index
// key written on an upkeep append loses its entries below the trimmed
// stream's oldest entry (a stream index whole nodes of 100 entries: MINID
// ~); a key not written since the stream's oldest entry is removed by a
// later append.
func TestIndexCleanup(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := t.Context()

	t.Run("deleted event", func(t *testing.T) {
		s := newStore(t, srv, Options{KeyPrefix: "xdel"})
		var ids []string
		for range 5 {
			id, err := s.Append(ctx, &store.Event{Subject: "alice", TargetDomain: "partner"})
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			ids = append(ids, id)
		}
		xdel(t, s, ids[1])
		xdel(t, s, ids[3])
		for _, f := range []store.Filter{{Subject: "alice"}, {TargetDomain: "partner"}} {
			key := s.indexKeys(nil, f.Subject, "", "", f.TargetDomain, 0)[0]
			if n := indexLen(t, raw, s, key); n != 5 {
				t.Fatalf("index %s holds %d entries before List, want 5", key, n)
			}
			page, next, err := s.List(ctx, f, 10, "")
			if err != nil || len(page) != 3 || next != "" {
				t.Fatalf("List(%+v) = %d events, next %q, %v; want 3", f, len(page), next, err)
			}
			if n := indexLen(t, raw, s, key); n != 3 {
				t.Fatalf("index %s holds %d entries after List, want 3 (the deleted events' removed)", key, n)
			}
		}
	})

	t.Run("trim", func(t *testing.T) {
		const maxLen = 10
		s := newStore(t, srv, Options{KeyPrefix: "trim", AuditMaxLen: maxLen})
		s.upkeepEvery = 1 // trim and sweep on every append
		if _, err := s.Append(ctx, &store.Event{Subject: "once", Caller: "c", SourceDomain: "once", TargetDomain: "t"}); err != nil {
			t.Fatalf("Append: %v", err)
		}
		onceKeys := s.indexKeys(nil, "once", "", "once", "", 0) // a sorted set and a stream
		for i := range 400 {
			if _, err := s.Append(ctx, &store.Event{Subject: fmt.Sprint("s", i%4), Caller: "c", TargetDomain: "t"}); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		n := raw.XLen(ctx, s.stream).Val()
		if n > maxLen+100 {
			t.Fatalf("XLEN = %d", n)
		}
		// Every written key holds the entries of the events still in the
		// stream: a sorted set only those, a stream at most a node (100
		// entries) more.
		if c := indexLen(t, raw, s, s.indexKeys(nil, "", "c", "", "", 0)[0]); c != n {
			t.Errorf("caller index holds %d entries, stream %d", c, n)
		}
		if c := indexLen(t, raw, s, s.indexKeys(nil, "", "", "", "t", 0)[0]); c < n || c > n+100 {
			t.Errorf("target index holds %d entries, stream %d", c, n)
		}
		all, err := raw.XRange(ctx, s.stream, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE: %v", err)
		}
		for i := range 4 {
			f := store.Filter{Subject: fmt.Sprint("s", i)}
			c := indexLen(t, raw, s, s.indexKeys(nil, f.Subject, "", "", "", 0)[0])
			var want []string
			for j := len(all) - 1; j >= 0; j-- {
				if ev, err := decodeEvent("test", all[j]); err == nil && f.Match(&ev) {
					want = append(want, ev.ID)
				}
			}
			if c != int64(len(want)) {
				t.Errorf("index of %s holds %d entries, the stream %d of its events", f.Subject, c, len(want))
			}
			// The listing reads none of the trimmed ones.
			for _, g := range []store.Filter{f, {Subject: f.Subject, TargetDomain: "t"}} {
				page, next, err := s.List(ctx, g, store.MaxPageSize, "")
				var got []string
				for _, e := range page {
					got = append(got, e.ID)
				}
				if err != nil || next != "" || fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("List(%+v) = %v, next %q, %v; want %v", g, got, next, err, want)
				}
			}
		}
		// The keys written once, long trimmed, are gone with their registry
		// entries.
		for _, once := range onceKeys {
			if raw.Exists(ctx, once).Val() != 0 {
				t.Errorf("stale index key %s still exists", once)
			}
			if err := raw.ZScore(ctx, s.prefix+":{audit}:idxkeys", once).Err(); err == nil {
				t.Errorf("stale index key %s still in the registry", once)
			}
		}
		if c := raw.ZCard(ctx, s.prefix+":{audit}:idxkeys").Val(); c != 6 {
			t.Errorf("registry holds %d keys, want 6 (4 subjects, 1 caller, 1 target)", c)
		}
	})

	// An index key that is not an index of this store (another type, or a
	// stream holding ids above the new event's) is replaced by the append,
	// which never fails between the event and its indexes.
	t.Run("foreign key", func(t *testing.T) {
		s := newStore(t, srv, Options{KeyPrefix: "foreign"})
		subject := s.indexKeys(nil, "alice", "", "", "", 0)[0]
		target := s.indexKeys(nil, "", "", "", "partner", 0)[0]
		source := s.indexKeys(nil, "", "", "corp", "", 0)[0]
		if err := raw.Set(ctx, subject, "not an index", 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		if err := raw.HSet(ctx, target, "f", "v").Err(); err != nil {
			t.Fatalf("HSET: %v", err)
		}
		if err := raw.XAdd(ctx, &goredis.XAddArgs{Stream: source, ID: "99999999999999-0", Values: []any{"t", ""}}).Err(); err != nil {
			t.Fatalf("XADD: %v", err)
		}
		id, err := s.Append(ctx, &store.Event{Subject: "alice", SourceDomain: "corp", TargetDomain: "partner"})
		if err != nil {
			t.Fatalf("Append over foreign keys: %v", err)
		}
		for _, f := range []store.Filter{{Subject: "alice"}, {TargetDomain: "partner"}, {SourceDomain: "corp"}, {Subject: "alice", SourceDomain: "corp", TargetDomain: "partner"}} {
			page, next, err := s.List(ctx, f, 10, "")
			if err != nil || len(page) != 1 || page[0].ID != id || next != "" {
				t.Fatalf("List(%+v) = %d events, next %q, %v; want the event", f, len(page), next, err)
			}
		}
	})

	t.Run("retention", func(t *testing.T) {
		s := newStore(t, srv, Options{KeyPrefix: "ret", AuditRetention: time.Hour})
		for range 250 {
			if _, err := s.Append(ctx, &store.Event{Subject: "old"}); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		later := time.Now().Add(time.Hour + time.Second)
		s.now = func() time.Time { return later }
		// The stream is trimmed MINID ~: whole nodes (100 entries) go.
		if _, err := s.Append(ctx, &store.Event{Subject: "new"}); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if n := raw.XLen(ctx, s.stream).Val(); n > 100 {
			t.Errorf("XLEN = %d after the retention passed, want at most one node (100)", n)
		}
		// The old subject's index key, not written since, keeps entries
		// until it goes stale; List reads none of them (past the cutoff).
		page, next, err := s.List(ctx, store.Filter{Subject: "old"}, 10, "")
		if err != nil || len(page) != 0 || next != "" {
			t.Errorf("List(old) = %d events, next %q, %v; want none", len(page), next, err)
		}
	})
}

// TestAppendAfterScriptFlush: a Redis without the append script (restarted,
// failed over, SCRIPT FLUSH) answers EVALSHA with NOSCRIPT; the store sends
// the script with EVAL, once: one event per append, with its index entry.
func TestAppendAfterScriptFlush(t *testing.T) {
	srv := redistest.New(t, redistest.Options{})
	raw := rawClient(t, srv)
	ctx := t.Context()
	for _, minAcks := range []int{0, 1} { // group commit, and the WAIT pipeline
		t.Run(fmt.Sprint("min_replicas_ack=", minAcks), func(t *testing.T) {
			s := newStore(t, srv, Options{KeyPrefix: fmt.Sprint("flush", minAcks), MinReplicasAck: minAcks})
			for i := range 3 {
				if err := raw.ScriptFlush(ctx).Err(); err != nil {
					t.Fatalf("SCRIPT FLUSH: %v", err)
				}
				_, err := s.Append(ctx, &store.Event{Subject: "alice", Message: fmt.Sprint(i)})
				if minAcks > 0 {
					// No replica: WAIT counts 0, the append fails closed, but ran once.
					if !errors.Is(err, store.ErrUnavailable) {
						t.Fatalf("Append with min_replicas_ack and no replica: %v, want ErrUnavailable", err)
					}
				} else if err != nil {
					t.Fatalf("Append after SCRIPT FLUSH: %v", err)
				}
			}
			if n := raw.XLen(ctx, s.stream).Val(); n != 3 {
				t.Fatalf("XLEN = %d after 3 appends, want 3", n)
			}
			if n := indexLen(t, raw, s, s.indexKeys(nil, "alice", "", "", "", 0)[0]); n != 3 {
				t.Fatalf("subject index holds %d entries, want 3", n)
			}
		})
	}
}

// TestAppendArgs: Append's script arguments name the keys and kinds that
// indexKeys and kinds give for the same event (the listing reads those
// keys), for every combination of present fields and outcomes.
func TestAppendArgs(t *testing.T) {
	s, err := New(Options{Client: goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"}), KeyPrefix: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = s.client.Close() })
	outcomes := []store.Outcome{store.OutcomeUnspecified, store.OutcomeSuccess, store.OutcomeFailure, store.OutcomeCacheHit, store.OutcomeCacheHit + 1}
	for mask := range 16 {
		for _, o := range outcomes {
			ev := store.Event{Outcome: o, Time: time.Unix(1700000000, 5)}
			for i, f := range []*string{&ev.Subject, &ev.Caller, &ev.SourceDomain, &ev.TargetDomain} {
				if mask&(1<<i) != 0 {
					*f = fmt.Sprintf("value-%d", i)
				}
			}
			name := fmt.Sprintf("fields %04b, outcome %d", mask, o)
			args := s.appendArgs(&ev, []byte("{}"))
			want := append([]string{s.stream, "p:{audit}:idxkeys", "p:{audit}:idx:skew"},
				s.indexKeys(nil, ev.Subject, ev.Caller, ev.SourceDomain, ev.TargetDomain, ev.Outcome)...)
			if args[0] != "evalsha" || args[1] != appendScript.Hash() || args[2] != len(want) {
				t.Fatalf("%s: command %v %v, %v keys; want %d", name, args[0], args[1], args[2], len(want))
			}
			for i, k := range want {
				if args[3+i] != k {
					t.Errorf("%s: key %d is %v, want %s", name, i, args[3+i], k)
				}
			}
			rest := args[3+len(want):]
			wantRest := []any{s.maxLen, s.cutoff().ms, nil, nanos(ev.Time), store.FloorMillis(ev.Time), s.upkeepEvery, s.kinds(want[3:])}
			if len(rest) != len(wantRest) || string(rest[2].([]byte)) != "{}" {
				t.Fatalf("%s: arguments %v", name, rest)
			}
			for i, w := range wantRest {
				if i != 2 && rest[i] != w {
					t.Errorf("%s: argument %d is %v (%T), want %v (%T)", name, i, rest[i], rest[i], w, w)
				}
			}
		}
	}
}

// TestAppendArgsAllocs: once an event's field values are in the Store's
// memo of index keys, its script arguments cost the slice and the boxes of
// its body and time (the number, its decimal, its milliseconds): no key is
// hashed or boxed again, and no fixed argument is boxed.
func TestAppendArgsAllocs(t *testing.T) {
	s, err := New(Options{Client: goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"}), KeyPrefix: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = s.client.Close() })
	ev := store.Event{Subject: "alice@corp.example", Caller: "agent-7", SourceDomain: "corp", TargetDomain: "partner",
		Outcome: store.OutcomeCacheHit, Time: time.Unix(1700000000, 5)}
	body := []byte("{}")
	s.appendArgs(&ev, body) // fills the memo
	const ceiling = 5       // the slice, body, the time's decimal and its box, its milliseconds
	if n := testing.AllocsPerRun(100, func() { s.appendArgs(&ev, body) }); n > ceiling {
		t.Errorf("appendArgs allocates %v objects per event, want at most %d", n, ceiling)
	}
}

// TestKeyMemo: the memo of index keys gives the keys hashedIndexKey builds,
// never holds more than two generations of its bound, and keeps no long
// value.
func TestKeyMemo(t *testing.T) {
	s, err := New(Options{Client: goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"}), KeyPrefix: "p"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = s.client.Close() })
	const bound = 8
	s.keys = newKeyMemo(bound)
	for round := range 2 { // the second round finds some keys in the memo
		for i := range 5 * bound {
			for f := range uint8(len(indexFields)) {
				v := fmt.Sprintf("value-%d", i%(3*bound))
				got := s.indexKeyArg(f, v)
				if want := s.hashedIndexKey(indexFields[f], v); got != want {
					t.Fatalf("round %d: key of %s %q is %v, want %s", round, indexFields[f], v, got, want)
				}
				if n := s.keys.len(); n > 2*bound {
					t.Fatalf("round %d: the memo holds %d keys, bound 2×%d", round, n, bound)
				}
			}
		}
	}
	// A hit comes from the memo: the same boxed key.
	a, b := s.indexKeyArg(0, "alice"), s.indexKeyArg(0, "alice")
	if a != b || a != s.hashedIndexKey("subject", "alice") {
		t.Errorf("repeated key %v, %v", a, b)
	}
	// The same value in another field is another key.
	if c := s.indexKeyArg(1, "alice"); c == a || c != s.hashedIndexKey("caller", "alice") {
		t.Errorf("caller key of alice %v, subject key %v", c, a)
	}
	long := strings.Repeat("x", keyMemoMaxValue+1)
	n := s.keys.len()
	if got := s.indexKeyArg(0, long); got != s.hashedIndexKey("subject", long) {
		t.Errorf("key of a long value %v", got)
	}
	if s.keys.get(keyMemoKey{0, long}) != nil || s.keys.len() > n {
		t.Error("the memo keeps a value longer than keyMemoMaxValue")
	}
}
