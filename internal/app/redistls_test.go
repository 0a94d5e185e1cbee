package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/keyset"
	"github.com/chainbroker/chainbroker/store"
)

// redisPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// redis.test, and a client certificate, written as PEM files (keys 0600).
type redisPKI struct {
	dir                                                  string
	caFile, serverCert, serverKey, clientCert, clientKey string
	otherCAFile                                          string
}

func newRedisPKI(t *testing.T) *redisPKI {
	t.Helper()
	dir := t.TempDir()
	p := &redisPKI{dir: dir}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		path := filepath.Join(dir, name+".pem")
		writePEM(t, path, "CERTIFICATE", der)
		return cert, key, path
	}
	ca, caKey, caFile := newCA("ca")
	_, _, p.otherCAFile = newCA("other-ca")
	p.caFile = caFile
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, DNSNames: dns}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
		certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writePEM(t, certPath, "CERTIFICATE", der)
		writePEM(t, keyPath, "PRIVATE KEY", keyDER)
		return certPath, keyPath
	}
	p.serverCert, p.serverKey = leaf("redis", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, []string{"redis.test"})
	p.clientCert, p.clientKey = leaf("broker", 3, x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

// TestRedisTLS (#14.14): store.redis.addrs with store.redis.tls reaches a
// real redis-server that only speaks TLS on that port and requires client
// certificates; the certificate is verified (CA, name), never skipped.
func TestRedisTLS(t *testing.T) {
	pki := newRedisPKI(t)
	tlsAddr := testutil.FreeAddr(t)
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	redistest.New(t, redistest.Options{Args: []string{
		"--tls-port", tlsPort,
		"--tls-cert-file", pki.serverCert, "--tls-key-file", pki.serverKey,
		"--tls-ca-cert-file", pki.caFile, "--tls-auth-clients", "yes",
	}})
	good := config.RedisTLS{Enabled: true, CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}
	tests := []struct {
		name    string
		addrs   []string
		tls     config.RedisTLS
		ok      bool
		errPart string // in the store's error, when the store is built
	}{
		{"tls with CA and client certificate", []string{tlsAddr}, good, true, ""},
		{"server_name matching a DNS SAN", []string{tlsAddr}, withServerName(good, "redis.test"), true, ""},
		{"server_name not in the certificate", []string{tlsAddr}, withServerName(good, "other.test"), false, ""},
		{"another CA", []string{tlsAddr}, config.RedisTLS{Enabled: true, CAFile: pki.otherCAFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}, false, ""},
		{"system roots only", []string{tlsAddr}, config.RedisTLS{Enabled: true, CertFile: pki.clientCert, KeyFile: pki.clientKey}, false, ""},
		{"no client certificate", []string{tlsAddr}, config.RedisTLS{Enabled: true, CAFile: pki.caFile}, false, ""},
		{"plain TCP to the TLS port", []string{tlsAddr}, config.RedisTLS{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.File{Store: config.Store{Backend: "redis", Redis: config.Redis{Addrs: tt.addrs, TLS: tt.tls,
				OpTimeout: config.Duration(3 * time.Second)}}}
			cfg.SetDefaults()
			cfg.Store.Redis.OpTimeout = config.Duration(3 * time.Second)
			st, err := app.BuildStore(cfg, os.LookupEnv, false)
			if err != nil {
				t.Fatalf("buildStore: %v", err)
			}
			defer st.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = st.Mark(ctx, store.ReplayKey{Target: "b", Issuer: "a", JTI: tt.name}, time.Now().Add(time.Minute))
			if tt.ok && err != nil {
				t.Fatalf("Mark over TLS: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatal("Mark succeeded, want a TLS failure")
			}
		})
	}

	// A group-readable client key is refused like every key file.
	if err := os.Chmod(pki.clientKey, 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := &config.File{Store: config.Store{Backend: "redis", Redis: config.Redis{Addrs: []string{tlsAddr}, TLS: good}}}
	cfg.SetDefaults()
	if _, err := app.BuildStore(cfg, os.LookupEnv, false); !errors.Is(err, keyset.ErrInsecurePermissions) ||
		!strings.Contains(err.Error(), "store.redis.tls.key_file") {
		t.Errorf("0640 client key: %v", err)
	}
}

func withServerName(t config.RedisTLS, name string) config.RedisTLS {
	t.ServerName = name
	return t
}

// TestRedisConfigRefusals (#14.14): a password inside store.redis.url, TLS
// settings without TLS, or skip_verify, are configuration errors.
func TestRedisConfigRefusals(t *testing.T) {
	tests := []struct {
		name  string
		redis config.Redis
		want  string // "" = valid
	}{
		{"url without password", config.Redis{URL: "redis://127.0.0.1:6379/0"}, ""},
		{"url with user only", config.Redis{URL: "redis://broker@127.0.0.1:6379/0", PasswordEnv: "P"}, ""},
		{"rediss url with ca_file", config.Redis{URL: "rediss://127.0.0.1:6379/0", TLS: config.RedisTLS{CAFile: "/ca.pem"}}, ""},
		{"addrs with tls", config.Redis{Addrs: []string{"a:1", "b:2"}, TLS: config.RedisTLS{Enabled: true, ServerName: "redis"}}, ""},
		{"url with password", config.Redis{URL: "redis://:hunter2@127.0.0.1:6379/0"}, "store.redis.url: must not carry a password"},
		{"url with user and password", config.Redis{URL: "rediss://broker:hunter2@127.0.0.1:6379/0"}, "password_env"},
		{"url with empty password", config.Redis{URL: "redis://broker:@127.0.0.1:6379/0"}, "store.redis.url: must not carry a password"},
		{"url with skip_verify", config.Redis{URL: "rediss://127.0.0.1:6379/0?skip_verify=true"}, "skip_verify"},
		{"tls.enabled with redis://", config.Redis{URL: "redis://127.0.0.1:6379/0", TLS: config.RedisTLS{Enabled: true}}, "store.redis.tls.enabled"},
		{"ca_file without tls", config.Redis{Addrs: []string{"a:1"}, TLS: config.RedisTLS{CAFile: "/ca.pem"}}, "need tls.enabled"},
		{"cert without key", config.Redis{Addrs: []string{"a:1"}, TLS: config.RedisTLS{Enabled: true, CertFile: "/c.pem"}}, "both cert_file and key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.File{Store: config.Store{Backend: "redis", Redis: tt.redis},
				Callers: config.Callers{APIKeys: []config.APIKey{{Name: "k", SHA256: strings.Repeat("ab", 32)}}}}
			cfg.SetDefaults()
			err := cfg.Validate()
			var redisErrs []string
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					if strings.Contains(line, "store.redis") {
						redisErrs = append(redisErrs, line)
					}
				}
			}
			got := strings.Join(redisErrs, "\n")
			switch {
			case tt.want == "" && got != "":
				t.Errorf("refused: %s", got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("errors %q, want one containing %q", got, tt.want)
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("the error echoes the password: %s", got)
			}
		})
	}
}
