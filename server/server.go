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
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/store"
)

// Bounds of the transport.
const (
	MaxRequestBytes = 64 << 10 // gRPC message and REST body
)

// Pinger reports whether a dependency is reachable (store.Store).
type Pinger interface {
	Ping(ctx context.Context) error
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
	// Ready, when set, is checked by /readyz; nil means always ready.
	Ready Pinger
	// ShutdownTimeout bounds the drain of in-flight calls; default 15s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Server serves gRPC and REST. Create with New, run with Serve.
type Server struct {
	cfg     Config
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, health: health.NewServer(), limiter: newLimiter(cfg.RateLimit)}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.ChainUnaryInterceptor(s.recoverInterceptor, s.authInterceptor),
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
	conn, err := grpc.NewClient("passthrough:///chainbroker-gateway",
		grpc.WithContextDialer(pipe.dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("server: gateway connection: %w", err)
	}
	defer conn.Close()
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
				UnmarshalOptions: protojson.UnmarshalOptions{},
			},
		}),
		runtime.WithIncomingHeaderMatcher(gatewayHeaderMatcher),
		runtime.WithMetadata(gatewayMetadata),
		runtime.WithErrorHandler(retryAfterErrorHandler),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
	)
	if err := pb.RegisterChainServiceHandler(ctx, gw, conn); err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	if err := pb.RegisterAuditServiceHandler(ctx, gw, conn); err != nil {
		return fmt.Errorf("server: gateway: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("/", gw)
	httpSrv := &http.Server{
		Handler:           http.MaxBytesHandler(mux, MaxRequestBytes),
		TLSConfig:         s.cfg.HTTPTLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, name := range []string{pb.ChainService_ServiceDesc.ServiceName, pb.AuditService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}

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
	s.shutdown(httpSrv)
	wg.Wait()
	return serveErr
}

func (s *Server) shutdown(httpSrv *http.Server) {
	s.log.Info("shutting down", "drain_timeout", s.cfg.ShutdownTimeout)
	s.health.Shutdown() // every service NOT_SERVING first, so balancers stop sending
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

// readyz answers 200 when the store is reachable, 503 otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Ready.Ping(ctx); err != nil {
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
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
