package keyset

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/chainbroker/chainbroker/token"
)

// parseKey reads a PEM private key or a private JWK (the text starts with
// "{") and returns its signer, kid = thumbprint.
func parseKey(b []byte, alg string) (*token.Signer, error) {
	b = bytes.TrimSpace(b)
	if bytes.HasPrefix(b, []byte("{")) {
		key, jwkAlg, err := parseJWK(b)
		if err != nil {
			return nil, err
		}
		switch {
		case alg == "":
			alg = jwkAlg
		case jwkAlg != "" && jwkAlg != alg:
			return nil, fmt.Errorf("configured alg %s but the JWK says %s", alg, jwkAlg)
		}
		return token.NewSigner(key, alg, "")
	}
	return parsePEM(b, alg)
}

// parsePEM finds the private key block (skipping the "EC PARAMETERS" block
// that `openssl ecparam -genkey` writes first) and hands it to the token
// package.
func parsePEM(b []byte, alg string) (*token.Signer, error) {
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found (want PKCS#8, PKCS#1 or SEC1 PEM, or a private JWK)")
		}
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted PKCS#8 keys are not supported: store it unencrypted with mode 0600")
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
				return nil, errors.New("encrypted PEM keys are not supported: store it unencrypted with mode 0600")
			}
			return token.LoadSignerPEM(pem.EncodeToMemory(block), alg, "")
		default:
			return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
		}
	}
}

// parseJWK builds a private key from a JWK (RFC 7517/7518: kty EC with crv
// P-256/384/521, RSA with two primes, OKP with crv Ed25519), or from a JWKS
// holding exactly one key. Member names match case-sensitively. It returns
// the JWK's own "alg" ("" if absent).
func parseJWK(b []byte) (crypto.Signer, string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", fmt.Errorf("JWK: %w", err)
	}
	if keys, ok := m["keys"]; ok {
		var list []json.RawMessage
		if err := json.Unmarshal(keys, &list); err != nil {
			return nil, "", fmt.Errorf("JWKS: keys: %w", err)
		}
		if len(list) != 1 {
			return nil, "", fmt.Errorf("JWKS has %d keys, want exactly one", len(list))
		}
		m = nil
		if err := json.Unmarshal(list[0], &m); err != nil {
			return nil, "", fmt.Errorf("JWK: %w", err)
		}
	}
	j := jwkMembers(m)
	kty, err := j.str("kty")
	if err != nil {
		return nil, "", err
	}
	alg, err := j.str("alg")
	if err != nil {
		return nil, "", err
	}
	if use, err := j.str("use"); err != nil {
		return nil, "", err
	} else if use != "" && use != "sig" {
		return nil, "", fmt.Errorf("JWK use %q, want sig", use)
	}
	if _, ok := m["d"]; !ok {
		return nil, "", fmt.Errorf("JWK (kty %q) has no private member d: it is a public key", kty)
	}
	var key crypto.Signer
	switch kty {
	case "EC":
		key, err = ecJWK(j)
	case "RSA":
		key, err = rsaJWK(j)
	case "OKP":
		key, err = okpJWK(j)
	case "":
		err = errors.New("JWK has no kty")
	default:
		err = fmt.Errorf("JWK kty %q is not a signing key type (want EC, RSA or OKP)", kty)
	}
	if err != nil {
		return nil, "", err
	}
	return key, alg, nil
}

// jwkMembers reads JWK members by exact name.
type jwkMembers map[string]json.RawMessage

// str returns a string member; "" when absent.
func (j jwkMembers) str(name string) (string, error) {
	v, ok := j[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("JWK member %s is not a string", name)
	}
	return s, nil
}

// bytes returns a required base64url member.
func (j jwkMembers) bytes(name string) ([]byte, error) {
	s, err := j.str(name)
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, fmt.Errorf("JWK member %s is missing", name)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("JWK member %s is not base64url", name)
	}
	return b, nil
}

func (j jwkMembers) bigInt(name string) (*big.Int, error) {
	b, err := j.bytes(name)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

func ecJWK(j jwkMembers) (crypto.Signer, error) {
	crv, err := j.str("crv")
	if err != nil {
		return nil, err
	}
	var curve elliptic.Curve
	switch crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("JWK EC crv %q (want P-256, P-384 or P-521)", crv)
	}
	d, err := j.bytes("d")
	if err != nil {
		return nil, err
	}
	priv, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		return nil, fmt.Errorf("JWK EC d: %w", err)
	}
	x, err := j.bytes("x")
	if err != nil {
		return nil, err
	}
	y, err := j.bytes("y")
	if err != nil {
		return nil, err
	}
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("JWK EC: %w", err)
	}
	if !bytes.Equal(pub, uncompressedPoint(x, y)) {
		return nil, errors.New("JWK EC x/y do not match d")
	}
	return priv, nil
}

// uncompressedPoint is the SEC 1 encoding 0x04 || x || y.
func uncompressedPoint(x, y []byte) []byte {
	out := make([]byte, 0, 1+len(x)+len(y))
	out = append(out, 0x04)
	out = append(out, x...)
	return append(out, y...)
}

func rsaJWK(j jwkMembers) (crypto.Signer, error) {
	if _, ok := j["oth"]; ok {
		return nil, errors.New("JWK RSA with more than two primes (oth) is not supported")
	}
	vals := map[string]*big.Int{}
	for _, name := range []string{"n", "e", "d", "p", "q"} {
		v, err := j.bigInt(name)
		if err != nil {
			return nil, err
		}
		vals[name] = v
	}
	e := vals["e"]
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, errors.New("JWK RSA e out of range")
	}
	key := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: vals["n"], E: int(e.Int64())},
		D:         vals["d"],
		Primes:    []*big.Int{vals["p"], vals["q"]},
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("JWK RSA: %w", err)
	}
	key.Precompute()
	return key, nil
}

func okpJWK(j jwkMembers) (crypto.Signer, error) {
	crv, err := j.str("crv")
	if err != nil {
		return nil, err
	}
	if crv != "Ed25519" {
		return nil, fmt.Errorf("JWK OKP crv %q (want Ed25519)", crv)
	}
	d, err := j.bytes("d")
	if err != nil {
		return nil, err
	}
	if len(d) != ed25519.SeedSize {
		return nil, fmt.Errorf("JWK OKP d has %d bytes, want %d", len(d), ed25519.SeedSize)
	}
	x, err := j.bytes("x")
	if err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(d)
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), x) {
		return nil, errors.New("JWK OKP x does not match d")
	}
	return priv, nil
}
