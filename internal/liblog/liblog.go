// Package liblog routes the loggers of libraries that keep a package-level
// logger (go-redis, grpc-go, OpenTelemetry) through the process's slog
// logger, so that a JSON log stays JSON: by default they print plain lines on
// stderr (go-redis every few seconds while Redis is down).
//
// These are the project's one exception to "no globals with state": the
// libraries offer nothing else. Route is called from cmd/ with the process's
// logger, before any client or server is built; a later call replaces the
// logger (grpclog.SetLoggerV2 is not safe once gRPC runs, so it is called
// once, with an adapter that forwards to the current logger).
package liblog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/grpclog"
)

// MaxMessageBytes bounds one library message (a library may print a whole
// stack or a reply).
const MaxMessageBytes = 2048

// Route sends go-redis's, grpc-go's and OpenTelemetry's log lines to log,
// each with a "component" attribute: go-redis lines at Warn (it only logs
// failures), grpc-go's errors at Error and its info and warnings at Debug
// (grpc-go by default prints errors only; its warnings include every failed
// handshake of a port scanner), OpenTelemetry's errors at Warn.
func Route(log *slog.Logger) {
	goredis.SetLogger(redisLogger{log.With("component", "go-redis")})
	grpcCurrent.Store(log.With("component", "grpc"))
	grpcOnce.Do(func() { grpclog.SetLoggerV2(grpcLogger{}) })
	otelLog := log.With("component", "opentelemetry")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		otelLog.Warn(bound(err.Error()))
	}))
}

func bound(s string) string {
	s = strings.TrimRight(s, "\n")
	if len(s) > MaxMessageBytes {
		s = s[:MaxMessageBytes] + "..."
	}
	return s
}

// redisLogger adapts slog to go-redis's Logging interface.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, bound(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")))
}

var (
	grpcOnce    sync.Once
	grpcCurrent atomic.Pointer[slog.Logger]
)

// grpcLogger adapts slog to grpclog.LoggerV2, logging to grpcCurrent.
type grpcLogger struct{}

func (grpcLogger) out(level slog.Level, msg string) {
	grpcCurrent.Load().Log(context.Background(), level, bound(msg))
}

func (l grpcLogger) Info(args ...any)   { l.out(slog.LevelDebug, fmt.Sprint(args...)) }
func (l grpcLogger) Infoln(args ...any) { l.out(slog.LevelDebug, fmt.Sprintln(args...)) }
func (l grpcLogger) Infof(format string, args ...any) {
	l.out(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Warning(args ...any)   { l.out(slog.LevelDebug, fmt.Sprint(args...)) }
func (l grpcLogger) Warningln(args ...any) { l.out(slog.LevelDebug, fmt.Sprintln(args...)) }
func (l grpcLogger) Warningf(format string, args ...any) {
	l.out(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Error(args ...any)   { l.out(slog.LevelError, fmt.Sprint(args...)) }
func (l grpcLogger) Errorln(args ...any) { l.out(slog.LevelError, fmt.Sprintln(args...)) }
func (l grpcLogger) Errorf(format string, args ...any) {
	l.out(slog.LevelError, fmt.Sprintf(format, args...))
}
func (l grpcLogger) Fatal(args ...any) {
	l.out(slog.LevelError, fmt.Sprint(args...))
	os.Exit(1)
}
func (l grpcLogger) Fatalln(args ...any) {
	l.out(slog.LevelError, fmt.Sprintln(args...))
	os.Exit(1)
}
func (l grpcLogger) Fatalf(format string, args ...any) {
	l.out(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// V reports whether verbosity level v is logged: grpc-go's verbose logs
// (v > 0) only when the logger is at Debug.
func (grpcLogger) V(v int) bool {
	return v <= 0 || grpcCurrent.Load().Enabled(context.Background(), slog.LevelDebug)
}
