package server_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store/memory"
)

// limitsServer serves a broker (two domains, no chains) with the given
// transport bounds; REST over TLS (so that it speaks HTTP/2) when tlsCfg is
// set. It returns the gRPC and REST addresses.
func limitsServer(t *testing.T, limits server.Limits, tlsCfg *tls.Config) (grpcAddr, httpAddr string) {
	t.Helper()
	st := memory.New(memory.Options{})
	domain := func(name string) broker.Domain {
		return broker.Domain{Name: name, Issuer: "https://" + name + ".example", TokenEndpoint: "https://" + name + ".example/token",
			Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "s"}}
	}
	srv := newServer(t, broker.Config{
		Domains:  []broker.Domain{domain("domain-a"), domain("domain-b")},
		Endpoint: oauth.NewClient(oauth.ClientOptions{Timeout: time.Second}),
		Replay:   st, Audit: st,
	}, server.Config{Audit: st, Limits: limits, HTTPTLS: tlsCfg})
	s := serve(t, srv)
	return s.grpcAddr, s.httpAddr
}

// selfSigned is a TLS server configuration with a fresh self-signed
// certificate for 127.0.0.1, offering h2.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// serverSettings speaks HTTP/2 on c (the preface and an empty SETTINGS) and
// returns the server's first SETTINGS, or an error when none arrives within
// wait.
func serverSettings(c net.Conn, wait time.Duration) (map[http2.SettingID]uint32, error) {
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		return nil, err
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			m := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error { m[s.ID] = s.Val; return nil })
			return m, nil
		}
	}
}

// Both listeners advertise the configured HTTP/2 bounds: gRPC (h2c) and
// REST (h2 over TLS). grpc-go's defaults advertise no header-list or
// stream limit, net/http's 250 streams.
func TestHTTP2SettingsAdvertiseLimits(t *testing.T) {
	limits := server.Limits{MaxConcurrentStreams: 7, MaxHeaderBytes: 8 << 10}
	grpcAddr, httpAddr := limitsServer(t, limits, selfSigned(t))
	dial := map[string]func() (net.Conn, error){
		"gRPC": func() (net.Conn, error) { return net.DialTimeout("tcp", grpcAddr, 10*time.Second) },
		"REST": func() (net.Conn, error) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", httpAddr,
				&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) // the test's own self-signed server
			if err == nil && c.ConnectionState().NegotiatedProtocol != "h2" {
				c.Close()
				return nil, io.ErrUnexpectedEOF
			}
			return c, err
		},
	}
	for name, d := range dial {
		t.Run(name, func(t *testing.T) {
			c, err := d()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := serverSettings(c, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := s[http2.SettingMaxConcurrentStreams]; got != 7 {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 7", got)
			}
			// net/http adds some slack to MaxHeaderBytes; grpc-go sends it as is.
			if got := s[http2.SettingMaxHeaderListSize]; got < 8<<10 || got > 16<<10 {
				t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want about 8 KiB", got)
			}
		})
	}
}

// Each listener holds at most MaxConnections connections: a further peer is
// not served (no SETTINGS, no HTTP response) until one of them closes.
func TestConnectionLimit(t *testing.T) {
	grpcAddr, httpAddr := limitsServer(t, server.Limits{MaxConnections: 2}, nil)
	const notServed = time.Second // a served connection answers in microseconds

	t.Run("gRPC", func(t *testing.T) {
		var open []net.Conn
		for i := range 3 {
			c, err := net.DialTimeout("tcp", grpcAddr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			open = append(open, c)
			wait := 30 * time.Second
			if i == 2 {
				wait = notServed
			}
			_, err = serverSettings(c, wait)
			if i < 2 && err != nil {
				t.Fatalf("connection %d within the limit: %v", i+1, err)
			}
			if i == 2 && err == nil {
				t.Fatal("a third connection was served with max_connections 2")
			}
		}
		open[0].Close()
		// The third connection is accepted now: the server's SETTINGS arrive.
		fr := http2.NewFramer(io.Discard, open[2])
		_ = open[2].SetReadDeadline(time.Now().Add(30 * time.Second))
		if f, err := fr.ReadFrame(); err != nil {
			t.Fatalf("the third connection after one closed: %v", err)
		} else if _, ok := f.(*http2.SettingsFrame); !ok {
			t.Fatalf("the third connection after one closed: first frame %T", f)
		}
	})

	t.Run("REST", func(t *testing.T) {
		get := func(c net.Conn, wait time.Duration) error {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n"); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(wait))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}
		var open []net.Conn
		for i := range 3 {
			c, err := net.DialTimeout("tcp", httpAddr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			open = append(open, c)
			wait := 30 * time.Second
			if i == 2 {
				wait = notServed
			}
			err = get(c, wait)
			if i < 2 && err != nil {
				t.Fatalf("connection %d within the limit: %v", i+1, err)
			}
			if i == 2 && err == nil {
				t.Fatal("a third connection was served with max_connections 2")
			}
		}
		open[0].Close()
		_ = open[2].SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(open[2]), nil)
		if err != nil {
			t.Fatalf("the third connection after one closed: %v", err)
		}
		resp.Body.Close()
	})
}
