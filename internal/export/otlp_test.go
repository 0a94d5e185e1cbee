package export_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/chainbroker/chainbroker/internal/export"
	"github.com/chainbroker/chainbroker/store"
)

// collector is a loopback OTLP/HTTP logs receiver that decodes the protobuf
// requests; it answers 503 while down returns true.
type collector struct {
	t        *testing.T
	mu       sync.Mutex
	requests []*collogspb.ExportLogsServiceRequest
	refused  atomic.Int64
	down     func() bool
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		c.t.Errorf("request %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if c.down != nil && c.down() {
		c.refused.Add(1)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		c.t.Error(err)
		return
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		c.t.Errorf("not an ExportLogsServiceRequest: %v", err)
		http.Error(w, "bad protobuf", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.requests = append(c.requests, &req)
	c.mu.Unlock()
	out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *collector) records() []*logspb.LogRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*logspb.LogRecord
	for _, r := range c.requests {
		for _, rl := range r.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				out = append(out, sl.LogRecords...)
			}
		}
	}
	return out
}

func attrMap(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := map[string]*commonpb.AnyValue{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func newCollector(t *testing.T) (*collector, string) {
	c := &collector{t: t}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv.URL + "/v1/logs"
}

// The OTLP sink sends one log record per event, with the event's time,
// severity, the JSON line as body and its fields as attributes.
func TestOTLPSinkRecords(t *testing.T) {
	c, endpoint := newCollector(t)
	sink, err := export.NewOTLP(export.OTLPOptions{Endpoint: endpoint, ServiceInstance: "pod-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	when := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	evs := []store.Event{
		{ID: "1-0", Time: when, Caller: "agent", Subject: "alice", SourceDomain: "a", TargetDomain: "b", Scopes: []string{"read", "write"},
			Outcome: store.OutcomeSuccess, SubjectTokenHash: "aa11", AssertionJTIHash: "bb22", SubjectVerified: true, Mode: "token_exchange"},
		{ID: "2-0", Time: when.Add(time.Second), Caller: "agent", Outcome: store.OutcomeFailure, Reason: "POLICY_DENIED", UnverifiedSubject: "mallory"},
	}
	if err := sink.Write(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if len(c.requests) != 1 {
		t.Fatalf("%d requests, want 1 per batch", len(c.requests))
	}
	res := attrMap(c.requests[0].ResourceLogs[0].Resource.Attributes)
	c.mu.Unlock()
	if res["service.name"].GetStringValue() != "chainbroker" || res["service.instance.id"].GetStringValue() != "pod-1" {
		t.Errorf("resource attributes %v", res)
	}
	recs := c.records()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	r0, r1 := recs[0], recs[1]
	if r0.TimeUnixNano != uint64(when.UnixNano()) || r0.ObservedTimeUnixNano == 0 || r0.EventName != export.EventName {
		t.Errorf("record 0 time %d observed %d event %q", r0.TimeUnixNano, r0.ObservedTimeUnixNano, r0.EventName)
	}
	if r0.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_INFO || r1.SeverityNumber != logspb.SeverityNumber_SEVERITY_NUMBER_WARN {
		t.Errorf("severities %v %v", r0.SeverityNumber, r1.SeverityNumber)
	}
	if got, want := r0.Body.GetStringValue(), string(evs[0].AppendJSON(nil)); got != want {
		t.Errorf("body %q, want the JSON line %q", got, want)
	}
	a0 := attrMap(r0.Attributes)
	for k, want := range map[string]string{
		"chainbroker.audit.id": "1-0", "chainbroker.audit.outcome": "success", "chainbroker.audit.caller": "agent",
		"chainbroker.audit.subject": "alice", "chainbroker.audit.source_domain": "a", "chainbroker.audit.target_domain": "b",
		"chainbroker.audit.subject_token_hash": "aa11", "chainbroker.audit.assertion_jti_hash": "bb22", "chainbroker.audit.mode": "token_exchange",
	} {
		if got := a0[k].GetStringValue(); got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	if !a0["chainbroker.audit.subject_verified"].GetBoolValue() {
		t.Error("subject_verified missing")
	}
	var scopes []string
	for _, v := range a0["chainbroker.audit.scopes"].GetArrayValue().GetValues() {
		scopes = append(scopes, v.GetStringValue())
	}
	if !slices.Equal(scopes, []string{"read", "write"}) {
		t.Errorf("scopes %v", scopes)
	}
	a1 := attrMap(r1.Attributes)
	if a1["chainbroker.audit.reason"].GetStringValue() != "POLICY_DENIED" || a1["chainbroker.audit.outcome"].GetStringValue() != "failure" ||
		a1["chainbroker.audit.unverified_subject"].GetStringValue() != "mallory" {
		t.Errorf("record 1 attributes %v", a1)
	}
	if _, ok := a1["chainbroker.audit.subject"]; ok {
		t.Error("an empty field sent as an attribute")
	}
}

// A collector that answers an error or a redirect has not accepted the batch.
func TestOTLPSinkRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"503", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }},
		{"400", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "bad", http.StatusBadRequest) }},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/v1/logs", http.StatusTemporaryRedirect)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			sink, err := export.NewOTLP(export.OTLPOptions{Endpoint: srv.URL + "/v1/logs"})
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Write(t.Context(), []store.Event{{ID: "1-0"}}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := export.NewOTLP(export.OTLPOptions{Endpoint: "ftp://x/v1/logs"}); err == nil {
		t.Error("ftp endpoint accepted")
	}
}

// Through the exporter and a real Redis: a collector down for a while gets
// every event once it is back, each exactly once.
func TestOTLPExportCollectorDown(t *testing.T) {
	f := newFixture(t)
	ids := f.appendEvents(t, 40, "o")
	c, endpoint := newCollector(t)
	var up atomic.Bool
	c.down = func() bool { return !up.Load() }
	sink, err := export.NewOTLP(export.OTLPOptions{Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	run(t, export.Options{Source: f.group(t, "c1"), Sink: sink, BatchSize: 15})
	poll(t, "refused requests", func() bool { return c.refused.Load() >= 3 })
	up.Store(true)
	poll(t, "40 records", func() bool { return len(c.records()) >= 40 })
	poll(t, "no pending entry", func() bool { return f.pending(t) == 0 })
	var got []string
	for _, r := range c.records() {
		got = append(got, attrMap(r.Attributes)["chainbroker.audit.id"].GetStringValue())
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("collector got %d records, want the 40 events once each in order", len(got))
	}
}
