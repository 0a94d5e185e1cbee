package broker_test

import (
	"context"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/telemetry"
)

// scrape returns the /metrics body's size and its chainbroker series (the
// lines without their values).
func scrape(t *testing.T, m *telemetry.Metrics) (int, []string) {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	var series []string
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "chainbroker_") {
			series = append(series, line[:strings.LastIndexByte(line, ' ')])
		}
	}
	slices.Sort(series)
	return len(body), series
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// maxAudited is the bound of a request string recorded while unchecked:
// 128 bytes and the ellipsis.
const maxAudited = 128 + len("…")

// TestRefusedRequestsBoundMetricsAndAudit (#14.2): refused requests with a
// 62 KB target_domain or source_domain, 3,000 scopes, or an upstream error
// code of 1 KB add no metric series and record bounded audit fields.
func TestRefusedRequestsBoundMetricsAndAudit(t *testing.T) {
	m := telemetry.NewMetrics("domain-a", "domain-b")
	f := newFixture(t, func(c *broker.Config) { c.Observer = m })
	f.ep.refuse = func(n int64) string { return strings.Repeat("e", 1024) + strconv.FormatInt(n%8, 10) }
	ctx := context.Background()
	many := make([]string, 3000)
	for i := range many {
		many[i] = "scope-" + strconv.Itoa(i) + strings.Repeat("s", 30)
	}
	huge := func(i int) string { return strconv.Itoa(i%8) + strings.Repeat("d", 62<<10) }
	forged := forgedToken("victim")
	calls := func(bigTargets, manyScopes, others int) {
		for i := range bigTargets {
			_, err := f.b.Chain(ctx, broker.Request{Caller: "agent", SubjectToken: forged, TargetDomain: huge(i)})
			if reasonOf(t, err) != broker.ReasonRequestInvalid {
				t.Fatalf("62 KB target_domain: %v", err)
			}
		}
		for range manyScopes {
			_, err := f.b.Chain(ctx, broker.Request{Caller: "agent", SubjectToken: forged, TargetDomain: "domain-b", Scopes: many})
			if reasonOf(t, err) != broker.ReasonRequestInvalid {
				t.Fatalf("3,000 scopes: %v", err)
			}
		}
		for i := range others {
			for _, req := range []broker.Request{
				{SourceDomain: huge(i), TargetDomain: "domain-b"},                                                   // too long
				{TargetDomain: "unknown-" + strings.Repeat("u", 900) + strconv.Itoa(i%8)},                           // unknown, within bounds
				{SourceDomain: "unknown-" + strconv.Itoa(i%8) + strings.Repeat("u", 900), TargetDomain: "domain-b"}, // unknown source
				{TargetDomain: "domain-b", Scopes: []string{"s" + strings.Repeat("\x01", 2000)}},                    // malformed scope
				{TargetDomain: "domain-b"}, // hop 1 refuses, 1 KB error code
			} {
				req.Caller, req.SubjectToken = "agent", forged
				if _, err := f.b.Chain(ctx, req); err == nil {
					t.Fatal("a refused request succeeded")
				}
			}
		}
	}
	calls(1, 1, 1) // every kind of refusal once: the series they make
	size0, series0 := scrape(t, m)
	heap0 := liveHeap()
	calls(1000, 2000, 100)
	heap1 := liveHeap()
	size1, series1 := scrape(t, m)
	t.Logf("/metrics %d -> %d bytes; live heap %d -> %d KiB (the audit trail in memory included)", size0, size1, heap0>>10, heap1>>10)
	// What the memory store keeps of 3,500 events: a few KiB each at most
	// (unbounded, the 62 KB domains and 3,000 scopes kept 150 MiB).
	if heap1 > heap0+32<<20 {
		t.Errorf("the live heap grew by %d MiB", (heap1-heap0)>>20)
	}
	if !slices.Equal(series0, series1) {
		var added []string
		for _, s := range series1 {
			if !slices.Contains(series0, s) {
				added = append(added, s[:min(len(s), 200)])
			}
		}
		t.Errorf("refused requests added %d metric series, e.g. %q", len(series1)-len(series0), added[:min(len(added), 3)])
	}
	// Counts grow by a few digits; a label value would add kilobytes.
	if size1 > size0+4096 {
		t.Errorf("/metrics grew from %d to %d bytes", size0, size1)
	}
	for _, s := range series1 {
		if len(s) > 512 {
			t.Errorf("series of %d bytes: %.200q", len(s), s)
		}
	}

	events := f.events(t, store.Filter{})
	if want := 1001 + 2001 + 5*101; len(events) != want {
		t.Fatalf("%d audit events, want %d", len(events), want)
	}
	for _, e := range events {
		for name, v := range map[string]string{"target_domain": e.TargetDomain, "source_domain": e.SourceDomain,
			"unverified_subject": e.UnverifiedSubject, "subject": e.Subject, "upstream_error": e.UpstreamError} {
			if len(v) > maxAudited {
				t.Fatalf("event %s: %s of %d bytes", e.ID, name, len(v))
			}
		}
		if len(e.Scopes) > 32 {
			t.Fatalf("event %s: %d scopes", e.ID, len(e.Scopes))
		}
		for _, s := range e.Scopes {
			if len(s) > maxAudited {
				t.Fatalf("event %s: a scope of %d bytes", e.ID, len(s))
			}
		}
		if n := len(e.AppendJSON(nil)); n > 8<<10 {
			t.Fatalf("event %s: %d bytes of JSON", e.ID, n)
		}
	}
}

// TestSubjectFilterFindsVerifiedSubjectsOnly (#14.2): a forged token naming
// a victim's sub leaves an event that the subject filter does not attribute
// to the victim; the victim's own chain is found.
func TestSubjectFilterFindsVerifiedSubjectsOnly(t *testing.T) {
	for _, verify := range []bool{false, true} {
		t.Run("verify_subject_token="+strconv.FormatBool(verify), func(t *testing.T) {
			f := newFixture(t, func(c *broker.Config) { c.Domains[0].VerifySubjectToken = verify })
			ctx := context.Background()
			_, err := f.b.Chain(ctx, broker.Request{Caller: "agent", SubjectToken: forgedToken("victim"), TargetDomain: "domain-b"})
			want := broker.ReasonTokenExchangeRejected
			if verify {
				want = broker.ReasonSubjectTokenInvalid
			}
			if got := reasonOf(t, err); got != want {
				t.Fatalf("forged token: %v, want %s", err, want)
			}
			if evs := f.events(t, store.Filter{Subject: "victim"}); len(evs) != 0 {
				t.Fatalf("the subject filter attributes %d forged events to the victim: %+v", len(evs), evs[0])
			}
			all := f.events(t, store.Filter{})
			if len(all) != 1 || all[0].UnverifiedSubject != "victim" || all[0].SubjectVerified || all[0].Subject != "" {
				t.Fatalf("forged event: %+v", all)
			}

			if _, err := f.b.Chain(ctx, broker.Request{Caller: "agent", SubjectToken: f.subjectToken(t, "victim", nil, ""), TargetDomain: "domain-b"}); err != nil {
				t.Fatal(err)
			}
			evs := f.events(t, store.Filter{Subject: "victim"})
			if len(evs) != 1 || !evs[0].SubjectVerified || evs[0].Outcome != store.OutcomeSuccess || evs[0].UnverifiedSubject != "" {
				t.Fatalf("the victim's own chain: %+v", evs)
			}
		})
	}
}
