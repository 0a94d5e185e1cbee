package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxStaticFile bounds what the static checks read of a file (secrets,
// certificates, keys).
const maxStaticFile = 1 << 20

// CheckStatic checks, without any network call, what the configuration
// names outside itself: every secret's environment variable is set, every
// secret file is readable and not empty (cache keys are the base64 of 32
// bytes), the TLS certificate and key load as a pair, CA files hold PEM
// certificates, private key files hold a PEM private key and issuer key
// files are readable. It reports every problem at once (as Problems), by
// YAML path, and never a secret's value. lookupEnv is os.LookupEnv in
// production. Settings that Validate refuses are skipped, not repeated.
func (f *File) CheckStatic(lookupEnv func(string) (string, bool)) error {
	if p := f.checkStatic(lookupEnv); len(p) > 0 {
		return p
	}
	return nil
}

func (f *File) checkStatic(lookupEnv func(string) (string, bool)) Problems {
	var p Problems
	add := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}
	// secret checks one secret given by exactly one of env and file; field
	// is the parent, envKey and fileKey the keys naming them.
	secret := func(field, envKey, env, fileKey, file string) (string, bool) {
		switch {
		case env != "" && file != "", env == "" && file == "":
			return "", false // Validate's problem
		case env != "":
			v, ok := lookupEnv(env)
			if !ok || v == "" {
				add(field+"."+envKey, "environment variable %s is not set", env)
				return "", false
			}
			return v, true
		}
		b, err := readStatic(file)
		if err != nil {
			add(field+"."+fileKey, "%v", err)
			return "", false
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			add(field+"."+fileKey, "file %s is empty", file)
			return "", false
		}
		return v, true
	}
	caFile := func(field, file string) {
		if file == "" {
			return
		}
		b, err := readStatic(file)
		if err != nil {
			add(field, "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			add(field, "%s: no PEM certificate found", file)
		}
	}

	if t := f.TLS; t.CertFile != "" && t.KeyFile != "" {
		cert, certErr := readStatic(t.CertFile)
		if certErr != nil {
			add("tls.cert_file", "%v", certErr)
		}
		key, keyErr := readStatic(t.KeyFile)
		if keyErr != nil {
			add("tls.key_file", "%v", keyErr)
		}
		if certErr == nil && keyErr == nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				add("tls", "cert_file and key_file do not load as a pair: %v", err)
			}
		}
	}
	if f.TLS.CertFile != "" {
		caFile("tls.client_ca_file", f.TLS.ClientCAFile)
	}
	if j := f.Callers.JWT; j != nil {
		caFile("callers.jwt.ca_file", j.CAFile)
	}
	if f.Store.Backend == "redis" {
		r := f.Store.Redis
		if r.PasswordEnv != "" || r.PasswordFile != "" {
			secret("store.redis", "password_env", r.PasswordEnv, "password_file", r.PasswordFile)
		}
	}
	for i, d := range f.Domains {
		fp := fmt.Sprintf("domains[%d]", i)
		caFile(fp+".ca_file", d.CAFile)
		c := d.Client
		switch c.AuthMethod {
		case "client_secret_basic", "client_secret_post":
			secret(fp+".client", "client_secret_env", c.SecretEnv, "client_secret_file", c.SecretFile)
		case "private_key_jwt":
			if c.PrivateKeyFile == "" {
				break
			}
			if b, err := readStatic(c.PrivateKeyFile); err != nil {
				add(fp+".client.private_key_file", "%v", err)
			} else if err := pemPrivateKey(b); err != nil {
				add(fp+".client.private_key_file", "%s: %v", c.PrivateKeyFile, err)
			}
		}
	}
	for i, k := range f.Cache.Keys {
		fp := fmt.Sprintf("cache.keys[%d]", i)
		if v, ok := secret(fp, "secret_env", k.SecretEnv, "secret_file", k.SecretFile); ok {
			if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); err != nil || len(b) != 32 {
				add(fp, "the secret must be the base64 of 32 bytes (openssl rand -base64 32)")
			}
		}
	}
	for i, k := range f.Issuer.Keys {
		if k.File == "" {
			continue
		}
		field := fmt.Sprintf("issuer.keys[%d].file", i)
		if b, err := readStatic(k.File); err != nil {
			add(field, "%v", err)
		} else if len(strings.TrimSpace(string(b))) == 0 {
			add(field, "file %s is empty", k.File)
		}
	}
	return p
}

// readStatic reads a file the configuration names, bounded.
func readStatic(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxStaticFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxStaticFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxStaticFile)
	}
	return b, nil
}

// pemPrivateKey checks that b starts with a PEM private key (the forms
// private_key_jwt loads: PKCS #8, PKCS #1, SEC 1).
func pemPrivateKey(b []byte) error {
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("no PEM block found")
	}
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		_, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		_, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		_, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	return err
}
