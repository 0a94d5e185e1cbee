package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// algInfo describes which keys fit a JWS algorithm.
type algInfo struct {
	sa   jwa.SignatureAlgorithm
	kty  string // "RSA", "EC", "OKP", "oct"
	crv  string // EC/OKP curve; "" for RSA and oct
	hmac bool
}

// algs is the table of algorithms this package knows. "none" is absent on
// purpose: it can never be allowed.
var algs = map[string]algInfo{
	"RS256": {sa: jwa.RS256, kty: "RSA"},
	"RS384": {sa: jwa.RS384, kty: "RSA"},
	"RS512": {sa: jwa.RS512, kty: "RSA"},
	"PS256": {sa: jwa.PS256, kty: "RSA"},
	"PS384": {sa: jwa.PS384, kty: "RSA"},
	"PS512": {sa: jwa.PS512, kty: "RSA"},
	"ES256": {sa: jwa.ES256, kty: "EC", crv: "P-256"},
	"ES384": {sa: jwa.ES384, kty: "EC", crv: "P-384"},
	"ES512": {sa: jwa.ES512, kty: "EC", crv: "P-521"},
	"EdDSA": {sa: jwa.EdDSA, kty: "OKP", crv: "Ed25519"},
	"HS256": {sa: jwa.HS256, kty: "oct", hmac: true},
	"HS384": {sa: jwa.HS384, kty: "oct", hmac: true},
	"HS512": {sa: jwa.HS512, kty: "oct", hmac: true},
}

// keyEntry is one verification key, ready for use: raw is the public key
// (or HMAC secret) handed to jws.Verify, key its JWK form.
type keyEntry struct {
	kid string // "" for keys configured without one (PEM): they match any kid
	alg string // the JWK's own alg, "" if absent
	kty string
	crv string
	raw any
	key jwk.Key
}

// fits reports whether the entry may verify a token signed with alg.
func (e *keyEntry) fits(alg string) bool {
	info, ok := algs[alg]
	if !ok || info.kty != e.kty || info.crv != e.crv {
		return false
	}
	return e.alg == "" || e.alg == alg
}

// keySet is an immutable set of verification keys.
type keySet struct {
	entries []*keyEntry
}

// candidates returns the keys that may verify a token with kid and alg:
// the keys with that kid; failing that, the keys configured without a kid.
// A token without kid may use any key.
func (s *keySet) candidates(kid, alg string) []*keyEntry {
	if s == nil {
		return nil
	}
	var exact, anyKid []*keyEntry
	for _, e := range s.entries {
		if !e.fits(alg) {
			continue
		}
		switch {
		case kid == "" || e.kid == "":
			anyKid = append(anyKid, e)
		case e.kid == kid:
			exact = append(exact, e)
		}
	}
	if len(exact) > 0 {
		return exact
	}
	return anyKid
}

// newEntry describes a public key (or HMAC secret); kid and alg as given.
func newEntry(raw any, kid, alg string) (*keyEntry, error) {
	e := &keyEntry{kid: kid, alg: alg, raw: raw}
	switch k := raw.(type) {
	case *rsa.PublicKey:
		e.kty = "RSA"
	case *ecdsa.PublicKey:
		e.kty = "EC"
		e.crv = k.Curve.Params().Name
	case ed25519.PublicKey:
		e.kty, e.crv = "OKP", "Ed25519"
	case []byte:
		e.kty = "oct"
	default:
		return nil, fmt.Errorf("unsupported key type %T", raw)
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if kid != "" {
		if err := key.Set(jwk.KeyIDKey, kid); err != nil {
			return nil, err
		}
	}
	e.key = key
	return e, nil
}

// entryFromJWK turns one parsed JWK into an entry. ok is false for keys that
// are not for signatures or of an unsupported type; symmetric keys are
// refused unless allowHMAC.
func entryFromJWK(k jwk.Key, allowHMAC bool) (e *keyEntry, ok bool, err error) {
	if use := k.KeyUsage(); use != "" && use != "sig" {
		return nil, false, nil
	}
	if k.KeyType() == jwa.OctetSeq && !allowHMAC {
		return nil, false, nil
	}
	pub := k
	if k.KeyType() != jwa.OctetSeq {
		if pub, err = jwk.PublicKeyOf(k); err != nil {
			return nil, false, fmt.Errorf("key %s: %w", quote(k.KeyID()), err)
		}
	}
	var raw any
	if err := pub.Raw(&raw); err != nil {
		return nil, false, fmt.Errorf("key %s: %w", quote(k.KeyID()), err)
	}
	alg := ""
	if a := k.Algorithm(); a != nil {
		alg = a.String()
	}
	switch r := raw.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, []byte:
	case rsa.PublicKey:
		raw = &r
	case ecdsa.PublicKey:
		raw = &r
	default:
		return nil, false, nil // e.g. X25519: not a signature key
	}
	e, err = newEntry(raw, k.KeyID(), alg)
	if err != nil {
		return nil, false, err
	}
	e.key = pub
	return e, true, nil
}

// parseJWKS parses a JWKS document (or a single JWK) into a key set.
func parseJWKS(doc []byte, maxKeys int, allowHMAC bool) (*keySet, error) {
	set, err := jwk.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	if maxKeys > 0 && set.Len() > maxKeys {
		return nil, fmt.Errorf("JWKS has %d keys, limit %d", set.Len(), maxKeys)
	}
	ks := &keySet{}
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		e, ok, err := entryFromJWK(k, allowHMAC)
		if err != nil {
			return nil, err
		}
		if ok {
			ks.entries = append(ks.entries, e)
		}
	}
	return ks, nil
}

// parsePEMPublicKeys reads PEM "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY"
// (PKCS#1) and "CERTIFICATE" blocks. Keys get no kid: they match any.
func parsePEMPublicKeys(doc []byte) (*keySet, error) {
	ks := &keySet{}
	rest := doc
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		e, err := newEntry(pub, "", "")
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		ks.entries = append(ks.entries, e)
	}
	if len(ks.entries) == 0 {
		return nil, errors.New("no PEM public key or certificate found")
	}
	return ks, nil
}

// fetchJWKS GETs the JWKS document. Every error wraps ErrKeysUnavailable.
func fetchJWKS(ctx context.Context, cfg *RemoteKeys, client *http.Client) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeysUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return nil, fmt.Errorf("%w: GET %s: HTTP %d redirect not followed: the JWKS must be served at the configured URL", ErrKeysUnavailable, cfg.URL, resp.StatusCode)
		}
		return nil, fmt.Errorf("%w: GET %s: HTTP %d", ErrKeysUnavailable, cfg.URL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cfg.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: read body: %w", ErrKeysUnavailable, cfg.URL, err)
	}
	if int64(len(body)) > cfg.MaxBytes {
		return nil, fmt.Errorf("%w: GET %s: JWKS exceeds %d bytes", ErrKeysUnavailable, cfg.URL, cfg.MaxBytes)
	}
	ks, err := parseJWKS(body, cfg.MaxKeys, false)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrKeysUnavailable, cfg.URL, err)
	}
	return ks, nil
}
