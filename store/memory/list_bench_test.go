package memory

import (
	"context"
	"flag"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

var benchEvents = flag.String("audit-events", "10000", "comma-separated audit trail sizes for BenchmarkAuditList")

// BenchmarkAuditList is store/redis's BenchmarkAuditList on the memory
// store: the first page (50 events) of filtered listings over trails of
// -audit-events sizes, with the candidates one page examines
// (entries/page). The events are store/redis's benchmark events (one in
// 100 of subject "target"; source corp-<i%2> to partner-<i%2> but for one
// in 1000 from corp-1 to partner-0), appended with their own time; the
// clock advances a millisecond per event, so the trail's older half ends
// at a known time.
func BenchmarkAuditList(b *testing.B) {
	for _, f := range strings.Split(*benchEvents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("-audit-events: bad size %q", f)
		}
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			s := New(Options{MaxEvents: n})
			start := time.Now().Add(-time.Duration(n) * time.Millisecond)
			clock := start
			s.now = func() time.Time { return clock }
			ctx := context.Background()
			for i := range n {
				clock = start.Add(time.Duration(i) * time.Millisecond)
				e := benchEvent(i)
				if _, err := s.Append(ctx, &e); err != nil {
					b.Fatalf("Append: %v", err)
				}
			}
			half := start.Add(time.Duration(n/2) * time.Millisecond)
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
					examined := 0
					for b.Loop() {
						page, next, err := s.List(ctx, q.f, store.DefaultPageSize, "")
						if err != nil || len(page) == 0 || (len(page) != store.DefaultPageSize && next != "") {
							b.Fatalf("List = %d events, next %q, %v", len(page), next, err)
						}
					}
					w := s.newWalk(q.f)
					_, _, err := store.CollectPage(ctx, store.DefaultPageSize, s.listBudget, s.listSlice, func(ctx context.Context, need, limit int) ([]store.Event, int, bool, error) {
						found, k, exhausted, err := w.step(ctx, need, limit)
						examined += k
						return found, k, exhausted, err
					})
					if err != nil {
						b.Fatalf("CollectPage: %v", err)
					}
					b.ReportMetric(float64(examined), "entries/page")
				})
			}
		})
	}
}

// benchEvent is store/redis's benchmark event i, without its time.
func benchEvent(i int) store.Event {
	e := store.Event{
		Caller:           "spiffe://corp.example/ns/app/sa/client-" + strconv.Itoa(i%10),
		Subject:          "user-" + strconv.Itoa(i%1000) + "@corp.example",
		SourceDomain:     "corp-" + strconv.Itoa(i%2),
		TargetDomain:     "partner-" + strconv.Itoa(i%2),
		Scopes:           []string{"orders.read", "orders.write"},
		Outcome:          store.Outcome(1 + i%3),
		SubjectTokenHash: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
		AssertionJTIHash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		AssertionIssuer:  "https://corp.example/realms/corp",
	}
	if i%100 == 0 {
		e.Subject = "target"
	}
	if i%1000 == 1 {
		e.TargetDomain = "partner-0"
	}
	return e
}
