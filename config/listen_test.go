package config

import (
	"strings"
	"testing"
	"time"
)

// The listen: transport bounds have defaults (a configuration without them
// is bounded), and out-of-range values are refused, naming the key.
func TestListenBounds(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listen
	if l.MaxConnections != 1024 || l.MaxHeaderBytes != 32<<10 || l.MaxConcurrentStreams != 100 ||
		l.HandshakeTimeout.D() != 10*time.Second || l.ShutdownDelay != 0 || l.Admin != "" {
		t.Errorf("listen defaults %+v", l)
	}
	k := l.Keepalive
	if k.MinTime.D() != 20*time.Second || k.Time.D() != time.Minute || k.Timeout.D() != 20*time.Second ||
		k.MaxConnectionIdle.D() != 5*time.Minute || k.MaxConnectionAge.D() != 30*time.Minute || k.MaxConnectionAgeGrace.D() != 30*time.Second {
		t.Errorf("keepalive defaults %+v", k)
	}

	tests := []struct{ name, listen, want string }{
		{"connections", "max_connections: -1", "listen.max_connections: must be between 1 and"},
		{"header bytes too small", "max_header_bytes: 100", "listen.max_header_bytes: must be between 1024 and"},
		{"header bytes too large", "max_header_bytes: 16777216", "listen.max_header_bytes: must be between"},
		{"streams", "max_concurrent_streams: 100000", "listen.max_concurrent_streams: must be between 1 and 65536"},
		{"negative delay", "shutdown_delay: -1s", "listen.shutdown_delay: must not be negative"},
		{"negative keepalive", "keepalive: {max_connection_age: -1s}", "listen.keepalive.max_connection_age: must not be negative"},
		{"admin not host:port", "admin: localhost", "listen.admin: invalid host:port"},
		{"admin is the REST listener", "admin: 127.0.0.1:8080", "listen.admin: must differ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal + "listen: {" + tt.listen + "}\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("listen: {%s}: %v, want %q", tt.listen, err, tt.want)
			}
		})
	}
	ok, err := Parse([]byte(minimal + "listen: {admin: 127.0.0.1:8081, shutdown_delay: 5s, max_connections: 64}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ok.Listen.Admin != "127.0.0.1:8081" || ok.Listen.ShutdownDelay.D() != 5*time.Second || ok.Listen.MaxConnections != 64 {
		t.Errorf("listen %+v", ok.Listen)
	}
}
