package telemetry

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
)

// ctxStore records the context its Append is given.
type ctxStore struct {
	store.Store
	ctx context.Context
}

func (s *ctxStore) Append(ctx context.Context, e *store.Event) (string, error) {
	s.ctx = ctx
	return s.Store.Append(ctx, e)
}

// TestInstrumentedStoreNoopTracer: with tracing off (a no-op provider), an
// operation starts no span: the store sees the caller's context, and the
// wrapper adds no allocation to an append but its metrics'; with a tracer,
// the store sees the operation's span.
func TestInstrumentedStoreNoopTracer(t *testing.T) {
	mem := memory.New(memory.Options{})
	inner := &ctxStore{Store: mem}
	m := NewMetrics("a", "b")
	ev := &store.Event{Caller: "c", SourceDomain: "a", TargetDomain: "b", Outcome: store.OutcomeCacheHit, Time: time.Unix(1700000000, 0)}
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, 1)

	off := InstrumentStore(inner, m, noop.NewTracerProvider())
	if _, err := off.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if inner.ctx != ctx {
		t.Error("with tracing off, the store got another context than the caller's")
	}
	bare := testing.AllocsPerRun(200, func() { _, _ = mem.Append(ctx, ev) })
	wrapped := testing.AllocsPerRun(200, func() { _, _ = off.Append(ctx, ev) })
	if wrapped > bare {
		t.Errorf("an append through the wrapper allocates %v objects, %v without it", wrapped, bare)
	}

	on := InstrumentStore(inner, m, recordingProvider{})
	if _, err := on.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if inner.ctx == ctx || !trace.SpanFromContext(inner.ctx).SpanContext().IsValid() {
		t.Error("with a tracer, the store did not get the operation's span")
	}
}

// recordingProvider is a provider that is not the no-op one: its spans
// carry a valid span context.
type recordingProvider struct{ noop.TracerProvider }

func (recordingProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return validTracer{} }

type validTracer struct{ noop.Tracer }

func (validTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	span := trace.SpanFromContext(trace.ContextWithSpanContext(ctx, sc))
	return trace.ContextWithSpan(ctx, span), span
}
