package server

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits bound what a network peer can make the server hold before any call
// is authenticated: connections, header blocks, concurrent streams, and how
// long a connection may sit in its handshake, idle, or open at all. Zero
// fields take the defaults below (the config package has the same ones).
type Limits struct {
	MaxConnections       int // per listener
	MaxHeaderBytes       int // request header block, both transports
	MaxConcurrentStreams int // per HTTP/2 connection
	HandshakeTimeout     time.Duration
	// Keepalive: clients pinging more often than KeepaliveMinTime are
	// disconnected; the server pings a connection silent for KeepaliveTime
	// and closes it after KeepaliveTimeout without an answer.
	KeepaliveMinTime, KeepaliveTime, KeepaliveTimeout          time.Duration
	MaxConnectionIdle, MaxConnectionAge, MaxConnectionAgeGrace time.Duration
}

// Default transport bounds.
const (
	DefaultMaxConnections        = 1024
	DefaultMaxHeaderBytes        = 32 << 10
	DefaultMaxConcurrentStreams  = 100
	DefaultHandshakeTimeout      = 10 * time.Second
	DefaultKeepaliveMinTime      = 20 * time.Second
	DefaultKeepaliveTime         = time.Minute
	DefaultKeepaliveTimeout      = 20 * time.Second
	DefaultMaxConnectionIdle     = 5 * time.Minute
	DefaultMaxConnectionAge      = 30 * time.Minute
	DefaultMaxConnectionAgeGrace = 30 * time.Second
)

func (l Limits) withDefaults() Limits {
	setInt := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	setInt(&l.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	setDur(&l.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&l.KeepaliveMinTime, DefaultKeepaliveMinTime)
	setDur(&l.KeepaliveTime, DefaultKeepaliveTime)
	setDur(&l.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDur(&l.MaxConnectionIdle, DefaultMaxConnectionIdle)
	setDur(&l.MaxConnectionAge, DefaultMaxConnectionAge)
	setDur(&l.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	return l
}

// grpcOptions are the bounds of the network gRPC server. grpc-go's defaults
// accept 16 MB of headers per stream and unlimited concurrent streams: one
// connection opening streams with huge header blocks and no body could
// make the process hold gigabytes before authentication ever ran.
func (l Limits) grpcOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxHeaderListSize(uint32(l.MaxHeaderBytes)),
		grpc.MaxConcurrentStreams(uint32(l.MaxConcurrentStreams)),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.MaxConnectionIdle,
			MaxConnectionAge:      l.MaxConnectionAge,
			MaxConnectionAgeGrace: l.MaxConnectionAgeGrace,
			Time:                  l.KeepaliveTime,
			Timeout:               l.KeepaliveTimeout,
		}),
	}
}

// httpServer is an http.Server with the REST bounds: header timeouts and
// size, and, over HTTP/2, the same stream bound as gRPC.
func (l Limits) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: l.MaxConcurrentStreams,
			// The HPACK table a client may make us keep, well under the
			// header bound.
			MaxDecoderHeaderTableSize: 4 << 10,
		},
	}
}

// limit bounds the connections a listener holds open at once: Accept waits
// for a slot, further peers wait in the kernel's accept queue.
func (l Limits) limit(lis net.Listener) net.Listener {
	return netutil.LimitListener(lis, l.MaxConnections)
}

// Listeners are what Serve serves on. Admin is optional: when set, it
// serves /healthz, /readyz, /metrics and /openapi.json (plain HTTP), and
// HTTP no longer does.
type Listeners struct {
	GRPC, HTTP, Admin net.Listener
}
