package token

// API to be implemented (stub bodies: the token helper replaces this file).

import (
	"context"
	"crypto"
	"net/http"
	"time"
)

// ParseUnverified parses a compact JWS without checking its signature. Use it
// only for routing (which configured issuer?) and for audit of failures.
// Errors: ErrTooLarge, ErrMalformed.
func ParseUnverified(compact string) (*Token, error) { panic("unimplemented") }

// RemoteKeys configures keys fetched from a JWKS URI (from configuration or
// discovery of a configured issuer; never from a token's jku/x5u).
type RemoteKeys struct {
	URL                string
	HTTPClient         *http.Client  // nil: a client with Timeout
	Timeout            time.Duration // per fetch; default 5s
	MinRefreshInterval time.Duration // between fetches triggered by unknown kids; default 30s
	MaxBytes           int64         // JWKS document bound; default 256 KiB
	MaxKeys            int           // default 100
}

// Verifier verifies JWS signatures with a cached key set.
type Verifier struct{}

// NewRemoteVerifier returns a Verifier whose keys come from a JWKS URI,
// fetched lazily on first use, refetched when a token names an unknown kid
// (at most once per MinRefreshInterval). allowedAlgs nil means DefaultAllowedAlgs.
func NewRemoteVerifier(keys RemoteKeys, allowedAlgs []string) *Verifier { panic("unimplemented") }

// NewStaticVerifier returns a Verifier over a fixed JWKS document or PEM
// public key(s). allowedAlgs nil means DefaultAllowedAlgs.
func NewStaticVerifier(jwksOrPEM []byte, allowedAlgs []string) (*Verifier, error) {
	panic("unimplemented")
}

// Verify checks, in order: size, shape (ErrMalformed), alg in the allow list
// (ErrAlgNotAllowed; "none" always refused), key by kid (ErrKeyUnknown after
// at most one rate-limited refresh; ErrKeysUnavailable if the JWKS cannot be
// fetched), signature (ErrSignature). It returns the parsed token with
// Verified set. Claims are not validated here.
func (v *Verifier) Verify(ctx context.Context, compact string) (*Token, error) {
	panic("unimplemented")
}

// Refresh fetches the JWKS now (for readiness and start-up).
func (v *Verifier) Refresh(ctx context.Context) error { panic("unimplemented") }

// Signer signs JWTs with one private key.
type Signer struct{}

// NewSigner wraps a private key (*rsa.PrivateKey, *ecdsa.PrivateKey,
// ed25519.PrivateKey). alg must fit the key. kid "" means the RFC 7638
// thumbprint of the public key (base64url SHA-256).
func NewSigner(key crypto.Signer, alg, kid string) (*Signer, error) { panic("unimplemented") }

// GenerateSigner creates a fresh key for alg (RS256/384/512 and PS*: RSA 2048;
// ES256/384/512: the matching curve; EdDSA: Ed25519).
func GenerateSigner(alg string) (*Signer, error) { panic("unimplemented") }

// LoadSignerPEM reads a PKCS#8, PKCS#1 or SEC1 PEM private key.
func LoadSignerPEM(pemBytes []byte, alg, kid string) (*Signer, error) { panic("unimplemented") }

// NewHMACSigner signs with HS256/384/512 and a shared secret (tests and the
// sandbox's "alg not allowed" misbehaviour only).
func NewHMACSigner(secret []byte, alg, kid string) (*Signer, error) { panic("unimplemented") }

// SignOptions adjust the protected header.
type SignOptions struct {
	Typ string // "" means "JWT"
	Kid string // "" means the signer's kid; set to lie about the key (tests)
}

// Sign serialises claims (any JSON-marshalable map; "aud" may be a string or
// []string and is written as given) into a compact JWS.
func (s *Signer) Sign(claims map[string]any, opts SignOptions) (string, error) {
	panic("unimplemented")
}

// Alg returns the signing algorithm; KeyID the kid.
func (s *Signer) Alg() string   { panic("unimplemented") }
func (s *Signer) KeyID() string { panic("unimplemented") }

// PublicJWKS renders the public keys of signers as a JWKS document
// ({"keys":[...]}, each with kid, alg and use "sig"). HMAC signers are skipped.
func PublicJWKS(signers ...*Signer) ([]byte, error) { panic("unimplemented") }
