package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Metadata keys of the caller's credentials, as the broker reads them (its
// REST gateway maps the Authorization and X-Api-Key headers to the same keys).
const (
	mdAPIKey        = "x-api-key"
	mdAuthorization = "authorization"
)

// maxResponseBytes bounds what chainctl accepts from the broker (an audit
// page of 1000 events fits easily).
const maxResponseBytes = 16 << 20

// dial creates the client connection (lazily connected: errors surface on
// the first call, as UNAVAILABLE).
func (c *cli) dial() (*grpc.ClientConn, error) {
	g := &c.g
	var transport credentials.TransportCredentials
	if g.tls || g.cacert != "" || g.cert != "" || g.key != "" || g.serverName != "" {
		cfg, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		transport = credentials.NewTLS(cfg)
	} else {
		transport = insecure.NewCredentials()
		if (g.apiKey != "" || g.token != "") && !isLoopback(g.addr) {
			fmt.Fprintf(c.stderr, "chainctl: warning: sending caller credentials to %s without TLS (use --tls)\n", g.addr)
		}
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithUserAgent("chainctl"),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseBytes)),
	}
	if g.apiKey != "" || g.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(callerCredentials{apiKey: g.apiKey, token: g.token}))
	}
	conn, err := grpc.NewClient(g.addr, opts...)
	if err != nil {
		return nil, usageErrorf("--addr %q: %v", g.addr, err)
	}
	return conn, nil
}

// tlsConfig builds the client TLS configuration from the flags.
func (c *cli) tlsConfig() (*tls.Config, error) {
	g := &c.g
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.serverName}
	if g.cacert != "" {
		pem, err := os.ReadFile(g.cacert)
		if err != nil {
			return nil, usageErrorf("--cacert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("--cacert: no PEM certificate in %s", g.cacert)
		}
		cfg.RootCAs = pool
	}
	if g.cert != "" {
		pair, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, usageErrorf("--cert/--key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// callerCredentials sends the caller's API key and bearer token with every
// call.
type callerCredentials struct {
	apiKey, token string
}

func (cc callerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	md := make(map[string]string, 2)
	if cc.apiKey != "" {
		md[mdAPIKey] = cc.apiKey
	}
	if cc.token != "" {
		md[mdAuthorization] = "Bearer " + cc.token
	}
	return md, nil
}

// RequireTransportSecurity is false so that credentials also work against a
// plaintext broker on loopback; dial warns when that is not loopback.
func (callerCredentials) RequireTransportSecurity() bool { return false }

// isLoopback reports whether addr (host:port, or a gRPC target) names a
// loopback host or a Unix socket.
func isLoopback(addr string) bool {
	if len(addr) > 5 && addr[:5] == "unix:" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
