package brokertest

import (
	"context"
	"sync"
	"testing"

	"github.com/chainbroker/chainbroker/token"
)

var keys = struct {
	sync.Mutex
	m map[[2]string]*token.Signer
}{m: map[[2]string]*token.Signer{}}

// Key is the signing key called name for alg, made once per test binary
// (RSA key generation costs more than most tests): the same name and alg
// give the same key, different names different keys.
func Key(tb testing.TB, name, alg string) *token.Signer {
	tb.Helper()
	keys.Lock()
	defer keys.Unlock()
	if s := keys.m[[2]string{name, alg}]; s != nil {
		return s
	}
	s, err := token.GenerateSigner(alg)
	if err != nil {
		tb.Fatal(err)
	}
	keys.m[[2]string{name, alg}] = s
	return s
}

// Verifier verifies with the public keys of signers (a static JWKS), with
// allowed algorithms the token package's defaults.
func Verifier(tb testing.TB, signers ...*token.Signer) *token.Verifier {
	tb.Helper()
	jwks, err := token.PublicJWKS(signers...)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// FailingKeys is a key set (broker.Verifier) whose every verification fails
// with Err: token.ErrKeysUnavailable, a *token.KeyUnknownError, ...
type FailingKeys struct{ Err error }

// Verify returns k.Err.
func (k FailingKeys) Verify(context.Context, string) (*token.Token, error) { return nil, k.Err }

// SigningKeys gives one signer (broker.SigningKeys).
type SigningKeys struct{ S *token.Signer }

// Signer returns the signer.
func (k SigningKeys) Signer() *token.Signer { return k.S }
