package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chainbroker/chainbroker/store"
)

// InstrumentedStore wraps a store.Store with a span and metrics per
// operation.
type InstrumentedStore struct {
	store.Store
	m        *Metrics
	tracer   trace.Tracer // nil when tracing is off (a no-op provider)
	spanOpts []trace.SpanStartOption
}

var _ store.Store = (*InstrumentedStore)(nil)

// InstrumentStore wraps s. tp may be a no-op provider: then no span is
// started (a no-op tracer's span records nothing, and starting it costs a
// context per operation), and the operations see the caller's context.
func InstrumentStore(s store.Store, m *Metrics, tp trace.TracerProvider) *InstrumentedStore {
	is := &InstrumentedStore{Store: s, m: m, spanOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}}
	if _, off := tp.(noop.TracerProvider); !off {
		is.tracer = tp.Tracer("github.com/chainbroker/chainbroker/store")
	}
	return is
}

// noSpan is the span of an operation when tracing is off (boxed once).
var noSpan trace.Span = noop.Span{}

func (s *InstrumentedStore) do(ctx context.Context, op string, f func(context.Context) error) error {
	ctx, span, start := s.begin(ctx, "store."+op)
	err := f(ctx)
	s.end(span, op, start, err)
	return err
}

// begin and end bracket an operation; Mark and Append, on every chain, use
// them directly (no closure, no span name built per call).
func (s *InstrumentedStore) begin(ctx context.Context, spanName string) (context.Context, trace.Span, time.Time) {
	if s.tracer == nil {
		return ctx, noSpan, time.Now()
	}
	ctx, span := s.tracer.Start(ctx, spanName, s.spanOpts...)
	return ctx, span, time.Now()
}

func (s *InstrumentedStore) end(span trace.Span, op string, start time.Time, err error) {
	s.m.observeStore(op, start, err)
	if err != nil && !errors.Is(err, store.ErrReplayed) && !errors.Is(err, store.ErrNotFound) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (s *InstrumentedStore) Mark(ctx context.Context, key store.ReplayKey, until time.Time) error {
	ctx, span, start := s.begin(ctx, "store.mark")
	err := s.Store.Mark(ctx, key, until)
	s.end(span, "mark", start, err)
	return err
}

func (s *InstrumentedStore) Append(ctx context.Context, e *store.Event) (string, error) {
	ctx, span, start := s.begin(ctx, "store.append")
	id, err := s.Store.Append(ctx, e)
	s.end(span, "append", start, err)
	return id, err
}

func (s *InstrumentedStore) List(ctx context.Context, f store.Filter, n int, tok string) (evs []store.Event, next string, err error) {
	err = s.do(ctx, "list", func(ctx context.Context) error { evs, next, err = s.Store.List(ctx, f, n, tok); return err })
	return evs, next, err
}

func (s *InstrumentedStore) Get(ctx context.Context, id string) (e store.Event, err error) {
	err = s.do(ctx, "get", func(ctx context.Context) error { e, err = s.Store.Get(ctx, id); return err })
	return e, err
}

func (s *InstrumentedStore) Ping(ctx context.Context) error {
	return s.do(ctx, "ping", s.Store.Ping)
}
