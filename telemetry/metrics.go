// Package telemetry holds chainbroker's Prometheus metrics and the
// OpenTelemetry plumbing shared by the server and the wiring: a broker
// Observer, an instrumented store, and gRPC server metrics. Each Metrics owns
// its registry (no global state).
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/store"
)

// Metrics are chainbroker's Prometheus metrics.
type Metrics struct {
	reg *prometheus.Registry

	chains         *prometheus.CounterVec
	chainDuration  *prometheus.HistogramVec
	hopDuration    *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	replayHits     *prometheus.CounterVec
	storeDuration  *prometheus.HistogramVec
	storeErrors    *prometheus.CounterVec
	cacheLookups   *prometheus.CounterVec
	grpcRequests   *prometheus.CounterVec
	grpcDuration   *prometheus.HistogramVec
	restRefused    *prometheus.CounterVec
}

// Buckets from 0.5 ms to ~16 s: loopback hops are sub-millisecond, remote
// authorization servers tens to hundreds of milliseconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// NewMetrics registers every metric, plus the Go and process collectors, in
// a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.chains = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_chains_total", Help: "Chain calls by source, target, outcome and reason.",
	}, []string{"source", "target", "outcome", "reason"})
	m.chainDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "chainbroker_chain_duration_seconds", Help: "Duration of chain calls, both hops included.", Buckets: latencyBuckets,
	}, []string{"source", "target", "outcome"})
	m.hopDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "chainbroker_hop_duration_seconds", Help: "Duration of calls to authorization servers' token endpoints.", Buckets: latencyBuckets,
	}, []string{"domain", "hop"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_upstream_errors_total", Help: "OAuth errors answered by authorization servers, by domain, hop and error code.",
	}, []string{"domain", "hop", "error"})
	m.replayHits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_replay_hits_total", Help: "Assertions refused because their jti was already presented, by target.",
	}, []string{"target"})
	m.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "chainbroker_store_operation_duration_seconds", Help: "Duration of replay and audit store operations.", Buckets: latencyBuckets,
	}, []string{"operation"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_store_errors_total", Help: "Failed store operations (replays and not-found excluded).",
	}, []string{"operation"})
	m.cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_cache_lookups_total", Help: "Token cache lookups by target and result (hit or miss).",
	}, []string{"target", "result"})
	m.grpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_grpc_requests_total", Help: "gRPC calls (REST included, through the gateway) by method and code.",
	}, []string{"method", "code"})
	m.grpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "chainbroker_grpc_request_duration_seconds", Help: "Duration of gRPC calls by method.", Buckets: latencyBuckets,
	}, []string{"method"})
	m.restRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chainbroker_rest_refused_total", Help: "REST requests the gateway answered itself with an error (malformed, too large, wrong method or path, deadline), by reason.",
	}, []string{"reason"})
	for _, c := range []prometheus.Collector{m.chains, m.chainDuration, m.hopDuration, m.upstreamErrors, m.replayHits, m.cacheLookups,
		m.storeDuration, m.storeErrors, m.grpcRequests, m.grpcDuration, m.restRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ChainFinished implements broker.Observer.
func (m *Metrics) ChainFinished(ev *store.Event, d time.Duration) {
	m.chains.WithLabelValues(ev.SourceDomain, ev.TargetDomain, ev.Outcome.String(), ev.Reason).Inc()
	m.chainDuration.WithLabelValues(ev.SourceDomain, ev.TargetDomain, ev.Outcome.String()).Observe(d.Seconds())
	if ev.Reason == "ASSERTION_REPLAYED" {
		m.replayHits.WithLabelValues(ev.TargetDomain).Inc()
	}
}

// HopFinished implements broker.Observer.
func (m *Metrics) HopFinished(domain, hop string, d time.Duration, upstreamError string) {
	m.hopDuration.WithLabelValues(domain, hop).Observe(d.Seconds())
	if upstreamError != "" {
		m.upstreamErrors.WithLabelValues(domain, hop, upstreamError).Inc()
	}
}

// CacheLookup implements broker.Observer.
func (m *Metrics) CacheLookup(target string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheLookups.WithLabelValues(target, result).Inc()
}

// RESTRefused counts a REST request the gateway refused itself; reason is
// one of the server's fixed reason codes.
func (m *Metrics) RESTRefused(reason string) { m.restRefused.WithLabelValues(reason).Inc() }

// UnaryServerInterceptor records gRPC server metrics.
func (m *Metrics) UnaryServerInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.grpcDuration.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.grpcRequests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

// observeStore records one store operation.
func (m *Metrics) observeStore(op string, start time.Time, err error) {
	m.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrReplayed) && !errors.Is(err, store.ErrNotFound) {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}
