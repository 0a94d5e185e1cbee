package bench

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/chainbroker/chainbroker/internal/bench/report"
)

// synthSpans are the spans a broker exports for one chain sent at t0 (Unix
// ns), every step taking step: gRPC's (the method span outermost) or REST's
// (the HTTP span around it).
func synthSpans(t0, step int64, rest bool) []*tracepb.Span {
	at := func(i int) uint64 { return uint64(t0 + int64(i)*step) }
	id := func(n byte) []byte { return []byte{n, 0, 0, 0, 0, 0, 0, 1} }
	ev := func(name string, i int) *tracepb.Span_Event {
		return &tracepb.Span_Event{Name: name, TimeUnixNano: at(i)}
	}
	const srv, in, cl = tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_INTERNAL, tracepb.Span_SPAN_KIND_CLIENT
	span := func(n byte, parent []byte, name string, kind tracepb.Span_SpanKind, from, to int) *tracepb.Span {
		return &tracepb.Span{SpanId: id(n), ParentSpanId: parent, Name: name, Kind: kind, StartTimeUnixNano: at(from), EndTimeUnixNano: at(to)}
	}
	// Marks: 0 send, 1 server start, 2 decoded, 3 authenticated, 4-5 hop 1,
	// 6-7 mark, 8 hop 2 end, 9 append end, 10 answered, 11 server end, 12 answer.
	method := span(1, nil, "chainbroker.v1.ChainService/Chain", srv, 1, 11)
	spans := []*tracepb.Span{method}
	if rest {
		method.StartTimeUnixNano, method.ParentSpanId = at(2), id(9)
		spans = append(spans, span(9, nil, "chainbroker.http", srv, 1, 11))
	}
	method.Events = []*tracepb.Span_Event{ev("chainbroker.request_decoded", 2), ev("chainbroker.caller_authenticated", 3), ev("chainbroker.service_answered", 10)}
	chain := span(2, id(1), "chainbroker.Chain", in, 3, 10)
	hop1 := span(3, id(2), "chainbroker.hop.token_exchange", in, 4, 5)
	hop2 := span(4, id(2), "chainbroker.hop.jwt_bearer", in, 7, 8)
	return append(spans, chain, hop1, hop2,
		span(5, id(3), "HTTP POST", cl, 4, 5), span(6, id(4), "HTTP POST", cl, 7, 8),
		span(7, id(2), "store.mark", cl, 6, 7), span(8, id(2), "store.append", cl, 8, 9))
}

// The receiver keeps the expected traces' spans from OTLP/HTTP exports;
// each step of a chain is the interval between two of its timestamps.
func TestStepTrace(t *testing.T) {
	recv, err := startOTLPReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.close()
	for _, rest := range []bool{false, true} {
		var chains []tracedChain
		var req collectortrace.ExportTraceServiceRequest
		scope := &tracepb.ScopeSpans{}
		req.ResourceSpans = []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{scope}}}
		t0 := time.Now().UnixNano()
		for i := range 5 {
			traceID, _ := newTraceparent()
			recv.expect(traceID)
			step := int64(100+10*i) * 1000 // 100 to 140 µs
			sent := t0 + int64(i)*int64(time.Second)
			chains = append(chains, tracedChain{traceID: traceID, sent: sent, done: sent + 12*step})
			raw, _ := hex.DecodeString(traceID)
			for _, s := range synthSpans(sent, step, rest) {
				s.TraceId = raw
				scope.Spans = append(scope.Spans, s)
			}
		}
		other, _ := newTraceparent() // not expected: dropped
		raw, _ := hex.DecodeString(other)
		scope.Spans = append(scope.Spans, &tracepb.Span{TraceId: raw, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: "x"})
		body, _ := proto.Marshal(&req)
		resp, err := http.Post(recv.url, "application/x-protobuf", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("export: HTTP %d", resp.StatusCode)
		}
		root := "chainbroker.v1.ChainService/Chain"
		if rest {
			root = "chainbroker.http"
		}
		var traced [][]traceSpan
		for _, c := range chains {
			spans, ok := recv.spans(c.traceID, root)
			if !ok {
				t.Fatalf("trace %s not received", c.traceID)
			}
			traced = append(traced, spans)
		}
		if _, ok := recv.spans(other, "x"); ok {
			t.Error("an unexpected trace was kept")
		}
		traced[4] = traced[4][1:] // one incomplete trace: left out
		col := stepColumn(map[bool]string{false: "grpc", true: "rest"}[rest], chains, traced)
		if col.Traced != 4 || col.Incomplete != 1 {
			t.Fatalf("traced %d, incomplete %d", col.Traced, col.Incomplete)
		}
		// Chains 0-3 take 12 steps of 100-130 µs: the median chain is the
		// third (120 µs steps; totals 1.2, 1.32, 1.44, 1.56 ms).
		if col.Total != 1440*time.Microsecond || col.OneTotal != col.Total {
			t.Errorf("total %s, the median chain's %s", col.Total, col.OneTotal)
		}
		for i, s := range col.Steps {
			if s.Median != 120*time.Microsecond || s.OneAt != time.Duration(i+1)*120*time.Microsecond {
				t.Errorf("step %s: median %s, at %s", report.Steps[i].Key, s.Median, s.OneAt)
			}
		}
		if col.Upstream != [2]time.Duration{120 * time.Microsecond, 120 * time.Microsecond} {
			t.Errorf("upstream %v", col.Upstream)
		}
	}
}
