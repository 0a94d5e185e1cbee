package keyset

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/chainbroker/chainbroker/token"
)

// DefaultAlg is the algorithm of generated keys when none is asked for.
const DefaultAlg = "ES256"

// GenerateAlgs are the algorithms Generate accepts. A PEM file does not
// record its algorithm: a key made for PS256/384/512 or RS384/512 needs the
// same alg in its KeyConfig, the others are found by key type.
var GenerateAlgs = []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}

// rsaBits is the modulus size of generated RSA keys.
const rsaBits = 2048

// Generate creates a private key for alg ("" means ES256; RSA keys have
// 2048 bits, EdDSA keys are Ed25519) and returns it as PKCS#8 PEM with its
// kid (the RFC 7638 thumbprint).
func Generate(alg string) (pemPKCS8 []byte, kid string, err error) {
	if alg == "" {
		alg = DefaultAlg
	}
	var key crypto.Signer
	switch alg {
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		key, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case "EdDSA":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, "", fmt.Errorf("keyset: cannot generate a key for alg %q (want one of %v)", alg, GenerateAlgs)
	}
	if err != nil {
		return nil, "", fmt.Errorf("keyset: generate %s key: %w", alg, err)
	}
	sg, err := token.NewSigner(key, alg, "")
	if err != nil {
		return nil, "", fmt.Errorf("keyset: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", fmt.Errorf("keyset: PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), sg.KeyID(), nil
}
