// Package server is chainbroker's transport edge: the gRPC services, the
// grpc-gateway REST facade (registered through a gRPC client connection, so
// REST calls pass the same interceptors), health, reflection, and the
// mapping of broker errors to gRPC status (errors.go).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
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
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
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
	Logger          *slog.Logger
}

// Server serves gRPC and REST. Create with New, run with Serve.
type Server struct {
	cfg     Config
	log     *slog.Logger
	grpc    *grpc.Server
	health  *healthService
	limiter *limiter
}

// New builds the gRPC server with its services.
func New(cfg Config) (*Server, error) {
	if cfg.Broker == nil || cfg.Audit == nil || cfg.Auth == nil {
		return nil, errors.New("server: Broker, Audit and Auth are required")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if cfg.ReadyInterval <= 0 {
		cfg.ReadyInterval = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, limiter: newLimiter(cfg.RateLimit),
		health: newHealthService(pb.ChainService_ServiceDesc.ServiceName, pb.AuditService_ServiceDesc.ServiceName)}
	interceptors := []grpc.UnaryServerInterceptor{s.recoverInterceptor, requestIDInterceptor}
	if cfg.Metrics != nil {
		interceptors = append(interceptors, cfg.Metrics.UnaryServerInterceptor)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.ChainUnaryInterceptor(append(interceptors, s.authInterceptor)...),
	}
	if cfg.Tracer != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(cfg.Tracer), otelgrpc.WithPropagators(propagator),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))))
	}
	if cfg.GRPCTLS != nil {
		opts = append(opts, grpc.Creds(gatewayAwareCreds{credentials.NewTLS(cfg.GRPCTLS)}))
	}
	s.grpc = grpc.NewServer(opts...)
	pb.RegisterChainServiceServer(s.grpc, &chainService{broker: cfg.Broker, log: log})
	pb.RegisterAuditServiceServer(s.grpc, &auditService{audit: cfg.Audit, broker: cfg.Broker, log: log})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// Serve serves gRPC on grpcLis and REST on httpLis until ctx is done, then
// shuts down gracefully: health turns NOT_SERVING, new calls are refused,
// in-flight calls finish within ShutdownTimeout. It closes both listeners.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	// The gateway reaches the gRPC server through an in-process pipe, so
	// REST calls pass the same interceptors (authentication, rate limits)
	// without a network hop, and the pipe is how the server recognises
	// identities forwarded by its own gateway.
	pipe := newPipeListener()
	dialOpts := []grpc.DialOption{
		grpc.WithContextDialer(pipe.dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
	if s.cfg.Tracer != nil {
		dialOpts = append(dialOpts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(s.cfg.Tracer), otelgrpc.WithPropagators(propagator),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))))
	}
	conn, err := grpc.NewClient("passthrough:///chainbroker-gateway", dialOpts...)
	if err != nil {
		return fmt.Errorf("server: gateway connection: %w", err)
	}
	defer conn.Close()
	gw := runtime.NewServeMux(append(s.gatewayOptions(), // error handling and request checks (gateway.go)
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
				UnmarshalOptions: protojson.UnmarshalOptions{},
			},
		}),
		runtime.WithIncomingHeaderMatcher(gatewayHeaderMatcher),
		runtime.WithMetadata(gatewayMetadata),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
	)...)
	if err := pb.RegisterChainServiceHandler(ctx, gw, conn); err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	if err := pb.RegisterAuditServiceHandler(ctx, gw, conn); err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	if s.cfg.Issuer != nil {
		if err := registerIssuer(mux, s.cfg.Issuer); err != nil {
			return fmt.Errorf("server: issuer: %w", err)
		}
	}
	if s.cfg.Metrics != nil {
		mux.Handle("GET /metrics", s.cfg.Metrics.Handler())
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
	httpSrv := &http.Server{
		Handler:           handler,
		TLSConfig:         s.cfg.HTTPTLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	s.setServing(s.ready(ctx) == nil)
	readyCtx, stopReady := context.WithCancel(ctx)
	defer stopReady()
	go s.watchReadiness(readyCtx)

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	for _, lis := range []net.Listener{grpcLis, pipe} {
		go func() {
			defer wg.Done()
			if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("server: grpc: %w", err)
			}
		}()
	}
	go func() {
		defer wg.Done()
		var err error
		if httpSrv.TLSConfig != nil {
			err = httpSrv.ServeTLS(httpLis, "", "")
		} else {
			err = httpSrv.Serve(httpLis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("server: http: %w", err)
		}
	}()
	s.log.Info("serving", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	stopReady()
	s.shutdown(httpSrv)
	wg.Wait()
	return serveErr
}

func (s *Server) shutdown(httpSrv *http.Server) {
	s.log.Info("shutting down", "drain_timeout", s.cfg.ShutdownTimeout)
	s.health.beginShutdown() // every service NOT_SERVING first, so balancers stop sending; watches end
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// REST first: its in-flight calls ride on the gateway's gRPC connection.
	if err := httpSrv.Shutdown(ctx); err != nil {
		s.log.Warn("http drain incomplete", "error", err)
		httpSrv.Close()
	}
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("grpc drain incomplete; stopping")
		s.grpc.Stop()
		<-done
	}
}

// ready runs every readiness check; the error names the failing ones.
func (s *Server) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var failed []string
	for _, c := range s.cfg.Readiness {
		if err := c.Check(ctx); err != nil {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not ready: %s", strings.Join(failed, ", "))
	}
	return nil
}

// setServing sets the gRPC health of the server and its services.
func (s *Server) setServing(ok bool) { s.health.set(ok) }

// watchReadiness keeps the gRPC health status in step with readiness, so
// that probes and balancers stop sending while the store is unreachable.
func (s *Server) watchReadiness(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReadyInterval)
	defer t.Stop()
	last := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.ready(ctx)
		if ctx.Err() != nil {
			return
		}
		if ok := err == nil; ok != last {
			if ok {
				s.log.Info("ready again")
			} else {
				s.log.Warn("not ready", "error", err)
			}
			last = ok
		}
		s.setServing(err == nil)
	}
}

// readyz answers 200 when every readiness check passes, 503 naming the
// failing checks otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(chainbroker.OpenAPI)
}

func (s *Server) recoverInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "panic", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(ctx, req)
}

type callerKey struct{}

// CallerFromContext returns the authenticated caller's name ("" outside an
// authenticated call).
func CallerFromContext(ctx context.Context) string {
	c, _ := ctx.Value(callerKey{}).(string)
	return c
}
