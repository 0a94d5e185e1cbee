// Package tlsreload serves TLS with a certificate, key and optional client CA
// read from files and reloaded when the files change, without a restart.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files name the PEM files. ClientCAFile is optional; when set, clients may
// present certificates, which are verified against it (mTLS).
type Files struct {
	CertFile, KeyFile, ClientCAFile string
}

// checkInterval bounds how often the files are stat'ed (on handshakes).
const checkInterval = time.Second

// Reloader holds the current TLS material. Safe for concurrent use.
type Reloader struct {
	files Files
	log   *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	pool      *x509.CertPool
	stamp     [3]time.Time // mtimes of cert, key, CA at the last load
	lastCheck time.Time
}

// New loads the files now; a problem is an error naming the file.
func New(files Files, log *slog.Logger) (*Reloader, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{files: files, log: log}
	stamp, err := r.stamps()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	r.lastCheck = time.Now()
	return r, nil
}

func (r *Reloader) stamps() ([3]time.Time, error) {
	var s [3]time.Time
	for i, f := range []string{r.files.CertFile, r.files.KeyFile, r.files.ClientCAFile} {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return s, fmt.Errorf("tls: %w", err)
		}
		s[i] = fi.ModTime()
	}
	return s, nil
}

func (r *Reloader) load(stamp [3]time.Time) error {
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %s / %s: %w", r.files.CertFile, r.files.KeyFile, err)
	}
	var pool *x509.CertPool
	if r.files.ClientCAFile != "" {
		pemBytes, err := os.ReadFile(r.files.ClientCAFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("tls: %s: no PEM certificate found", r.files.ClientCAFile)
		}
	}
	r.cert, r.pool, r.stamp = &cert, pool, stamp
	return nil
}

// current returns the material, reloading it first if a file changed (at
// most once per checkInterval). A failed reload keeps the previous material.
func (r *Reloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.lastCheck) >= checkInterval {
		r.lastCheck = now
		if stamp, err := r.stamps(); err != nil {
			r.log.Warn("tls files unreadable; keeping the loaded certificate", "error", err)
		} else if stamp != r.stamp {
			if err := r.load(stamp); err != nil {
				r.log.Warn("tls reload failed; keeping the loaded certificate", "error", err)
			} else {
				r.log.Info("tls certificate reloaded", "cert_file", r.files.CertFile)
			}
		}
	}
	return r.cert, r.pool
}

// ServerConfig returns a tls.Config for a listener negotiating nextProtos
// (["h2"] for gRPC, ["h2", "http/1.1"] for HTTP). Client certificates are
// requested and, when presented, verified against the client CA.
func (r *Reloader) ServerConfig(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := r.current()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*cert},
			}
			if pool != nil {
				c.ClientCAs = pool
				c.ClientAuth = tls.VerifyClientCertIfGiven
			}
			return c, nil
		},
	}
}
