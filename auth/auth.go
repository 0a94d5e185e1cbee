// Package auth authenticates chainbroker's callers from plain credentials:
// a client certificate verified by the TLS layer (mTLS), a bearer JWT from a
// configured caller issuer, or a static API key (stored as its SHA-256 hash
// and compared in constant time). It knows no transport: the server extracts
// the credentials and asks Authenticate for the caller's name.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// Anonymous is the caller name of unauthenticated calls, when allowed.
const Anonymous = "anonymous"

// Method says how a caller was authenticated.
type Method string

const (
	MethodMTLS      Method = "mtls"
	MethodJWT       Method = "jwt"
	MethodAPIKey    Method = "api_key"
	MethodAnonymous Method = "anonymous"
)

// Caller is an authenticated caller.
type Caller struct {
	Name   string
	Method Method
}

// ErrUnauthenticated: no acceptable credentials. Wrapped with the reason,
// which is safe to return to the caller (it never echoes a credential).
var ErrUnauthenticated = errors.New("unauthenticated")

// Credentials are what a transport found on a call.
type Credentials struct {
	APIKey string // x-api-key
	Bearer string // Authorization: Bearer ...
	// PeerChain is the client certificate chain the TLS layer verified against
	// the configured client CA (leaf first); nil when none was presented.
	PeerChain []*x509.Certificate
}

// APIKey is a configured static key: its caller name and the hex SHA-256 of
// the key.
type APIKey struct {
	Name   string
	SHA256 string
}

// JWTIssuer configures bearer JWT callers (Kubernetes service account tokens,
// SPIFFE JWT-SVIDs, ...).
type JWTIssuer struct {
	Issuer      string
	Audience    string // required `aud` value
	CallerClaim string // claim naming the caller: sub (default), azp or client_id
	Keys        *token.Verifier
	ClockSkew   time.Duration
}

// Config configures an Authenticator. With nothing enabled and
// AllowAnonymous false, every call is refused.
type Config struct {
	APIKeys        []APIKey
	JWT            *JWTIssuer
	MTLS           bool // accept verified client certificates
	AllowAnonymous bool
}

// Authenticator turns credentials into a caller. Safe for concurrent use.
type Authenticator struct {
	keys      []apiKey
	keyNames  map[string]bool // API key caller names, reserved to API keys
	jwt       *JWTIssuer
	mtls      bool
	anonymous bool
}

type apiKey struct {
	name string
	hash [sha256.Size]byte
}

// New checks cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{jwt: cfg.JWT, mtls: cfg.MTLS, anonymous: cfg.AllowAnonymous, keyNames: map[string]bool{}}
	for i, k := range cfg.APIKeys {
		raw, err := hex.DecodeString(k.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("auth: api key %d (%s): sha256 must be 64 hex digits", i, k.Name)
		}
		if k.Name == "" {
			return nil, fmt.Errorf("auth: api key %d: name required", i)
		}
		if k.Name == Anonymous {
			return nil, fmt.Errorf("auth: api key %d: the name %q is reserved for unauthenticated callers", i, Anonymous)
		}
		if a.keyNames[k.Name] {
			return nil, fmt.Errorf("auth: api key %d: name %q is used by another key", i, k.Name)
		}
		a.keyNames[k.Name] = true
		var h [sha256.Size]byte
		copy(h[:], raw)
		a.keys = append(a.keys, apiKey{name: k.Name, hash: h})
	}
	if j := a.jwt; j != nil {
		if j.Issuer == "" || j.Audience == "" || j.Keys == nil {
			return nil, errors.New("auth: jwt callers need issuer, audience and keys")
		}
		switch j.CallerClaim {
		case "":
			j.CallerClaim = "sub"
		case "sub", "azp", "client_id":
		default:
			return nil, fmt.Errorf("auth: caller claim %q: must be sub, azp or client_id", j.CallerClaim)
		}
	}
	return a, nil
}

// HashAPIKey returns the hex SHA-256 of key, the form API keys take in configuration.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Authenticate names the caller. Presented credentials are checked in the
// order API key, bearer JWT, client certificate; a presented credential that
// fails is an error even if another would succeed (no silent fallback).
// With no credentials, the caller is Anonymous if allowed.
//
// All methods share one caller namespace (the policy grants by name). Names
// taken from a bearer JWT or a client certificate are open-ended, chosen by
// the issuer or the CA, while API key names and Anonymous are local labels:
// a JWT or certificate that names a configured API key's caller, or
// Anonymous, is refused, so it can never take over that caller's policy.
func (a *Authenticator) Authenticate(ctx context.Context, c Credentials) (Caller, error) {
	switch {
	case c.APIKey != "":
		return a.apiKey(c.APIKey)
	case c.Bearer != "":
		return a.reserved(a.bearer(ctx, c.Bearer))
	case len(c.PeerChain) > 0 && a.mtls:
		return a.reserved(certCaller(c.PeerChain[0]))
	case a.anonymous:
		return Caller{Name: Anonymous, Method: MethodAnonymous}, nil
	}
	return Caller{}, fmt.Errorf("%w: credentials required (client certificate, bearer token or API key)", ErrUnauthenticated)
}

// ErrReservedName: a bearer JWT or client certificate names a caller that
// belongs to an API key (or Anonymous). Wraps ErrUnauthenticated.
var ErrReservedName = fmt.Errorf("%w: caller name reserved", ErrUnauthenticated)

// reserved refuses a JWT- or certificate-derived caller whose name is an API
// key's caller name or Anonymous.
func (a *Authenticator) reserved(c Caller, err error) (Caller, error) {
	if err != nil {
		return c, err
	}
	switch {
	case c.Name == Anonymous:
		return Caller{}, fmt.Errorf("%w: the %s caller name is %q, which is reserved for unauthenticated callers", ErrReservedName, c.Method, Anonymous)
	case a.keyNames[c.Name]:
		return Caller{}, fmt.Errorf("%w: the %s caller name is an API key's caller name; JWT and mTLS callers cannot take it", ErrReservedName, c.Method)
	}
	return c, nil
}

func (a *Authenticator) apiKey(key string) (Caller, error) {
	if len(a.keys) == 0 {
		return Caller{}, fmt.Errorf("%w: API keys are not accepted", ErrUnauthenticated)
	}
	h := sha256.Sum256([]byte(key))
	name := ""
	// Compare against every key, in constant time each, so that timing tells
	// neither which key matched nor how much of it.
	for _, k := range a.keys {
		if subtle.ConstantTimeCompare(h[:], k.hash[:]) == 1 {
			name = k.name
		}
	}
	if name == "" {
		return Caller{}, fmt.Errorf("%w: invalid API key", ErrUnauthenticated)
	}
	return Caller{Name: name, Method: MethodAPIKey}, nil
}

func (a *Authenticator) bearer(ctx context.Context, raw string) (Caller, error) {
	j := a.jwt
	if j == nil {
		return Caller{}, fmt.Errorf("%w: bearer tokens are not accepted", ErrUnauthenticated)
	}
	tok, err := j.Keys.Verify(ctx, raw)
	if err != nil {
		if errors.Is(err, token.ErrKeysUnavailable) {
			return Caller{}, fmt.Errorf("%w: caller issuer keys unavailable", ErrUnauthenticated)
		}
		return Caller{}, fmt.Errorf("%w: bearer token does not verify", ErrUnauthenticated)
	}
	c, now := &tok.Claims, time.Now()
	switch {
	case c.Issuer != j.Issuer:
		return Caller{}, fmt.Errorf("%w: bearer token issuer is not trusted", ErrUnauthenticated)
	case !containsStr(c.Audience, j.Audience):
		return Caller{}, fmt.Errorf("%w: bearer token audience is not %s", ErrUnauthenticated, j.Audience)
	case c.Expiry.IsZero() || !now.Before(c.Expiry.Add(j.ClockSkew)):
		return Caller{}, fmt.Errorf("%w: bearer token expired", ErrUnauthenticated)
	case !c.NotBefore.IsZero() && c.NotBefore.After(now.Add(j.ClockSkew)):
		return Caller{}, fmt.Errorf("%w: bearer token not yet valid", ErrUnauthenticated)
	}
	name := ""
	switch j.CallerClaim {
	case "sub":
		name = c.Subject
	case "azp":
		name = c.AZP
	case "client_id":
		name = c.ClientID
	}
	if name == "" {
		return Caller{}, fmt.Errorf("%w: bearer token has no %s claim", ErrUnauthenticated, j.CallerClaim)
	}
	return Caller{Name: name, Method: MethodJWT}, nil
}

// certCaller names a verified client certificate: its first URI SAN (e.g. a
// SPIFFE ID), else its first DNS SAN.
func certCaller(leaf *x509.Certificate) (Caller, error) {
	if len(leaf.URIs) > 0 {
		return Caller{Name: leaf.URIs[0].String(), Method: MethodMTLS}, nil
	}
	if len(leaf.DNSNames) > 0 {
		return Caller{Name: leaf.DNSNames[0], Method: MethodMTLS}, nil
	}
	return Caller{}, fmt.Errorf("%w: client certificate has neither a URI nor a DNS SAN", ErrUnauthenticated)
}

// BearerFromHeader extracts the token of an "Authorization: Bearer" value.
func BearerFromHeader(v string) string {
	const p = "bearer "
	if len(v) > len(p) && strings.EqualFold(v[:len(p)], p) {
		return strings.TrimSpace(v[len(p):])
	}
	return ""
}

func containsStr(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
