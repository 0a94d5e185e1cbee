package bench

// The per-step trace (issue 18): chains one at a time (c=1), over gRPC and
// over REST, against a broker (the chainbroker binary, as measured) that
// exports its spans over OTLP/HTTP to this program. Each chain carries a
// traceparent of its own; its send and answer times on the client and its
// spans' timestamps (the server spans with their step events, the chain,
// its hops, the store operations) say where its time goes. The direct
// baseline's two hops are timed the same way, for comparison.

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/chainbroker/chainbroker/internal/bench/load"
	"github.com/chainbroker/chainbroker/internal/bench/proc"
	"github.com/chainbroker/chainbroker/internal/bench/report"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Chains traced per transport, after traceWarmup untraced ones.
const (
	traceChains = 200
	traceWarmup = 50
)

// traceSpan is one exported span, reduced to what the steps need.
type traceSpan struct {
	name       string
	kind       tracepb.Span_SpanKind
	id, parent string
	start, end int64            // Unix ns
	events     map[string]int64 // first time of each event, Unix ns
}

// otlpReceiver is an OTLP/HTTP trace receiver (protobuf): it keeps the
// spans of the traces it was told to expect.
type otlpReceiver struct {
	mu     sync.Mutex
	want   map[string]bool // trace ids (hex)
	traces map[string][]traceSpan
	srv    *http.Server
	url    string
}

func startOTLPReceiver() (*otlpReceiver, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &otlpReceiver{want: map[string]bool{}, traces: map[string][]traceSpan{}, url: "http://" + lis.Addr().String() + "/v1/traces"}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(lis) }()
	return r, nil
}

func (r *otlpReceiver) close() { _ = r.srv.Close() }

func (r *otlpReceiver) expect(traceID string) {
	r.mu.Lock()
	r.want[traceID] = true
	r.mu.Unlock()
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = io.LimitReader(req.Body, 64<<20)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = io.LimitReader(zr, 256<<20)
	}
	raw, err := io.ReadAll(body)
	var ex collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(raw, &ex)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range ex.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := hex.EncodeToString(sp.GetTraceId())
				if !r.want[id] {
					continue
				}
				ts := traceSpan{name: sp.GetName(), kind: sp.GetKind(), id: hex.EncodeToString(sp.GetSpanId()),
					parent: hex.EncodeToString(sp.GetParentSpanId()), start: int64(sp.GetStartTimeUnixNano()),
					end: int64(sp.GetEndTimeUnixNano()), events: map[string]int64{}}
				for _, e := range sp.GetEvents() {
					if _, ok := ts.events[e.GetName()]; !ok {
						ts.events[e.GetName()] = int64(e.GetTimeUnixNano())
					}
				}
				r.traces[id] = append(r.traces[id], ts)
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// spans returns a trace's spans once its outermost server span has
// arrived (the broker exports a span when it ends; the server span ends
// last), or false.
func (r *otlpReceiver) spans(traceID, root string) ([]traceSpan, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	spans := r.traces[traceID]
	for _, s := range spans {
		if s.name == root && s.kind == tracepb.Span_SPAN_KIND_SERVER {
			return spans, true
		}
	}
	return nil, false
}

// traceparentKey holds the traceparent of a traced REST chain.
type traceparentKey struct{}

// traceparentTransport sets the Traceparent header of a request whose
// context holds one.
type traceparentTransport struct{ base http.RoundTripper }

func (t traceparentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tp, ok := req.Context().Value(traceparentKey{}).(string); ok {
		req = req.Clone(req.Context())
		req.Header.Set("Traceparent", tp)
	}
	return t.base.RoundTrip(req)
}

// tracedChain is one chain of the trace run: its trace id and the client's
// send and answer times.
type tracedChain struct {
	traceID    string
	sent, done int64 // Unix ns
}

func newTraceparent() (traceID, header string) {
	var b [24]byte
	_, _ = rand.Read(b[:])
	traceID = hex.EncodeToString(b[:16])
	return traceID, "00-" + traceID + "-" + hex.EncodeToString(b[16:]) + "-01"
}

// runTrace traces chains at c=1 over each transport, and times the direct
// baseline's hops.
func (b *bench) runTrace(ctx context.Context) error {
	logf("tracing %d chains at c=1 per transport (spans exported by the broker over OTLP/HTTP)...", traceChains)
	recv, err := startOTLPReceiver()
	if err != nil {
		return err
	}
	defer recv.close()
	broker, addrs, _, err := b.startBrokerEnv(ctx, "broker-traced", false, false, []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + recv.url,
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=200", // ms: the spans arrive soon after the run
	})
	if err != nil {
		return err
	}
	defer func() {
		broker.Stop(10 * time.Second)
		b.procs.Remove(broker)
	}()
	if err := b.refreshSubjects(ctx, 2*time.Minute); err != nil {
		return err
	}
	st := &report.StepTrace{Chains: traceChains}
	for _, t := range b.o.transports {
		var target load.Target
		root := "chainbroker.v1.ChainService/Chain"
		switch t {
		case "grpc":
			g, err := load.NewGRPC(addrs.grpc, b.apiKey, sandbox.DomainBName, 1)
			if err != nil {
				return err
			}
			target = g
		case "rest":
			c := load.NewHTTPClient(1)
			c.Transport = traceparentTransport{c.Transport}
			target = &load.REST{Client: c, URL: "http://" + addrs.http + "/v1/chain", APIKey: b.apiKey, Domain: sandbox.DomainBName}
			root = "chainbroker.http"
		}
		chains, err := b.traceChains(ctx, target, recv)
		target.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		var traced [][]traceSpan
		deadline := time.Now().Add(30 * time.Second)
		for _, c := range chains {
			for {
				spans, ok := recv.spans(c.traceID, root)
				if ok {
					traced = append(traced, spans)
					break
				}
				if time.Now().After(deadline) {
					traced = append(traced, nil)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		col := stepColumn(t, chains, traced)
		st.Columns = append(st.Columns, col)
		logf("  %-5s %d chains traced (%d incomplete), median %s", t, col.Traced, col.Incomplete, report.FmtDur(col.Total))
	}
	if b.o.baseline {
		col, err := b.traceBaseline(ctx)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		st.Columns = append(st.Columns, col)
		logf("  direct median %s", report.FmtDur(col.Total))
	}
	b.steps = st
	return nil
}

// traceChains sends traceWarmup chains, then traceChains traced ones, one at
// a time.
func (b *bench) traceChains(ctx context.Context, t load.Target, recv *otlpReceiver) ([]tracedChain, error) {
	var out []tracedChain
	for i := range traceWarmup + traceChains {
		subject := b.subjects[i%len(b.subjects)]
		if i < traceWarmup {
			if err := t.Do(ctx, subject); err != nil {
				return nil, err
			}
			continue
		}
		id, tp := newTraceparent()
		recv.expect(id)
		cctx := metadata.AppendToOutgoingContext(context.WithValue(ctx, traceparentKey{}, tp), "traceparent", tp)
		sent := time.Now()
		err := t.Do(cctx, subject)
		done := time.Now()
		if err != nil {
			return nil, err
		}
		out = append(out, tracedChain{traceID: id, sent: sent.UnixNano(), done: done.UnixNano()})
	}
	return out, ctx.Err()
}

// traceBaseline times the direct baseline's hops at c=1.
func (b *bench) traceBaseline(ctx context.Context) (report.StepColumn, error) {
	base := &load.Baseline{
		Client: load.NewHTTPClient(1), AToken: b.info.A.TokenEndpoint, BToken: b.info.B.TokenEndpoint,
		Audience: b.info.B.Issuer, ClientID: sandbox.BrokerClientID,
		ASecret: sandbox.BrokerSecretA, BSecret: sandbox.BrokerSecretB,
	}
	defer base.Close()
	var hop1, hop2, total []time.Duration
	for i := range traceWarmup + traceChains {
		subject := b.subjects[i%len(b.subjects)]
		t0 := time.Now()
		assertion, err := base.Exchange(ctx, subject)
		if err != nil {
			return report.StepColumn{}, err
		}
		t1 := time.Now()
		if _, err := base.JWTBearer(ctx, assertion); err != nil {
			return report.StepColumn{}, err
		}
		t2 := time.Now()
		if i >= traceWarmup {
			hop1, hop2, total = append(hop1, t1.Sub(t0)), append(hop2, t2.Sub(t1)), append(total, t2.Sub(t0))
		}
	}
	col := report.StepColumn{Name: "direct", Traced: len(total), Total: median(total), Steps: make([]report.StepTime, len(report.Steps))}
	for i, s := range report.Steps {
		switch s.Key {
		case report.StepHop1:
			col.Steps[i] = report.StepTime{Median: median(hop1), Measured: true}
		case report.StepHop2:
			col.Steps[i] = report.StepTime{Median: median(hop2), Measured: true}
		}
	}
	return col, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// errIncomplete: a chain's trace lacks a span or an event a step needs.
var errIncomplete = errors.New("incomplete trace")

// chainMarks are one chain's timestamps (Unix ns), in step order: the
// boundaries of report.Steps, the client's send first and its answer last.
func chainMarks(c tracedChain, spans []traceSpan, rest bool) (marks []int64, upstream [2]int64, err error) {
	find := func(name string, kind tracepb.Span_SpanKind, parent string) (traceSpan, bool) {
		for _, s := range spans {
			if s.name == name && s.kind == kind && (parent == "" || s.parent == parent) {
				return s, true
			}
		}
		return traceSpan{}, false
	}
	const srv, internal, client = tracepb.Span_SPAN_KIND_SERVER, tracepb.Span_SPAN_KIND_INTERNAL, tracepb.Span_SPAN_KIND_CLIENT
	method, ok := find("chainbroker.v1.ChainService/Chain", srv, "")
	outer := method
	if rest {
		outer, ok = find("chainbroker.http", srv, "")
	}
	chain, ok2 := find("chainbroker.Chain", internal, method.id)
	hop1, ok3 := find("chainbroker.hop.token_exchange", internal, chain.id)
	hop2, ok4 := find("chainbroker.hop.jwt_bearer", internal, chain.id)
	mark, ok5 := find("store.mark", client, chain.id)
	appendSpan, ok6 := find("store.append", client, chain.id)
	decoded, ok7 := method.events["chainbroker.request_decoded"]
	authed, ok8 := method.events["chainbroker.caller_authenticated"]
	answered, ok9 := method.events["chainbroker.service_answered"]
	if !ok || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || !ok8 || !ok9 {
		return nil, upstream, errIncomplete
	}
	for i, hop := range []traceSpan{hop1, hop2} {
		if h, ok := find("HTTP POST", client, hop.id); ok {
			upstream[i] = h.end - h.start
		}
	}
	// The server span ends once the answer is written, sometimes after the
	// client has read it: the answer's write is then taken to end when it
	// was read.
	marks = []int64{c.sent, outer.start, decoded, authed, hop1.start, hop1.end, mark.start, mark.end, hop2.end,
		appendSpan.end, answered, min(outer.end, c.done), c.done}
	if len(marks) != len(report.Steps)+1 || !slices.IsSorted(marks) {
		return nil, upstream, errIncomplete
	}
	return marks, upstream, nil
}

// stepColumn turns a transport's traced chains into the report's column:
// the median of each step, and the timestamps of the chain whose total is
// the median's.
func stepColumn(name string, chains []tracedChain, traced [][]traceSpan) report.StepColumn {
	col := report.StepColumn{Name: name, Steps: make([]report.StepTime, len(report.Steps))}
	var all [][]int64
	var up1, up2 []time.Duration
	for i, c := range chains {
		marks, upstream, err := chainMarks(c, traced[i], name == "rest")
		if err != nil {
			col.Incomplete++
			continue
		}
		all = append(all, marks)
		up1, up2 = append(up1, time.Duration(upstream[0])), append(up2, time.Duration(upstream[1]))
	}
	col.Traced = len(all)
	if len(all) == 0 {
		return col
	}
	totals := make([]time.Duration, len(all))
	for i, m := range all {
		totals[i] = time.Duration(m[len(m)-1] - m[0])
	}
	col.Total = median(totals)
	one := 0 // the chain whose total is closest to the median
	for i, t := range totals {
		if (t - col.Total).Abs() < (totals[one] - col.Total).Abs() {
			one = i
		}
	}
	for s := range report.Steps {
		ds := make([]time.Duration, len(all))
		for i, m := range all {
			ds[i] = time.Duration(m[s+1] - m[s])
		}
		col.Steps[s] = report.StepTime{Median: median(ds), OneAt: time.Duration(all[one][s+1] - all[one][0]), Measured: true}
	}
	col.OneTotal = totals[one]
	col.Upstream = [2]time.Duration{median(up1), median(up2)}
	return col
}

// startBrokerEnv is startBroker with extra environment variables for the
// broker.
func (b *bench) startBrokerEnv(ctx context.Context, name string, inProcess, cache bool, env []string, extraArgs ...string) (*proc.Proc, brokerAddrs, string, error) {
	saved := b.o.brokerEnv
	b.o.brokerEnv = append(slices.Clone(saved), env...)
	defer func() { b.o.brokerEnv = saved }()
	return b.startBroker(ctx, name, inProcess, cache, extraArgs...)
}
