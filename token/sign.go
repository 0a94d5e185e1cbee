package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// minRSABits is the smallest RSA modulus a Signer accepts.
const minRSABits = 2048

// Signer signs JWTs with one private key. It is immutable and safe for
// concurrent use; everything that does not depend on the claims (JWK,
// header, algorithm implementation) is prepared once.
type Signer struct {
	alg    string
	kid    string
	key    any     // crypto.Signer, or []byte for HMAC
	pub    jwk.Key // public JWK with kid, alg, use; nil for HMAC
	impl   jws.Signer
	header string // base64url protected header for the default SignOptions
}

// defaultAlg picks the algorithm for a key when none is configured: RS256
// for RSA, ES256/384/512 by curve, EdDSA for Ed25519.
func defaultAlg(key crypto.Signer) string {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return "RS256"
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().Name {
		case "P-384":
			return "ES384"
		case "P-521":
			return "ES512"
		}
		return "ES256"
	case ed25519.PrivateKey:
		return "EdDSA"
	}
	return ""
}

// NewSigner wraps a private key (*rsa.PrivateKey, *ecdsa.PrivateKey,
// ed25519.PrivateKey). alg must fit the key ("" picks it by key type, see
// defaultAlg). kid "" means the RFC 7638
// thumbprint of the public key (base64url SHA-256).
func NewSigner(key crypto.Signer, alg, kid string) (*Signer, error) {
	if key == nil {
		return nil, errors.New("token: nil signing key")
	}
	if alg == "" {
		alg = defaultAlg(key)
	}
	info, ok := algs[alg]
	if !ok || info.hmac {
		return nil, fmt.Errorf("token: unsupported signing alg %q", alg)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if info.kty != "RSA" {
			return nil, fmt.Errorf("token: alg %s does not fit an RSA key", alg)
		}
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("token: RSA key of %d bits, need at least %d", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PrivateKey:
		if info.kty != "EC" || info.crv != k.Curve.Params().Name {
			return nil, fmt.Errorf("token: alg %s does not fit an ECDSA %s key", alg, k.Curve.Params().Name)
		}
	case ed25519.PrivateKey:
		if info.kty != "OKP" {
			return nil, fmt.Errorf("token: alg %s does not fit an Ed25519 key", alg)
		}
	default:
		return nil, fmt.Errorf("token: unsupported signing key type %T", key)
	}
	pub, err := jwk.FromRaw(key.Public())
	if err != nil {
		return nil, fmt.Errorf("token: public JWK: %w", err)
	}
	if kid == "" {
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("token: thumbprint: %w", err)
		}
		kid = b64.EncodeToString(tp)
	}
	for name, val := range map[string]any{
		jwk.KeyIDKey:     kid,
		jwk.AlgorithmKey: info.sa,
		jwk.KeyUsageKey:  jwk.ForSignature,
	} {
		if err := pub.Set(name, val); err != nil {
			return nil, fmt.Errorf("token: public JWK %s: %w", name, err)
		}
	}
	return newSigner(key, alg, kid, pub)
}

func newSigner(key any, alg, kid string, pub jwk.Key) (*Signer, error) {
	impl, err := jws.NewSigner(algs[alg].sa)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	s := &Signer{alg: alg, kid: kid, key: key, pub: pub, impl: impl}
	if s.header, err = s.encodeHeader(TypeJWT, kid); err != nil {
		return nil, err
	}
	return s, nil
}

// GenerateSigner creates a fresh key for alg (RS256/384/512 and PS*: RSA 2048;
// ES256/384/512: the matching curve; EdDSA: Ed25519).
func GenerateSigner(alg string) (*Signer, error) {
	info, ok := algs[alg]
	if !ok || info.hmac {
		return nil, fmt.Errorf("token: unsupported signing alg %q", alg)
	}
	var key crypto.Signer
	var err error
	switch info.kty {
	case "RSA":
		key, err = rsa.GenerateKey(rand.Reader, minRSABits)
	case "EC":
		var c elliptic.Curve
		switch info.crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		default:
			c = elliptic.P521()
		}
		key, err = ecdsa.GenerateKey(c, rand.Reader)
	case "OKP":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("token: generate %s key: %w", alg, err)
	}
	return NewSigner(key, alg, "")
}

// LoadSignerPEM reads a PKCS#8, PKCS#1 or SEC1 PEM private key.
func LoadSignerPEM(pemBytes []byte, alg, kid string) (*Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("token: no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("token: PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("token: PEM %q: %w", block.Type, err)
	}
	cs, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("token: unsupported private key type %T", key)
	}
	return NewSigner(cs, alg, kid)
}

// NewHMACSigner signs with HS256/384/512 and a shared secret (tests and the
// sandbox's "alg not allowed" misbehaviour only).
func NewHMACSigner(secret []byte, alg, kid string) (*Signer, error) {
	if info, ok := algs[alg]; !ok || !info.hmac {
		return nil, fmt.Errorf("token: %q is not an HMAC alg", alg)
	}
	if len(secret) == 0 {
		return nil, errors.New("token: empty HMAC secret")
	}
	return newSigner(bytes.Clone(secret), alg, kid, nil)
}

// SignOptions adjust the protected header.
type SignOptions struct {
	Typ string // "" means "JWT"
	Kid string // "" means the signer's kid; set to lie about the key (tests)
}

type protectedHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ"`
}

func (s *Signer) encodeHeader(typ, kid string) (string, error) {
	h, err := json.Marshal(protectedHeader{Alg: s.alg, Kid: kid, Typ: typ})
	if err != nil {
		return "", fmt.Errorf("token: header: %w", err)
	}
	return b64.EncodeToString(h), nil
}

// Sign serialises claims (any JSON-marshalable map; "aud" may be a string or
// []string and is written as given) into a compact JWS. A nil map gives
// empty claims ({}).
func (s *Signer) Sign(claims map[string]any, opts SignOptions) (string, error) {
	header := s.header
	if (opts.Typ != "" && opts.Typ != TypeJWT) || (opts.Kid != "" && opts.Kid != s.kid) {
		typ, kid := opts.Typ, opts.Kid
		if typ == "" {
			typ = TypeJWT
		}
		if kid == "" {
			kid = s.kid
		}
		var err error
		if header, err = s.encodeHeader(typ, kid); err != nil {
			return "", err
		}
	}
	if claims == nil {
		claims = map[string]any{}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token: claims: %w", err)
	}
	n := len(header) + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, 0, n+1+700) // room for an RSA-4096 signature
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig, err := s.impl.Sign(buf, s.key)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// Alg returns the signing algorithm.
func (s *Signer) Alg() string { return s.alg }

// KeyID returns the kid written into the header.
func (s *Signer) KeyID() string { return s.kid }

// PublicJWK returns the signer's public key as a JWK JSON object (kty, kid,
// alg, use "sig"); nil for HMAC signers.
func (s *Signer) PublicJWK() ([]byte, error) {
	if s.pub == nil {
		return nil, nil
	}
	b, err := json.Marshal(s.pub)
	if err != nil {
		return nil, fmt.Errorf("token: public JWK: %w", err)
	}
	return b, nil
}

// PublicJWKS renders the public keys of signers as a JWKS document
// ({"keys":[...]}, each with kid, alg and use "sig"). HMAC signers are skipped.
func PublicJWKS(signers ...*Signer) ([]byte, error) {
	keys := make([]json.RawMessage, 0, len(signers))
	for _, s := range signers {
		if s == nil || s.pub == nil {
			continue
		}
		b, err := s.PublicJWK()
		if err != nil {
			return nil, err
		}
		keys = append(keys, b)
	}
	out, err := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{keys})
	if err != nil {
		return nil, fmt.Errorf("token: JWKS: %w", err)
	}
	return out, nil
}
