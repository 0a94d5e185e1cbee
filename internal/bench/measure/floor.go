package measure

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// Floor is the cost of the unavoidable part of a chain: one RS256
// parse + signature verification + claims validation of a grant shaped like
// the sandbox's (and Keycloak's) exchanged tokens, with the repo's token
// package (jwx underneath).
type Floor struct {
	PerOp       time.Duration
	AllocsPerOp int64
	BytesPerOp  int64
	N           int
	TokenBytes  int
}

// MeasureFloor runs a testing.Benchmark of token.Verifier.Verify plus the
// claim checks the broker applies (iss, single aud, exp/iat/lifetime, jti,
// sub), best of rounds (the machine may be busy with something else).
func MeasureFloor(rounds int) (Floor, error) {
	signer, err := token.GenerateSigner("RS256")
	if err != nil {
		return Floor{}, err
	}
	jwks, err := token.PublicJWKS(signer)
	if err != nil {
		return Floor{}, err
	}
	v, err := token.NewStaticVerifier(jwks, []string{"RS256"})
	if err != nil {
		return Floor{}, err
	}
	const (
		issuer   = "http://127.0.0.1:8181/realms/domain-a"
		audience = "http://127.0.0.1:8282/realms/domain-b"
	)
	now := time.Now()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	compact, err := signer.Sign(map[string]any{
		"iss": issuer, "sub": "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c", "aud": audience,
		"azp": "chainbroker", "typ": "Bearer", "iat": now.Unix(), "exp": now.Add(300 * time.Second).Unix(),
		"jti": hex.EncodeToString(jti), "scope": "profile email", "preferred_username": "alice",
	}, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		return Floor{}, err
	}
	ctx := context.Background()
	var benchErr error
	bench := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tok, err := v.Verify(ctx, compact)
			if err == nil {
				err = validate(tok, issuer, audience, time.Now())
			}
			if err != nil {
				benchErr = err
				b.FailNow()
			}
		}
	}
	var results []testing.BenchmarkResult
	for range max(rounds, 1) {
		r := testing.Benchmark(bench)
		if benchErr != nil {
			return Floor{}, benchErr
		}
		results = append(results, r)
	}
	best := slices.MinFunc(results, func(a, b testing.BenchmarkResult) int {
		return int(a.NsPerOp() - b.NsPerOp())
	})
	return Floor{
		PerOp: time.Duration(best.NsPerOp()), AllocsPerOp: best.AllocsPerOp(), BytesPerOp: best.AllocedBytesPerOp(),
		N: best.N, TokenBytes: len(compact),
	}, nil
}

// validate is the broker's claim policy with Keycloak's defaults
// (docs/design.md §2), as cheap as the real one.
func validate(tok *token.Token, issuer, audience string, now time.Time) error {
	c := &tok.Claims
	switch {
	case tok.Header.Alg != "RS256" || (tok.Header.Typ != "" && tok.Header.Typ != token.TypeJWT):
		return errors.New("header")
	case c.Issuer != issuer:
		return errors.New("iss")
	case len(c.Audience) != 1 || c.Audience[0] != audience:
		return errors.New("aud")
	case c.Expiry.IsZero() || !now.Before(c.Expiry):
		return errors.New("exp")
	case !c.IssuedAt.IsZero() && c.IssuedAt.After(now):
		return errors.New("iat")
	case c.Expiry.Sub(c.IssuedAt) > 300*time.Second:
		return errors.New("lifetime")
	case c.JTI == "" || c.Subject == "":
		return errors.New("jti/sub")
	}
	return nil
}
