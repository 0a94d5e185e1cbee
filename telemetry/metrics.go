// Package telemetry holds chainbroker's Prometheus metrics and the
// OpenTelemetry plumbing shared by the server and the wiring: a broker
// Observer, an instrumented store, and gRPC server metrics. Each Metrics owns
// its registry (no global state).
package telemetry

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/store"
)

// Metrics are chainbroker's Prometheus metrics.
type Metrics struct {
	reg *prometheus.Registry
	// domains are the configured domain names, of this configuration and
	// of the ones before it (reloads): the only values a domain label takes
	// (any other is UnknownLabel). The map is never modified once stored.
	domains   atomic.Pointer[map[string]bool]
	domainsMu sync.Mutex // serialises AddDomains

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
	auditExportLag prometheus.Gauge
	reloads        *prometheus.CounterVec
	reloadOK       prometheus.Gauge
	reloadTime     prometheus.Gauge
	configHash     prometheus.Gauge

	// The series a chain observes, by label values (see series).
	chainSeries series[chainLabels, chainObs]
	hopSeries   series[[2]string, prometheus.Observer]
	unarySeries series[unaryLabels, unaryObs]
	storeSeries series[string, prometheus.Observer]
	cacheSeries series[[2]string, prometheus.Counter]
}

type chainLabels struct{ source, target, outcome, reason string }

type chainObs struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

type unaryLabels struct {
	method string
	code   codes.Code
}

type unaryObs struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// Buckets from 0.5 ms to ~16 s: loopback hops are sub-millisecond, remote
// authorization servers tens to hundreds of milliseconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// UnknownLabel is the label value of a domain that is not configured and
// of an upstream error code that is not a standard one: label values never
// come from a request or an upstream answer as sent, so that neither can
// grow the set of series.
const UnknownLabel = "unknown"

// OtherError is the error label of an OAuth error code outside
// upstreamErrorCodes.
const OtherError = "other"

// upstreamErrorCodes are the token endpoint error codes of RFC 6749 §5.2
// (and §4.1.2.1's server_error and temporarily_unavailable, which servers
// also answer at the token endpoint), RFC 8693 §2.2.2 (invalid_target) and
// RFC 7523 §3.1 (which uses RFC 6749's).
var upstreamErrorCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "invalid_target": true, "access_denied": true,
	"server_error": true, "temporarily_unavailable": true,
}

// NewMetrics registers every metric, plus the Go and process collectors, in
// a fresh registry. domains are the configured domain names, the only
// values domain labels (source, target, domain) take; any other is
// labelled UnknownLabel.
func NewMetrics(domains ...string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.AddDomains(domains...)
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
	m.auditExportLag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "chainbroker_audit_export_lag_seconds",
		Help: "Audit export: now minus the time of the oldest event not yet accepted by the sink, or of the newest exported; 0 when caught up or when the export is off.",
	})
	m.registerReloads()
	for _, c := range []prometheus.Collector{m.chains, m.chainDuration, m.hopDuration, m.upstreamErrors, m.replayHits, m.cacheLookups,
		m.storeDuration, m.storeErrors, m.grpcRequests, m.grpcDuration, m.restRefused, m.auditExportLag,
		m.reloads, m.reloadOK, m.reloadTime, m.configHash,
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
// Reasons are the broker's constant codes (broker.Reasons), never input.
func (m *Metrics) ChainFinished(ev *store.Event, d time.Duration) {
	src, tgt := m.domain(ev.SourceDomain), m.domain(ev.TargetDomain)
	obs := m.chainSeries.get(chainLabels{src, tgt, ev.Outcome.String(), ev.Reason}, func(l chainLabels) chainObs {
		return chainObs{m.chains.WithLabelValues(l.source, l.target, l.outcome, l.reason),
			m.chainDuration.WithLabelValues(l.source, l.target, l.outcome)}
	})
	obs.count.Inc()
	obs.duration.Observe(d.Seconds())
	if ev.Reason == "ASSERTION_REPLAYED" {
		m.replayHits.WithLabelValues(tgt).Inc()
	}
}

// domain is the label value of a domain name: itself when configured (an
// empty source, not determined, stays empty), else UnknownLabel.
func (m *Metrics) domain(name string) string {
	if name == "" || (*m.domains.Load())[name] {
		return name
	}
	return UnknownLabel
}

// HopFinished implements broker.Observer.
func (m *Metrics) HopFinished(domain, hop string, d time.Duration, upstreamError string) {
	domain = m.domain(domain)
	m.hopSeries.get([2]string{domain, hop}, func(l [2]string) prometheus.Observer {
		return m.hopDuration.WithLabelValues(l[0], l[1])
	}).Observe(d.Seconds())
	if upstreamError != "" {
		if !upstreamErrorCodes[upstreamError] {
			upstreamError = OtherError
		}
		m.upstreamErrors.WithLabelValues(domain, hop, upstreamError).Inc()
	}
}

// CacheLookup implements broker.Observer.
func (m *Metrics) CacheLookup(target string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.cacheSeries.get([2]string{m.domain(target), result}, func(l [2]string) prometheus.Counter {
		return m.cacheLookups.WithLabelValues(l[0], l[1])
	}).Inc()
}

// RESTRefused counts a REST request the gateway refused itself; reason is
// one of the server's fixed reason codes.
func (m *Metrics) RESTRefused(reason string) { m.restRefused.WithLabelValues(reason).Inc() }

// AuditExportLag sets chainbroker_audit_export_lag_seconds.
func (m *Metrics) AuditExportLag(seconds float64) { m.auditExportLag.Set(seconds) }

// ObserveUnary records a gRPC call of method, begun at start, that ended
// with err (the server calls it from its interceptors' work, around
// authentication and the handler).
func (m *Metrics) ObserveUnary(method string, start time.Time, err error) {
	obs := m.unarySeries.get(unaryLabels{method, status.Code(err)}, func(l unaryLabels) unaryObs {
		return unaryObs{m.grpcRequests.WithLabelValues(l.method, l.code.String()), m.grpcDuration.WithLabelValues(l.method)}
	})
	obs.duration.Observe(time.Since(start).Seconds())
	obs.count.Inc()
}

// observeStore records one store operation.
func (m *Metrics) observeStore(op string, start time.Time, err error) {
	m.storeSeries.get(op, func(op string) prometheus.Observer {
		return m.storeDuration.WithLabelValues(op)
	}).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrReplayed) && !errors.Is(err, store.ErrNotFound) {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}
