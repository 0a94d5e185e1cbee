package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"
)

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

// Defaults for RemoteKeys.
const (
	DefaultJWKSTimeout        = 5 * time.Second
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultJWKSMaxBytes       = 256 << 10
	DefaultJWKSMaxKeys        = 100
)

// keyState is what a Verifier currently knows; replaced atomically, never
// mutated.
type keyState struct {
	keys      *keySet   // last good key set; nil before the first success
	fetchedAt time.Time // time of the last completed fetch attempt
	err       error     // error of that attempt; nil on success
}

// Verifier verifies JWS signatures with a cached key set. It is safe for
// concurrent use: the fast path is one atomic load and no lock.
type Verifier struct {
	allowed map[string]bool
	state   atomic.Pointer[keyState]

	// Remote verifiers only.
	remote *RemoteKeys
	client *http.Client
	// fetchSem (capacity 1) makes fetches single-flight while letting
	// waiters give up when their context ends.
	fetchSem chan struct{}
	now      func() time.Time
}

// NewRemoteVerifier returns a Verifier whose keys come from a JWKS URI,
// fetched lazily on first use, refetched when a token names an unknown kid
// (at most once per MinRefreshInterval). allowedAlgs nil means DefaultAllowedAlgs.
// HS* algorithms are never accepted by a remote verifier. A fetch that
// fails keeps the previously fetched keys. Redirects are not followed (a
// copy of HTTPClient is used with that policy): a 3xx answer is
// ErrKeysUnavailable.
func NewRemoteVerifier(keys RemoteKeys, allowedAlgs []string) *Verifier {
	if keys.Timeout <= 0 {
		keys.Timeout = DefaultJWKSTimeout
	}
	if keys.MinRefreshInterval <= 0 {
		keys.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if keys.MaxBytes <= 0 {
		keys.MaxBytes = DefaultJWKSMaxBytes
	}
	if keys.MaxKeys <= 0 {
		keys.MaxKeys = DefaultJWKSMaxKeys
	}
	client := &http.Client{Timeout: keys.Timeout}
	if keys.HTTPClient != nil {
		c := *keys.HTTPClient // a copy: the caller's client keeps its policy
		client = &c
	}
	// Keys come from the configured URL only: a redirect (possibly to
	// another host, or from https to http) is answered, not followed.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Verifier{
		allowed:  allowSet(allowedAlgs, false),
		remote:   &keys,
		client:   client,
		fetchSem: make(chan struct{}, 1),
		now:      time.Now,
	}
}

// NewStaticVerifier returns a Verifier over a fixed JWKS document (or a
// single JWK) or PEM public key(s) ("PUBLIC KEY", "RSA PUBLIC KEY" or
// "CERTIFICATE" blocks). PEM keys carry no kid and so match a token whatever
// its kid. Symmetric JWKs are ignored. allowedAlgs nil means DefaultAllowedAlgs.
func NewStaticVerifier(jwksOrPEM []byte, allowedAlgs []string) (*Verifier, error) {
	var ks *keySet
	var err error
	trimmed := bytes.TrimSpace(jwksOrPEM)
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		ks, err = parseJWKS(trimmed, 0, false)
	case bytes.Contains(trimmed, []byte("-----BEGIN ")):
		ks, err = parsePEMPublicKeys(trimmed)
	default:
		err = errors.New("neither a JWKS document nor PEM")
	}
	if err != nil {
		return nil, fmt.Errorf("token: static keys: %w", err)
	}
	if len(ks.entries) == 0 {
		return nil, errors.New("token: static keys: no usable signature verification key")
	}
	v := &Verifier{allowed: allowSet(allowedAlgs, false)}
	v.state.Store(&keyState{keys: ks})
	return v, nil
}

// NewHMACVerifier returns a Verifier for HS256/384/512 tokens made with a
// shared secret. allowedAlgs nil means all three; other algorithms are
// refused.
func NewHMACVerifier(secret []byte, allowedAlgs []string) (*Verifier, error) {
	if len(secret) == 0 {
		return nil, errors.New("token: empty HMAC secret")
	}
	if allowedAlgs == nil {
		allowedAlgs = []string{"HS256", "HS384", "HS512"}
	}
	e, err := newEntry(bytes.Clone(secret), "", "")
	if err != nil {
		return nil, fmt.Errorf("token: HMAC key: %w", err)
	}
	v := &Verifier{allowed: allowSet(allowedAlgs, true)}
	v.state.Store(&keyState{keys: &keySet{entries: []*keyEntry{e}}})
	return v, nil
}

// allowSet keeps the known algorithms of list; HS* only when hmac, and then
// nothing else.
func allowSet(list []string, hmac bool) map[string]bool {
	if list == nil {
		list = DefaultAllowedAlgs
	}
	m := make(map[string]bool, len(list))
	for _, a := range list {
		if info, ok := algs[a]; ok && info.hmac == hmac {
			m[a] = true
		}
	}
	return m
}

// Verify checks, in order: size, shape (ErrMalformed), alg in the allow list
// (ErrAlgNotAllowed; "none" always refused), key by kid (ErrKeyUnknown, a
// *KeyUnknownError when no key fits, after at most one rate-limited
// refresh; ErrKeysUnavailable if the JWKS cannot be fetched), signature
// (ErrSignature). It returns the parsed token with
// Verified set. Claims are not validated here.
//
// Keys come only from the Verifier's configuration: jku, x5u, x5c and jwk
// headers are ignored. A token without kid is verified only if exactly one
// configured key fits its alg; a JWK with its own alg fits that alg only.
func (v *Verifier) Verify(ctx context.Context, compact string) (*Token, error) {
	p, err := parseCompact(compact)
	if err != nil {
		return nil, err
	}
	if p.hasCrit || p.hasB64 {
		return nil, fmt.Errorf("%w: unsupported crit/b64 header", ErrMalformed)
	}
	alg, kid := p.tok.Header.Alg, p.tok.Header.Kid
	if !v.allowed[alg] {
		return nil, fmt.Errorf("%w: %s", ErrAlgNotAllowed, quote(alg))
	}
	key, err := v.selectKey(ctx, kid, alg)
	if err != nil {
		return nil, err
	}
	// The parts were decoded once by parseCompact: verify the signature over
	// them directly (jws.Verify would parse the whole token again).
	if ok, err := verifyPKCS1v15(alg, p.signingInput, p.signature, key.raw); ok {
		if err != nil {
			return nil, fmt.Errorf("%w: kid %s, alg %s", ErrSignature, quote(kid), alg)
		}
	} else {
		verifier, err := jws.NewVerifier(algs[alg].sa)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrAlgNotAllowed, alg)
		}
		if err := verifier.Verify(p.signingInput, p.signature, key.raw); err != nil {
			return nil, fmt.Errorf("%w: kid %s, alg %s", ErrSignature, quote(kid), alg)
		}
	}
	p.tok.Verified = true
	return p.tok, nil
}

// verifyPKCS1v15 verifies an RS256, RS384 or RS512 signature with an RSA
// public key as jws's verifier does (crypto/rsa.VerifyPKCS1v15 over the
// digest of the signing input), with the digest on the stack and without
// copying the key. ok false: alg or key is of another kind, for jws.
func verifyPKCS1v15(alg string, input, sig []byte, raw any) (ok bool, err error) {
	pub, isRSA := raw.(*rsa.PublicKey)
	if !isRSA {
		return false, nil
	}
	switch alg {
	case "RS256":
		d := sha256.Sum256(input)
		return true, rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
	case "RS384":
		d := sha512.Sum384(input)
		return true, rsa.VerifyPKCS1v15(pub, crypto.SHA384, d[:], sig)
	case "RS512":
		d := sha512.Sum512(input)
		return true, rsa.VerifyPKCS1v15(pub, crypto.SHA512, d[:], sig)
	}
	return false, nil
}

// selectKey finds the key for kid and alg, refreshing a remote key set
// (lazily the first time, then rate limited) when none matches.
func (v *Verifier) selectKey(ctx context.Context, kid, alg string) (*keyEntry, error) {
	st := v.state.Load()
	if st == nil || st.keys == nil {
		if v.remote != nil && (st == nil || v.stale(st)) {
			st = v.refresh(ctx, st, false)
		}
		if st == nil || st.keys == nil {
			return nil, v.unavailable(st)
		}
	}
	cands := st.keys.candidates(kid, alg)
	var refreshIn time.Duration
	if len(cands) == 0 && v.remote != nil {
		if v.stale(st) {
			st = v.refresh(ctx, st, false)
			if st.err != nil {
				return nil, v.unavailable(st)
			}
			cands = st.keys.candidates(kid, alg)
		} else {
			refreshIn = v.remote.MinRefreshInterval - v.now().Sub(st.fetchedAt)
		}
	}
	switch {
	case len(cands) == 0:
		return nil, &KeyUnknownError{Kid: kid, Alg: alg, RefreshIn: max(refreshIn, 0)}
	case len(cands) > 1 && kid == "":
		return nil, fmt.Errorf("%w: token has no kid and %d keys fit alg %s", ErrKeyUnknown, len(cands), alg)
	case len(cands) > 1:
		return nil, fmt.Errorf("%w: kid %s is ambiguous (%d keys fit alg %s)", ErrKeyUnknown, quote(kid), len(cands), alg)
	}
	return cands[0], nil
}

// KeyUnknownError is the ErrKeyUnknown of a token for which no key fits
// (kid, alg). RefreshIn > 0 says the key set was not refetched for this
// token because the last fetch was less than MinRefreshInterval ago: the
// kid may be a new key (a rotation) that a refetch, allowed in RefreshIn,
// would find. RefreshIn 0: the set was just fetched, or is static.
type KeyUnknownError struct {
	Kid       string // "" when the token has none
	Alg       string
	RefreshIn time.Duration
}

func (e *KeyUnknownError) Error() string {
	msg := ErrKeyUnknown.Error() + ": "
	if e.Kid == "" {
		msg += "token has no kid and no key fits alg " + e.Alg
	} else {
		msg += "kid " + quote(e.Kid) + " with alg " + e.Alg
	}
	if e.RefreshIn > 0 {
		msg += fmt.Sprintf(" in the cached key set; refetch allowed in %v", e.RefreshIn.Round(time.Millisecond))
	}
	return msg
}

// Is makes errors.Is(err, ErrKeyUnknown) true.
func (e *KeyUnknownError) Is(target error) bool { return target == ErrKeyUnknown }

func (v *Verifier) unavailable(st *keyState) error {
	if st != nil && st.err != nil {
		return st.err // already wraps ErrKeysUnavailable
	}
	return fmt.Errorf("%w: no keys fetched yet", ErrKeysUnavailable)
}

// stale reports whether the rate limit allows another fetch.
func (v *Verifier) stale(st *keyState) bool {
	return v.now().Sub(st.fetchedAt) >= v.remote.MinRefreshInterval
}

// Refresh fetches the JWKS now (for readiness and start-up). It is a no-op
// for static verifiers.
func (v *Verifier) Refresh(ctx context.Context) error {
	if v.remote == nil {
		return nil
	}
	st := v.refresh(ctx, v.state.Load(), true)
	if st == nil || st.err != nil {
		return v.unavailable(st)
	}
	return nil
}

// RefreshIfAllowed fetches the JWKS when no fetch has been made yet or the
// last one is older than the refresh floor (MinRefreshInterval); otherwise
// it answers from the last fetch. For readiness checks, which run
// periodically and must not hammer an unreachable JWKS. A no-op for static
// verifiers.
func (v *Verifier) RefreshIfAllowed(ctx context.Context) error {
	if v.remote == nil {
		return nil
	}
	st := v.refresh(ctx, v.state.Load(), false)
	if st == nil || st.err != nil {
		return v.unavailable(st)
	}
	return nil
}

// refresh fetches the key set unless another caller did while we waited
// (single flight) or, unless force, the rate limit forbids it. It returns the
// state to use. A fetch failing because ctx ended is not recorded, so one
// impatient caller does not block refreshes for everybody.
func (v *Verifier) refresh(ctx context.Context, seen *keyState, force bool) *keyState {
	select {
	case v.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return &keyState{keys: keysOf(seen), err: fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())}
	}
	defer func() { <-v.fetchSem }()

	cur := v.state.Load()
	if cur != seen {
		return cur // someone else fetched while we waited
	}
	if !force && cur != nil && !v.stale(cur) {
		return cur
	}
	ks, err := fetchJWKS(ctx, v.remote, v.client)
	if err != nil {
		st := &keyState{keys: keysOf(cur), fetchedAt: v.now(), err: err}
		if ctx.Err() == nil {
			v.state.Store(st)
		}
		return st
	}
	st := &keyState{keys: ks, fetchedAt: v.now()}
	v.state.Store(st)
	return st
}

func keysOf(st *keyState) *keySet {
	if st == nil {
		return nil
	}
	return st.keys
}

// Loaded reports whether the Verifier holds usable keys (always true for
// static verifiers; for remote ones, once a JWKS fetch succeeded).
func (v *Verifier) Loaded() bool {
	st := v.state.Load()
	return st != nil && st.keys != nil && len(st.keys.entries) > 0
}
