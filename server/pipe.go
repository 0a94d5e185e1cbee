package server

import (
	"context"
	"errors"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
)

// pipeListener is an in-process listener: the REST gateway reaches the gRPC
// server through it, never through the network. Connections accepted here
// report gatewayAddr as their remote address, which is how the server knows
// that a call came from its own gateway (and may carry the identity of an
// mTLS REST client, forwarded in metadata).
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// gatewayAddr is the remote address of gateway connections. No network peer
// can have it.
type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "chainbroker-gateway" }
func (gatewayAddr) String() string  { return "gateway" }

type gatewayConn struct{ net.Conn }

func (gatewayConn) RemoteAddr() net.Addr { return gatewayAddr{} }
func (gatewayConn) LocalAddr() net.Addr  { return gatewayAddr{} }

var errPipeClosed = errors.New("gateway pipe closed")

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, errPipeClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return gatewayAddr{} }

// dial connects to the listener.
func (l *pipeListener) dial(ctx context.Context, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- gatewayConn{server}:
		return client, nil
	case <-l.closed:
		server.Close()
		client.Close()
		return nil, errPipeClosed
	case <-ctx.Done():
		server.Close()
		client.Close()
		return nil, ctx.Err()
	}
}

// gatewayAwareCreds serves TLS to network peers and plaintext to the
// in-process gateway pipe, which no network peer can reach.
type gatewayAwareCreds struct {
	credentials.TransportCredentials
}

func (c gatewayAwareCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if _, ok := conn.RemoteAddr().(gatewayAddr); ok {
		return conn, gatewayAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

func (c gatewayAwareCreds) Clone() credentials.TransportCredentials {
	return gatewayAwareCreds{c.TransportCredentials.Clone()}
}

type gatewayAuthInfo struct{ credentials.CommonAuthInfo }

func (gatewayAuthInfo) AuthType() string { return "chainbroker-gateway" }
