package redis

import (
	"context"
	"flag"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/store"
)

// benchEvents lists the trail sizes of BenchmarkAuditList: loading
// 1,000,000 events takes minutes, so only go test -bench with
// -audit-events=10000,100000,1000000 loads them. Benchmarks do not run at
// all without -bench.
var benchEvents = flag.String("audit-events", "10000", "comma-separated audit trail sizes for BenchmarkAuditList")

// benchEvent is event i of a benchmark trail: one in 100 has the subject
// "target" (10,000 of a million), the others one of 1000 users; ten
// callers, outcomes mixed; source domain corp-<i%2> with its own target
// partner-<i%2>, except one event in 1000 that goes from corp-1 to
// partner-0 (the rare combination of two fields each on half the trail).
func benchEvent(i int, base time.Time) store.Event {
	e := store.Event{
		Time:             base.Add(time.Duration(i) * time.Millisecond),
		Caller:           "spiffe://corp.example/ns/app/sa/client-" + strconv.Itoa(i%10),
		Subject:          "user-" + strconv.Itoa(i%1000) + "@corp.example",
		SourceDomain:     "corp-" + strconv.Itoa(i%2),
		TargetDomain:     "partner-" + strconv.Itoa(i%2),
		Scopes:           []string{"orders.read", "orders.write"},
		Outcome:          store.Outcome(1 + i%3),
		SubjectTokenHash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		AssertionJTIHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		AssertionIssuer:  "https://corp.example/realms/corp",
		Hops: []store.Hop{
			{Domain: "corp", Endpoint: "https://corp.example/realms/corp/protocol/openid-connect/token", GrantType: "urn:ietf:params:oauth:grant-type:token-exchange", Duration: 12 * time.Millisecond},
			{Domain: "partner", Endpoint: "https://partner.example/token", GrantType: "urn:ietf:params:oauth:grant-type:jwt-bearer", Duration: 9 * time.Millisecond},
		},
	}
	if i%100 == 0 {
		e.Subject = "target"
	}
	if i%1000 == 1 {
		e.TargetDomain = "partner-0"
	}
	return e
}

// loadTrail appends n benchmark events with the store's own script (so with
// their indexes), pipelined from a few goroutines, each with the time of
// its append (in step, as the broker's events). It returns the time when
// half the trail was loaded.
func loadTrail(b *testing.B, s *Store, n int) time.Time {
	b.Helper()
	ctx := context.Background()
	if err := appendScript.Load(ctx, s.client).Err(); err != nil {
		b.Fatalf("SCRIPT LOAD: %v", err)
	}
	base := time.Now().Add(-time.Duration(n) * time.Millisecond)
	const workers, chunk = 8, 100
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		loaded  int
		halfway time.Time
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 0, 1024)
			for lo := w * chunk; lo < n; lo += workers * chunk {
				pipe := s.client.Pipeline()
				for i := lo; i < min(lo+chunk, n); i++ {
					e := benchEvent(i, base)
					e.Time = time.Now()
					buf = e.AppendJSON(buf[:0])
					keys := append(make([]string, 0, 8), s.stream, s.prefix+":{audit}:idxkeys", s.skewKey())
					keys = s.indexKeys(keys, e.Subject, e.Caller, e.SourceDomain, e.TargetDomain, e.Outcome)
					args := []any{"evalsha", appendScript.Hash(), len(keys)}
					for _, k := range keys {
						args = append(args, k)
					}
					args = append(args, s.maxLen, 0, string(buf), nanos(e.Time), store.FloorMillis(e.Time), s.upkeepEvery, s.kinds(keys[3:]))
					pipe.Do(ctx, args...)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if loaded += min(chunk, n-lo); loaded >= n/2 && halfway.IsZero() {
					halfway = time.Now()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("load: %v", err)
	}
	return halfway
}

func usedMemory(b *testing.B, c goredis.UniversalClient) int64 {
	b.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatalf("INFO memory: %v", err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("used_memory %q: %v", v, err)
			}
			return n
		}
	}
	b.Fatalf("INFO memory has no used_memory")
	return 0
}

// BenchmarkAuditList measures the first page (50 events) of filtered
// listings over trails of -audit-events sizes (the cost follows the page,
// not the trail), with the index entries one page examines
// (entries/page), and Redis's memory per event (stream plus indexes):
//
//   - subject: one event in 100;
//   - subject+outcome: two fields, a third of the subject's events;
//   - source+target: two fields on half the trail each, together one event
//     in 1000 (a page examines about 25,000 entries, once the trail holds
//     a page of them: from 100,000 events);
//   - subject+range: the subject in the trail's older half;
//   - range: every event of the trail's older half (the walk starts a
//     second of appends past the end, at the load's rate);
//   - source+target+range: the rare pair in the older half.
func BenchmarkAuditList(b *testing.B) {
	for _, f := range strings.Split(*benchEvents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("-audit-events: bad size %q", f)
		}
		label := strconv.Itoa(n)
		switch {
		case n%1_000_000 == 0:
			label = strconv.Itoa(n/1_000_000) + "M"
		case n%1000 == 0:
			label = strconv.Itoa(n/1000) + "k"
		}
		b.Run("events="+label, func(b *testing.B) {
			srv := redistest.New(b, redistest.Options{})
			s := newStore(b, srv, Options{KeyPrefix: "bench", AuditMaxLen: int64(n) * 2})
			before := usedMemory(b, s.client)
			start := time.Now()
			half := loadTrail(b, s, n)
			loaded := time.Since(start)
			after := usedMemory(b, s.client)
			if got := s.client.XLen(context.Background(), s.stream).Val(); got != int64(n) {
				b.Fatalf("XLEN = %d, want %d", got, n)
			}
			streamBytes, err := s.client.MemoryUsage(context.Background(), s.stream, 0).Result()
			if err != nil {
				b.Fatalf("MEMORY USAGE: %v", err)
			}
			b.Logf("loaded %d events in %v (%.0f/s, %d skewed); used_memory %d -> %d bytes", n, loaded.Round(time.Millisecond), float64(n)/loaded.Seconds(), s.client.XLen(context.Background(), s.skewKey()).Val(), before, after)
			for _, q := range []struct {
				name string
				f    store.Filter
			}{
				{"subject", store.Filter{Subject: "target"}},
				{"subject+outcome", store.Filter{Subject: "target", Outcome: store.OutcomeSuccess}},
				{"source+target", store.Filter{SourceDomain: "corp-1", TargetDomain: "partner-0"}},
				{"subject+range", store.Filter{Subject: "target", Start: start, End: half}},
				{"range", store.Filter{Start: start, End: half}},
				{"source+target+range", store.Filter{SourceDomain: "corp-1", TargetDomain: "partner-0", Start: start, End: half}},
			} {
				b.Run(q.name, func(b *testing.B) {
					ctx := context.Background()
					examined := pageWork(b, s, q.f)
					events := 0
					for b.Loop() {
						page, _, err := s.List(ctx, q.f, store.DefaultPageSize, "")
						if err != nil || len(page) == 0 {
							b.Fatalf("List = %d events, %v", len(page), err)
						}
						events += len(page) // short when the deadline came close (OpTimeout)
					}
					b.ReportMetric(float64(examined), "entries/page")
					b.ReportMetric(float64(events)/float64(b.N), "events/page")
					b.ReportMetric(float64(after-before)/float64(n), "redis-bytes/event")
					b.ReportMetric(float64(streamBytes)/float64(n), "stream-bytes/event")
				})
			}
		})
	}
}

// pageWork returns how many entries the first page of f reads, without a
// deadline.
func pageWork(b *testing.B, s *Store, f store.Filter) int {
	b.Helper()
	ctx := context.Background()
	w, err := s.newWalk(ctx, f, streamID{}, false)
	if err != nil || w == nil {
		b.Fatalf("newWalk: %v", err)
	}
	examined := 0
	_, _, err = store.CollectPage(ctx, store.DefaultPageSize, s.listBudget, s.listSlice, func(ctx context.Context, need, limit int) ([]store.Event, int, bool, error) {
		found, n, exhausted, err := w.step(ctx, need, limit)
		examined += n
		return found, n, exhausted, err
	})
	if err != nil {
		b.Fatalf("CollectPage: %v", err)
	}
	return examined
}
