package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// metricValue reads one sample from a Prometheus text exposition.
func metricValue(t *testing.T, text, name string, labels map[string]string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(line, k+`="`+v+`"`) {
				ok = false
			}
		}
		if ok {
			f, err := strconv.ParseFloat(line[strings.LastIndex(line, " ")+1:], 64)
			if err != nil {
				t.Fatalf("bad sample %q", line)
			}
			return f
		}
	}
	return 0
}

func TestMetrics(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Redis: true})
	subject := e.SubjectToken(t, sandbox.Alice)
	for range 2 {
		if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
			t.Fatal(err)
		}
	}
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{FixedJTI: "same"})
	e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
	e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}) // replayed
	e.Sandbox.A.ResetMisbehaviour()
	e.Sandbox.B.Unlink(sandbox.AliceSubA)
	e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}) // invalid_grant at B

	status, body := e.Get(t, "/metrics")
	if status != 200 {
		t.Fatalf("/metrics = %d", status)
	}
	text := string(body)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"chainbroker_chains_total", map[string]string{"outcome": "success", "source": "domain-a", "target": "domain-b"}, 3},
		{"chainbroker_chains_total", map[string]string{"outcome": "failure", "reason": "ASSERTION_REPLAYED"}, 1},
		{"chainbroker_chains_total", map[string]string{"outcome": "failure", "reason": "JWT_BEARER_REJECTED"}, 1},
		{"chainbroker_replay_hits_total", map[string]string{"target": "domain-b"}, 1},
		{"chainbroker_upstream_errors_total", map[string]string{"domain": "domain-b", "hop": "jwt_bearer", "error": "invalid_grant"}, 1},
		{"chainbroker_hop_duration_seconds_count", map[string]string{"domain": "domain-a", "hop": "token_exchange"}, 5},
		{"chainbroker_hop_duration_seconds_count", map[string]string{"domain": "domain-b", "hop": "jwt_bearer"}, 4},
		{"chainbroker_store_operation_duration_seconds_count", map[string]string{"operation": "mark"}, 5}, // the replayed one too
		{"chainbroker_store_operation_duration_seconds_count", map[string]string{"operation": "append"}, 5},
		{"chainbroker_grpc_requests_total", map[string]string{"method": "/chainbroker.v1.ChainService/Chain", "code": "OK"}, 3},
		{"chainbroker_grpc_requests_total", map[string]string{"method": "/chainbroker.v1.ChainService/Chain", "code": "PermissionDenied"}, 2},
	} {
		if got := metricValue(t, text, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if !strings.Contains(text, "go_goroutines") || !strings.Contains(text, "process_resident_memory_bytes") {
		t.Error("Go and process collectors missing")
	}
}

// One chain over REST gives one trace: the HTTP server span, the method's
// server span (the one a gRPC call gets), the chain, its hops with their HTTP client spans, and the
// store operations; traceparent reaches the authorization servers.
func TestTracingSpanTree(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	proxy := apptest.NewProxy(t, "") // in front of domain A: the traceparents it receives
	e := apptest.StartWith(t, apptest.Options{Tracer: tp, Mutate: proxy.Front(0, nil)})
	subject := e.SubjectToken(t, sandbox.Alice)
	status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": "domain-b"})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	if err := tp.ForceFlush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	find := func(name string, kind trace.SpanKind, parent sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
		t.Helper()
		for _, s := range spans {
			if s.Name() == name && s.SpanKind() == kind && (parent == nil || s.Parent().SpanID() == parent.SpanContext().SpanID()) {
				return s
			}
		}
		var have []string
		for _, s := range spans {
			have = append(have, s.Name()+"/"+s.SpanKind().String())
		}
		t.Fatalf("no %s span %q under %v; have %v", kind, name, parent != nil, have)
		return nil
	}
	root := find("chainbroker.http", trace.SpanKindServer, nil)
	grpcServer := find("chainbroker.v1.ChainService/Chain", trace.SpanKindServer, root)
	chain := find("chainbroker.Chain", trace.SpanKindInternal, grpcServer)
	for _, hop := range []string{"chainbroker.hop.token_exchange", "chainbroker.hop.jwt_bearer"} {
		find("HTTP POST", trace.SpanKindClient, find(hop, trace.SpanKindInternal, chain))
	}
	find("store.mark", trace.SpanKindClient, chain)
	find("store.append", trace.SpanKindClient, chain)
	traceID := chain.SpanContext().TraceID()
	for _, s := range spans {
		if s.SpanContext().TraceID() != traceID && s.Name() != "store.ping" { // readiness pings are their own traces
			t.Errorf("span %q is in another trace", s.Name())
		}
	}
	var traceparents []string
	for _, r := range proxy.Requests() {
		traceparents = append(traceparents, r.Header.Get("Traceparent"))
	}
	if len(traceparents) != 1 || !regexp.MustCompile(`^00-`+traceID.String()+`-[0-9a-f]{16}-01$`).MatchString(traceparents[0]) {
		t.Errorf("domain A saw traceparent %q, want one in trace %s", traceparents, traceID)
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := apptest.Start(t, nil)
	resp, err := e.HTTP.Get(e.HTTPURL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var doc struct {
		Swagger string                     `json:"swagger"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	for _, p := range []string{"/v1/chain", "/v1/domains", "/v1/audit/events", "/v1/audit/events/{id}"} {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("OpenAPI lacks %s", p)
		}
	}
	if !bytes.Contains(b, []byte(`"subject_token"`)) {
		t.Error("OpenAPI does not use the proto field names")
	}
}
