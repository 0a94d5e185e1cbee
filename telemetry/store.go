package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chainbroker/chainbroker/store"
)

// InstrumentedStore wraps a store.Store with a span and metrics per
// operation.
type InstrumentedStore struct {
	store.Store
	m      *Metrics
	tracer trace.Tracer
}

var _ store.Store = (*InstrumentedStore)(nil)

// InstrumentStore wraps s. tp may be a no-op provider.
func InstrumentStore(s store.Store, m *Metrics, tp trace.TracerProvider) *InstrumentedStore {
	return &InstrumentedStore{Store: s, m: m, tracer: tp.Tracer("github.com/chainbroker/chainbroker/store")}
}

func (s *InstrumentedStore) do(ctx context.Context, op string, f func(context.Context) error) error {
	ctx, span := s.tracer.Start(ctx, "store."+op, trace.WithSpanKind(trace.SpanKindClient))
	start := time.Now()
	err := f(ctx)
	s.m.observeStore(op, start, err)
	if err != nil && !errors.Is(err, store.ErrReplayed) && !errors.Is(err, store.ErrNotFound) {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

func (s *InstrumentedStore) Mark(ctx context.Context, key store.ReplayKey, until time.Time) error {
	return s.do(ctx, "mark", func(ctx context.Context) error { return s.Store.Mark(ctx, key, until) })
}

func (s *InstrumentedStore) Append(ctx context.Context, e *store.Event) (id string, err error) {
	err = s.do(ctx, "append", func(ctx context.Context) error { id, err = s.Store.Append(ctx, e); return err })
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
