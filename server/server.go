// Package server is chainbroker's transport edge: the gRPC services, the
// grpc-gateway REST facade (which calls the services directly, through the
// same interceptors as gRPC: unary), health, reflection, and the mapping of
// broker errors to gRPC status (errors.go).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	chainbroker "github.com/chainbroker/chainbroker"
	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/telemetry"
)

// propagator carries W3C trace context (traceparent) in and out.
var propagator = propagation.TraceContext{}

// Bounds of the transport.
const (
	MaxRequestBytes = 64 << 10 // gRPC message and REST body
	// DefaultShutdownTimeout and DefaultReadyInterval are Config's defaults.
	DefaultShutdownTimeout = 15 * time.Second
	DefaultReadyInterval   = 5 * time.Second
)

// Check is one readiness condition (store reachable, a domain's keys
// loaded, ...).
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config is what a Server needs.
type Config struct {
	Broker *broker.Broker
	Audit  store.AuditLog
	// Auth authenticates callers on both transports. Required: use an
	// Authenticator with AllowAnonymous for open set-ups.
	Auth *auth.Authenticator
	// RateLimit applies per caller; zero disables it.
	RateLimit RateLimit
	// GRPCTLS and HTTPTLS, when set, serve the listeners over TLS
	// (tlsreload.Reloader.ServerConfig); nil serves plaintext.
	GRPCTLS, HTTPTLS *tls.Config
	// Readiness conditions, checked by /readyz and, every ReadyInterval
	// (default 5s), to set the gRPC health status.
	Readiness     []Check
	ReadyInterval time.Duration
	// Metrics, when set, are served at /metrics and record gRPC calls.
	Metrics *telemetry.Metrics
	// Tracer, when set, traces gRPC and REST calls, propagating W3C trace
	// context.
	Tracer trace.TracerProvider
	// Issuer, when set, publishes the broker's issuer metadata and JWKS.
	Issuer *IssuerInfo
	// ShutdownTimeout bounds the drain of in-flight calls; default 15s.
	ShutdownTimeout time.Duration
	// ShutdownDelay: when shutdown begins, health turns NOT_SERVING and
	// /readyz 503 at once, but calls are still served this long before the
	// listeners close, so that balancers stop sending first; default 0.
	ShutdownDelay time.Duration
	// Limits bound the network listeners before authentication; zero
	// fields take the defaults.
	Limits Limits
	Logger *slog.Logger
}

// Server serves gRPC and REST. Create with New, run with Serve.
type Server struct {
	cfg Config
	log *slog.Logger
	// grpc serves the network with cfg.Limits.
	grpc *grpc.Server
	// unary is the interceptors' work around every call of chainbroker's
	// services, on both transports: the gRPC server's one unary
	// interceptor, and what the REST facade runs around its direct call of
	// the same service implementation (restCall).
	unary grpc.UnaryServerInterceptor
	// calls runs gRPC calls (unary) on goroutines whose stacks stay grown
	// between calls. REST calls need none: net/http serves a connection's
	// requests on one goroutine.
	calls *callPool
	// tracer, when tracing, gives REST calls their server span (restCall).
	tracer trace.Tracer
	chain  *chainService
	audit  *auditService
	health *healthService
	rt     atomic.Pointer[runState] // what a reload replaces (SetRuntime)

	readyMu  sync.Mutex
	readyErr error // the last readiness result (watchReadiness)
	// draining is set when the drain begins (after the shutdown delay):
	// calls that still arrive are refused (intercept), also those gRPC
	// accepts on an open connection before its final GOAWAY.
	draining atomic.Bool
}

// New builds the gRPC server with its services.
func New(cfg Config) (*Server, error) {
	if cfg.Broker == nil || cfg.Audit == nil || cfg.Auth == nil {
		return nil, errors.New("server: Broker, Audit and Auth are required")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.ReadyInterval <= 0 {
		cfg.ReadyInterval = DefaultReadyInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log,
		health: newHealthService(pb.ChainService_ServiceDesc.ServiceName, pb.AuditService_ServiceDesc.ServiceName)}
	s.rt.Store(&runState{broker: cfg.Broker, auth: cfg.Auth, rateLimit: cfg.RateLimit, limiter: newLimiter(cfg.RateLimit),
		readiness: cfg.Readiness})
	s.unary = traceSteps(s.intercept)
	workers := streamWorkers()
	s.calls = newCallPool(int(workers), s.unary)
	if cfg.Tracer != nil {
		s.tracer = cfg.Tracer.Tracer("github.com/chainbroker/chainbroker/server")
	}
	s.chain = &chainService{brokers: s, log: log}
	s.audit = &auditService{audit: cfg.Audit, brokers: s, log: log}
	s.cfg.Limits = cfg.Limits.withDefaults()
	opts := append(s.cfg.Limits.grpcOptions(),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.UnaryInterceptor(s.calls.intercept),
		grpc.NumStreamWorkers(workers),
	)
	if cfg.Tracer != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(cfg.Tracer), otelgrpc.WithPropagators(propagator),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))))
	}
	if cfg.GRPCTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.GRPCTLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterChainServiceServer(s.grpc, s.chain)
	pb.RegisterAuditServiceServer(s.grpc, s.audit)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// Serve serves gRPC on grpcLis and REST on httpLis until ctx is done, then
// shuts down gracefully (see ServeListeners).
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	return s.ServeListeners(ctx, Listeners{GRPC: grpcLis, HTTP: httpLis})
}

// ServeListeners serves until ctx is done, then shuts down gracefully:
// health turns NOT_SERVING (liveness and readiness) and /readyz 503, calls
// are still served for ShutdownDelay, then the listeners close, new calls
// are refused, and in-flight calls finish within ShutdownTimeout. It closes
// every listener. Each network listener holds at most
// Limits.MaxConnections connections.
func (s *Server) ServeListeners(ctx context.Context, ls Listeners) error {
	serving := false
	defer func() { // an error before serving still closes the listeners
		if !serving {
			for _, l := range []net.Listener{ls.GRPC, ls.HTTP, ls.Admin} {
				if l != nil {
					l.Close()
				}
			}
		}
	}()
	grpcLis, httpLis := s.cfg.Limits.limit(ls.GRPC), s.cfg.Limits.limit(ls.HTTP)
	var adminLis net.Listener
	if ls.Admin != nil {
		adminLis = s.cfg.Limits.limit(ls.Admin)
	}
	// The REST facade calls the services directly (no gRPC client, no
	// pipe): restCall runs the interceptors' work around each call, with the
	// incoming metadata the gateway builds from the request's headers.
	gw := runtime.NewServeMux(append(s.gatewayOptions(), // error handling and request checks (gateway.go)
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &restJSON{runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
				UnmarshalOptions: protojson.UnmarshalOptions{},
			}},
		}),
		runtime.WithIncomingHeaderMatcher(gatewayHeaderMatcher),
	)...)
	if err := pb.RegisterChainServiceHandlerServer(ctx, gw, restChainService{s: s}); err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	if err := pb.RegisterAuditServiceHandlerServer(ctx, gw, restAuditService{s: s}); err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	mux := http.NewServeMux()
	// The operator endpoints: on the admin listener when there is one,
	// otherwise on the REST listener. The plain /healthz (liveness) shadows
	// the gateway's; with an admin listener, the REST listener answers 404.
	opsMux := mux
	if adminLis != nil {
		opsMux = http.NewServeMux()
		mux.Handle("/healthz", http.NotFoundHandler())
	}
	opsMux.HandleFunc("GET /healthz", s.healthz)
	opsMux.HandleFunc("GET /readyz", s.readyz)
	opsMux.HandleFunc("GET /openapi.json", serveOpenAPI)
	if s.cfg.Metrics != nil {
		opsMux.Handle("GET /metrics", s.cfg.Metrics.Handler())
	}
	if s.cfg.Issuer != nil {
		if err := registerIssuer(mux, s.cfg.Issuer); err != nil {
			return fmt.Errorf("server: issuer: %w", err)
		}
	}
	mux.Handle("/", gw)
	var handler http.Handler = http.MaxBytesHandler(mux, MaxRequestBytes)
	if s.cfg.Tracer != nil {
		handler = otelhttp.NewHandler(handler, "chainbroker.http",
			otelhttp.WithTracerProvider(s.cfg.Tracer), otelhttp.WithPropagators(propagator),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelhttp.WithFilter(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") }),
			otelhttp.WithSpanNameFormatter(func(op string, _ *http.Request) string { return op }))
	}
	httpSrv := s.cfg.Limits.httpServer(handler)
	httpSrv.TLSConfig = s.cfg.HTTPTLS
	// REST calls run under calls: the drain ends those still in flight when
	// its timeout expires, and they answer SERVER_UNAVAILABLE (toStatus)
	// instead of losing their connection without an answer.
	calls, stopCalls := context.WithCancelCause(context.Background())
	defer stopCalls(nil)
	httpSrv.BaseContext = func(net.Listener) context.Context { return calls }
	httpSrv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	var adminSrv *http.Server
	if adminLis != nil {
		adminSrv = s.cfg.Limits.httpServer(opsMux)
		adminSrv.ErrorLog = httpSrv.ErrorLog
	}

	if _, err := s.checkReadiness(ctx); err != nil {
		s.log.Warn("not ready", "error", err)
	}
	s.health.setAlive()
	readyCtx, stopReady := context.WithCancel(ctx)
	defer stopReady()
	go s.watchReadiness(readyCtx)

	serving = true
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.grpc.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("server: grpc: %w", err)
		}
	})
	serveHTTP := func(name string, srv *http.Server, lis net.Listener) {
		wg.Go(func() {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(lis, "", "")
			} else {
				err = srv.Serve(lis)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("server: %s: %w", name, err)
			}
		})
	}
	serveHTTP("http", httpSrv, httpLis)
	attrs := []any{"grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String()}
	if adminSrv != nil {
		serveHTTP("admin", adminSrv, adminLis)
		attrs = append(attrs, "admin", adminLis.Addr().String())
	}
	s.log.Info("serving", append(attrs, "max_connections", s.cfg.Limits.MaxConnections,
		"max_concurrent_streams", s.cfg.Limits.MaxConcurrentStreams, "max_header_bytes", s.cfg.Limits.MaxHeaderBytes)...)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stopReady()
	s.shutdown(httpSrv, adminSrv, stopCalls)
	wg.Wait()
	s.calls.close()
	return serveErr
}

// streamWorkers is the number of goroutines that serve gRPC calls and are
// kept between calls, and the bound of the call pool (callPool), which
// runs the deep part of each call: a call on a fresh goroutine grows its
// stack (the chain's depth needs far more than a goroutine starts with)
// and copies it on every call, which is a tenth of a cache hit's CPU. When
// every worker is busy, gRPC serves a call on a fresh goroutine, as
// without workers (and the pool runs it on that goroutine when every
// pooled one is busy too).
// 64 per core, so that 64 callers in flight on a 2-core host (chainbench's
// c=64) all find one: with 16 per core half of them grew a fresh stack, and
// the broker's CPU per chain over the skeleton's read 1.09x and 1.11x against
// 1.07x and 1.09x with 64 (interleaved runs of 8 pairs, both sides at once).
// At most 256: idle workers keep their grown stacks.
func streamWorkers() uint32 { return streamWorkersFor(goruntime.GOMAXPROCS(0)) }

func streamWorkersFor(procs int) uint32 { return uint32(min(64*procs, 256)) }

// answerGrace is how long REST calls still in flight when the drain timeout
// expires get to write their SERVER_UNAVAILABLE answer before their
// connections are closed.
const answerGrace = time.Second

func (s *Server) shutdown(httpSrv, adminSrv *http.Server, stopCalls context.CancelCauseFunc) {
	s.log.Info("shutting down", "shutdown_delay", s.cfg.ShutdownDelay.String(), "drain_timeout", s.cfg.ShutdownTimeout.String())
	s.health.beginShutdown() // every service NOT_SERVING first, so balancers stop sending; watches end
	if s.cfg.ShutdownDelay > 0 {
		// Still serving: balancers and Kubernetes endpoints need a moment
		// to notice the failing readiness and stop sending new calls.
		time.Sleep(s.cfg.ShutdownDelay)
		s.log.Info("shutdown delay over; closing the listeners")
	}
	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{httpSrv, adminSrv} {
		if srv == nil {
			continue
		}
		wg.Go(func() {
			err := srv.Shutdown(ctx)
			if err != nil && srv == httpSrv {
				// Calls still in flight: end them, each answers 503
				// SERVER_UNAVAILABLE (retry elsewhere) within answerGrace.
				s.log.Warn("http drain timeout: ending the calls in flight", "drain_timeout", s.cfg.ShutdownTimeout.String())
				stopCalls(errServerStopping)
				gctx, gcancel := context.WithTimeout(context.Background(), answerGrace)
				if err = srv.Shutdown(gctx); !errors.Is(err, context.DeadlineExceeded) {
					err = nil // the listeners were closed by the first Shutdown
				}
				gcancel()
			}
			if err != nil {
				s.log.Warn("http drain incomplete", "error", err)
				srv.Close()
			}
		})
	}
	wg.Go(func() {
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("grpc drain incomplete; stopping")
			s.grpc.Stop()
			<-done
		}
	})
	wg.Wait()
}

// ready runs every readiness check; the error names the failing ones.
func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var failed []string
	for _, c := range s.rt.Load().readiness {
		if err := c.Check(ctx); err != nil {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not ready: %s", strings.Join(failed, ", "))
	}
	return nil
}

// checkReadiness runs the readiness checks, records the result for
// /readyz and sets the services' gRPC health; it reports whether the
// result changed.
func (s *Server) checkReadiness(ctx context.Context) (changed bool, err error) {
	err = s.ready(ctx)
	s.readyMu.Lock()
	changed = (err == nil) != (s.readyErr == nil)
	s.readyErr = err
	s.readyMu.Unlock()
	s.health.setReady(err == nil)
	return changed, err
}

// watchReadiness keeps /readyz and the services' gRPC health in step with
// readiness, so that probes and balancers stop sending while the store is
// unreachable. Probes read its last result: however often they ask, the
// checks (a Redis PING, a JWKS fetch) run once per ReadyInterval.
func (s *Server) watchReadiness(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReadyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		if changed, err := s.checkReadiness(ctx); changed && ctx.Err() == nil {
			if err == nil {
				s.log.Info("ready again")
			} else {
				s.log.Warn("not ready", "error", err)
			}
		}
	}
}

// readyz answers 200 when the last readiness check passed, 503 naming the
// failing checks otherwise, and 503 once shutdown has begun.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s.readyMu.Lock()
	err := s.readyErr
	s.readyMu.Unlock()
	if s.health.shuttingDown() {
		err = errors.New("shutting down")
	}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// healthz is liveness: 200 while the process serves, whatever the store and
// the domains do; 503 once shutdown has begun.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.health.shuttingDown() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(chainbroker.OpenAPI)
}

// intercept is the interceptors' work around every call, in order, the
// first outermost: recovery from a panic, the request id, metrics (when
// set), then authentication and the rate limit (authInterceptor). One
// function rather than a chain of interceptors (as grpc.ChainUnaryInterceptor
// builds), which would allocate a handler closure per interceptor on every
// call.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "panic", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			// The one error map's INTERNAL, with its ErrorInfo, on both
			// transports (REST would otherwise take it for a gateway error).
			resp, err = nil, errorStatus(codes.Internal, string(broker.ReasonInternal), "internal error", nil)
		}
	}()
	if s.draining.Load() && !strings.HasPrefix(info.FullMethod, healthMethodPrefix) {
		// gRPC's graceful stop accepts the calls a client sends on an open
		// connection until its second GOAWAY (a ping's round trip after
		// the first): refused here, none of them reaches a domain.
		return nil, errorStatus(codes.Unavailable, reasonServerUnavailable, "the server is shutting down; retry on another replica", nil)
	}
	callCtx := withRequestID(ctx)
	m := s.cfg.Metrics
	if m == nil {
		return s.authInterceptor(callCtx, req, info, h)
	}
	start := time.Now()
	resp, err = s.authInterceptor(callCtx, req, info, h)
	m.ObserveUnary(info.FullMethod, start, err)
	return resp, err
}

// healthMethodPrefix names the health service's methods, which answer
// NOT_SERVING themselves during a shutdown.
const healthMethodPrefix = "/grpc.health.v1.Health/"

// Events of a call's span (when it records), with authInterceptor's
// eventAuthenticated: the steps a trace of one call shows between the
// transport's work and the service's (docs/performance.md, "One chain,
// step by step").
const (
	eventDecoded  = "chainbroker.request_decoded"  // the interceptors begin: the request is decoded
	eventAnswered = "chainbroker.service_answered" // the service has answered; the transport encodes it next
)

// traceSteps marks the beginning and the end of the interceptors' work on
// the call's span.
func traceSteps(next grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		span := trace.SpanFromContext(ctx)
		if !span.IsRecording() {
			return next(ctx, req, info, h)
		}
		span.AddEvent(eventDecoded)
		resp, err := next(ctx, req, info, h)
		span.AddEvent(eventAnswered)
		return resp, err
	}
}

// CallerFromContext returns the authenticated caller's name ("" outside an
// authenticated call).
func CallerFromContext(ctx context.Context) string {
	if a := authedFrom(ctx); a != nil {
		return a.caller
	}
	return ""
}
