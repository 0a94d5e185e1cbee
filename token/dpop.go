package token

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// DPoP (RFC 9449) proofs: a JWS whose header carries the public key (jwk)
// that signed it, bound to one HTTP request (htm, htu) at one time (iat).

// TypeDPoP is the JOSE typ of a DPoP proof.
const TypeDPoP = "dpop+jwt"

// Bounds and defaults of DPoP proof checks.
const (
	// MaxDPoPProofBytes bounds a proof: room for an RSA-4096 jwk and
	// signature, far below MaxTokenBytes.
	MaxDPoPProofBytes = 8 << 10
	// MaxDPoPJTIBytes bounds the proof's jti (a random id, RFC 9449 §4.2).
	MaxDPoPJTIBytes = 256
	// MaxDPoPNonceBytes bounds a server-provided nonce (RFC 9449 §8).
	MaxDPoPNonceBytes = 512
	// DefaultDPoPMaxAge is how old a proof's iat may be, and
	// DefaultDPoPClockSkew how far it may be off either way: Keycloak's
	// defaults (a proof lifetime of 10 s, 15 s of clock skew).
	DefaultDPoPMaxAge    = 10 * time.Second
	DefaultDPoPClockSkew = 15 * time.Second
)

// Errors of VerifyDPoP, one per rule; test with errors.Is. Every error also
// wraps ErrDPoPInvalid.
var (
	ErrDPoPInvalid   = errors.New("token: invalid DPoP proof")
	ErrDPoPMalformed = fmt.Errorf("%w: not a well-formed compact JWS with JSON header and claims", ErrDPoPInvalid)
	ErrDPoPType      = fmt.Errorf("%w: typ is not %s", ErrDPoPInvalid, TypeDPoP)
	ErrDPoPAlg       = fmt.Errorf("%w: signing algorithm not allowed", ErrDPoPInvalid)
	ErrDPoPKey       = fmt.Errorf("%w: jwk header is not a usable public key for alg", ErrDPoPInvalid)
	// ErrDPoPNoKey (no jwk header) and ErrDPoPPrivateKey (a private or
	// symmetric key in it) are the ErrDPoPKey cases a server names apart.
	ErrDPoPNoKey      = fmt.Errorf("%w: no jwk", ErrDPoPKey)
	ErrDPoPPrivateKey = fmt.Errorf("%w: private key material", ErrDPoPKey)
	ErrDPoPSignature  = fmt.Errorf("%w: signature does not verify with the jwk header", ErrDPoPInvalid)
	ErrDPoPClaims     = fmt.Errorf("%w: mandatory claims (jti, htm, htu, iat) missing or malformed", ErrDPoPInvalid)
	ErrDPoPMethod     = fmt.Errorf("%w: htm does not match the request method", ErrDPoPInvalid)
	ErrDPoPURL        = fmt.Errorf("%w: htu does not match the request URL", ErrDPoPInvalid)
	ErrDPoPNotActive  = fmt.Errorf("%w: iat outside the accepted window", ErrDPoPInvalid)
	ErrDPoPNonce      = fmt.Errorf("%w: nonce missing or not the one required", ErrDPoPInvalid)
	ErrDPoPATH        = fmt.Errorf("%w: ath missing or not the hash of the access token", ErrDPoPInvalid)
)

// DPoPCheck is what a proof must match.
type DPoPCheck struct {
	// Method is the request's HTTP method, compared with htm exactly.
	Method string
	// URL is the request's URL, compared with htu without query and
	// fragment (RFC 9449 §4.3), after syntax-based normalisation: scheme and
	// host case, default port, empty path as "/".
	URL string
	// AllowedAlgs are the accepted signature algorithms; nil means
	// DefaultAllowedAlgs. Symmetric algorithms are never accepted.
	AllowedAlgs []string
	// Now is the time of the check; zero means time.Now().
	Now time.Time
	// MaxAge (default DefaultDPoPMaxAge) and ClockSkew (default
	// DefaultDPoPClockSkew): iat must lie in
	// [now - MaxAge - ClockSkew, now + ClockSkew].
	MaxAge, ClockSkew time.Duration
	// Nonce, when set, must equal the proof's nonce (RFC 9449 §8).
	Nonce string
	// AccessToken, when set, is the token the proof accompanies: ath must
	// be its base64url SHA-256 hash (RFC 9449 §4.3).
	AccessToken string
}

// DPoPProof is what a verified proof says.
type DPoPProof struct {
	// Thumbprint is the RFC 7638 thumbprint (base64url SHA-256) of the
	// proof's public key: the value of a bound token's cnf.jkt.
	Thumbprint string
	JTI        string
	Method     string // htm
	URL        string // htu, as written
	IssuedAt   time.Time
	Alg        string
	Nonce      string // "" when absent
	ATH        string // "" when absent
}

// dpopHeader is the protected header of a proof.
type dpopHeader struct {
	Alg  *string         `json:"alg"`
	Typ  string          `json:"typ"`
	JWK  json.RawMessage `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

// dpopClaims are the claims of a proof.
type dpopClaims struct {
	JTI   *string      `json:"jti"`
	HTM   *string      `json:"htm"`
	HTU   *string      `json:"htu"`
	IAT   *numericDate `json:"iat"`
	Nonce *string      `json:"nonce"`
	ATH   *string      `json:"ath"`
}

// privateJWKMembers are the members of private (or symmetric) keys: a proof
// must carry a public key only.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// VerifyDPoP checks a DPoP proof against the request it came with, in RFC
// 9449 §4.3's order: size and shape, typ, alg (asymmetric, allowed), jwk (a
// public key only, fitting alg), signature by that key, the mandatory
// claims, htm, htu, iat within the window, nonce and ath when the check asks
// for them. It returns the proof's thumbprint and jti; remembering the jti
// (replay) is the caller's job, keyed as it sees fit.
func VerifyDPoP(proof string, c DPoPCheck) (*DPoPProof, error) {
	if proof == "" {
		return nil, fmt.Errorf("%w: empty", ErrDPoPMalformed)
	}
	if len(proof) > MaxDPoPProofBytes {
		return nil, fmt.Errorf("%w: %w: %d bytes, limit %d", ErrDPoPMalformed, ErrTooLarge, len(proof), MaxDPoPProofBytes)
	}
	h64, p64, s64, err := splitCompact(proof)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDPoPMalformed, err)
	}
	hb, err1 := b64.DecodeString(h64)
	pb, err2 := b64.DecodeString(p64)
	sig, err3 := b64.DecodeString(s64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("%w: a part is not base64url", ErrDPoPMalformed)
	}
	var h dpopHeader
	if !isJSONObject(hb) || unmarshalExact(hb, &h) != nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrDPoPMalformed)
	}
	if h.Crit != nil || h.B64 != nil {
		return nil, fmt.Errorf("%w: unsupported crit/b64 header", ErrDPoPMalformed)
	}
	if h.Typ != TypeDPoP {
		return nil, fmt.Errorf("%w: %s", ErrDPoPType, quote(h.Typ))
	}
	if h.Alg == nil {
		return nil, fmt.Errorf("%w: no alg", ErrDPoPAlg)
	}
	alg := *h.Alg
	if !allowSet(c.AllowedAlgs, false)[alg] {
		return nil, fmt.Errorf("%w: %s", ErrDPoPAlg, quote(alg))
	}
	key, err := dpopKey(h.JWK, alg)
	if err != nil {
		return nil, err
	}
	verifier, err := jws.NewVerifier(algs[alg].sa)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDPoPAlg, alg)
	}
	if err := verifier.Verify([]byte(proof[:len(h64)+1+len(p64)]), sig, key.raw); err != nil {
		return nil, ErrDPoPSignature
	}
	var cl dpopClaims
	if !isJSONObject(pb) || unmarshalExact(pb, &cl) != nil {
		return nil, fmt.Errorf("%w: claims are not a JSON object of the expected types", ErrDPoPClaims)
	}
	if cl.JTI == nil || *cl.JTI == "" || cl.HTM == nil || *cl.HTM == "" || cl.HTU == nil || *cl.HTU == "" ||
		cl.IAT == nil || time.Time(*cl.IAT).IsZero() {
		return nil, ErrDPoPClaims
	}
	if len(*cl.JTI) > MaxDPoPJTIBytes {
		return nil, fmt.Errorf("%w: jti above %d bytes", ErrDPoPClaims, MaxDPoPJTIBytes)
	}
	if *cl.HTM != c.Method {
		return nil, fmt.Errorf("%w: %s", ErrDPoPMethod, quote(*cl.HTM))
	}
	if !SameHTU(*cl.HTU, c.URL) {
		return nil, fmt.Errorf("%w: %s", ErrDPoPURL, quote(*cl.HTU))
	}
	now := c.Now
	if now.IsZero() {
		now = time.Now()
	}
	maxAge, skew := c.MaxAge, c.ClockSkew
	if maxAge <= 0 {
		maxAge = DefaultDPoPMaxAge
	}
	if skew <= 0 {
		skew = DefaultDPoPClockSkew
	}
	iat := time.Time(*cl.IAT)
	if iat.After(now.Add(skew)) || iat.Before(now.Add(-maxAge-skew)) {
		return nil, fmt.Errorf("%w: iat %d, now %d", ErrDPoPNotActive, iat.Unix(), now.Unix())
	}
	out := &DPoPProof{Thumbprint: key.thumb, JTI: *cl.JTI, Method: *cl.HTM, URL: *cl.HTU, IssuedAt: iat, Alg: alg}
	if cl.Nonce != nil {
		out.Nonce = *cl.Nonce
	}
	if cl.ATH != nil {
		out.ATH = *cl.ATH
	}
	if c.Nonce != "" && out.Nonce != c.Nonce {
		return nil, ErrDPoPNonce
	}
	if c.AccessToken != "" && out.ATH != AccessTokenHash(c.AccessToken) {
		return nil, ErrDPoPATH
	}
	return out, nil
}

// splitCompact splits a compact JWS into its three non-empty parts (the
// signature may not be empty either: a proof is always signed).
func splitCompact(compact string) (h, p, s string, err error) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", errors.New("expected 3 non-empty dot-separated parts")
	}
	return parts[0], parts[1], parts[2], nil
}

// dpopPublicKey is the proof's key, ready for verification.
type dpopPublicKey struct {
	raw   any
	thumb string
}

// dpopKey parses the jwk header: a public asymmetric key (no private
// member), of the type and curve alg needs, RSA keys of at least 2048 bits.
func dpopKey(raw json.RawMessage, alg string) (*dpopPublicKey, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, ErrDPoPNoKey
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("%w: jwk is not a JSON object", ErrDPoPKey)
	}
	for _, m := range privateJWKMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("%w: member %q", ErrDPoPPrivateKey, m)
		}
	}
	k, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDPoPKey, err)
	}
	e, ok, err := entryFromJWK(k, false)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: unsupported key", ErrDPoPKey)
	}
	if !e.fits(alg) {
		return nil, fmt.Errorf("%w: key type does not fit alg %s", ErrDPoPKey, alg)
	}
	if pk, ok := e.raw.(*rsa.PublicKey); ok && pk.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("%w: RSA key of %d bits, need %d", ErrDPoPKey, pk.N.BitLen(), minRSABits)
	}
	tp, err := e.key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: thumbprint: %w", ErrDPoPKey, err)
	}
	return &dpopPublicKey{raw: e.raw, thumb: b64.EncodeToString(tp)}, nil
}

// SameHTU reports whether two URLs are the same DPoP target (RFC 9449 §4.3):
// both absolute http(s) URLs equal after dropping query and fragment,
// lower-casing scheme and host, dropping a default port and reading an
// empty path as "/". Anything unparsable is different from everything.
func SameHTU(a, b string) bool {
	na, ok1 := normalizeHTU(a)
	nb, ok2 := normalizeHTU(b)
	return ok1 && ok2 && na == nb
}

func normalizeHTU(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" || u.User != nil {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// AccessTokenHash is a DPoP proof's ath for an access token: the base64url
// SHA-256 of its ASCII text (RFC 9449 §4.2).
func AccessTokenHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64.EncodeToString(sum[:])
}

// DPoPOptions adjust a proof made by Signer.DPoPProof.
type DPoPOptions struct {
	// JTI: "" means a fresh random id.
	JTI string
	// IssuedAt: zero means now.
	IssuedAt time.Time
	// Nonce, when set, is the server-provided nonce.
	Nonce string
	// AccessToken, when set, adds its hash as ath.
	AccessToken string
}

// DPoPProof makes a DPoP proof for one request (method, url) signed with
// the signer's key, its public key in the jwk header. It is how callers
// (and tests) prove possession of the key a DPoP-bound token is bound to.
func (s *Signer) DPoPProof(method, u string, opts DPoPOptions) (string, error) {
	if s.pub == nil {
		return "", errors.New("token: DPoP proofs need an asymmetric key")
	}
	pub, err := s.DPoPJWK()
	if err != nil {
		return "", err
	}
	header, err := json.Marshal(map[string]any{"typ": TypeDPoP, "alg": s.alg, "jwk": json.RawMessage(pub)})
	if err != nil {
		return "", fmt.Errorf("token: DPoP header: %w", err)
	}
	jti := opts.JTI
	if jti == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		jti = b64.EncodeToString(b[:])
	}
	iat := opts.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	claims := map[string]any{"jti": jti, "htm": method, "htu": u, "iat": iat.Unix()}
	if opts.Nonce != "" {
		claims["nonce"] = opts.Nonce
	}
	if opts.AccessToken != "" {
		claims["ath"] = AccessTokenHash(opts.AccessToken)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token: DPoP claims: %w", err)
	}
	buf := b64.AppendEncode(nil, header)
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, payload)
	sig, err := s.impl.Sign(buf, s.key)
	if err != nil {
		return "", fmt.Errorf("token: sign DPoP proof: %w", err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// DPoPJWK returns the signer's bare public JWK (the members of the key
// alone: no kid, alg or use), as a DPoP proof's jwk header carries it.
func (s *Signer) DPoPJWK() ([]byte, error) {
	cs, ok := s.key.(crypto.Signer)
	if !ok || s.pub == nil {
		return nil, errors.New("token: no public key")
	}
	bare, err := jwk.FromRaw(cs.Public())
	if err != nil {
		return nil, fmt.Errorf("token: public JWK: %w", err)
	}
	b, err := json.Marshal(bare)
	if err != nil {
		return nil, fmt.Errorf("token: public JWK: %w", err)
	}
	return b, nil
}

// Thumbprint returns the RFC 7638 thumbprint (base64url SHA-256) of the
// signer's public key: the cnf.jkt of tokens bound to it.
func (s *Signer) Thumbprint() (string, error) {
	if s.pub == nil {
		return "", errors.New("token: no public key")
	}
	tp, err := s.pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("token: thumbprint: %w", err)
	}
	return b64.EncodeToString(tp), nil
}
