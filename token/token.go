// Package token keeps JOSE (lestrrat-go/jwx) behind a small surface: parse,
// verify against a JWKS or static keys, and sign. Nothing outside this package
// imports jwx. Claims validation policy (issuer, audience, lifetime) belongs to
// the callers; this package only reports what the token says and whether its
// signature holds.
package token

import (
	"encoding/json"
	"errors"
	"time"
)

// Algorithms accepted by default for verification: asymmetric only, never
// "none" nor HS* (HS* only with an explicitly configured shared secret).
var DefaultAllowedAlgs = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

// Token types (JOSE `typ`).
const (
	TypeJWT   = "JWT"
	TypeIDJAG = "oauth-id-jag+jwt"
)

// Errors returned by Parse and Verify; test with errors.Is.
var (
	ErrMalformed       = errors.New("token: not a well-formed compact JWS with JSON claims")
	ErrTooLarge        = errors.New("token: too large")
	ErrAlgNotAllowed   = errors.New("token: signing algorithm not allowed")
	ErrKeyUnknown      = errors.New("token: no verification key matches the token's kid")
	ErrSignature       = errors.New("token: signature does not verify")
	ErrKeysUnavailable = errors.New("token: verification keys could not be fetched")
)

// MaxTokenBytes bounds every token this package will parse (16 KiB).
const MaxTokenBytes = 16 << 10

// Header is the protected JOSE header of a JWS.
type Header struct {
	Alg string
	Kid string
	Typ string
}

// Claims are the registered claims and the few others chainbroker reads.
// Time fields are zero when the claim is absent; Has* record presence.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string // always a slice: a single-string "aud" gives one element
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	JTI       string
	ClientID  string // "client_id"
	AZP       string // "azp"
	Scope     string // "scope"
}

// Token is a parsed JWS: header and claims. Verified is true only when it
// came from Verifier.Verify.
type Token struct {
	Header   Header
	Claims   Claims
	Verified bool

	members map[string]json.RawMessage // every claim, by exact name
}

// Claim returns the raw JSON of the claim name (case-sensitive), for claims
// beyond Claims (email, preferred_username, ...).
func (t *Token) Claim(name string) (json.RawMessage, bool) {
	v, ok := t.members[name]
	return v, ok
}

// StringClaim returns the claim name when it is a JSON string.
func (t *Token) StringClaim(name string) (string, bool) {
	raw, ok := t.members[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
