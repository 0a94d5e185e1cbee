// Package oauth is a client for OAuth 2.0 token endpoints: form POSTs with
// client authentication (RFC 6749 §2.3, RFC 7523 §2.2), and parsing of
// RFC 6749 §5.1/§5.2 and RFC 8693 §2.2 responses. It knows the two grants
// chainbroker uses: token exchange (RFC 8693) and JWT bearer (RFC 7523).
package oauth

import (
	"errors"
	"fmt"
)

// Grant and token type URIs.
const (
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantTypeJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"

	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDJAG       = "urn:ietf:params:oauth:token-type:id-jag"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeRefresh     = "urn:ietf:params:oauth:token-type:refresh_token"
)

// AuthMethod is a token endpoint client authentication method.
type AuthMethod string

const (
	AuthClientSecretBasic AuthMethod = "client_secret_basic"
	AuthClientSecretPost  AuthMethod = "client_secret_post"
	AuthPrivateKeyJWT     AuthMethod = "private_key_jwt"
	AuthNone              AuthMethod = "none"
)

// ErrorTemporarilyUnavailable is the OAuth error code (RFC 6749 §4.1.2.1)
// that makes an error answer an outage rather than a refusal.
const ErrorTemporarilyUnavailable = "temporarily_unavailable"

// Error is an OAuth error response (RFC 6749 §5.2) from an authorization server.
type Error struct {
	StatusCode  int    // HTTP status: 4xx, or 5xx from servers that answer refusals so
	Code        string // "error", e.g. invalid_grant
	Description string // "error_description", may be empty
	URI         string // "error_uri", may be empty
	// DPoPNonce is the server's DPoP-Nonce header, with the error
	// use_dpop_nonce (RFC 9449 §8): the nonce the next proof must carry.
	DPoPNonce string
}

// ErrorUseDPoPNonce is the OAuth error code of a DPoP nonce challenge
// (RFC 9449 §8).
const ErrorUseDPoPNonce = "use_dpop_nonce"

func (e *Error) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("oauth: %s (HTTP %d)", e.Code, e.StatusCode)
	}
	return fmt.Sprintf("oauth: %s: %s (HTTP %d)", e.Code, e.Description, e.StatusCode)
}

// Transport-level failures, wrapped with detail; test with errors.Is.
var (
	// ErrUnavailable: the endpoint could not be reached, timed out, or
	// answered 429, 503, another 5xx without an OAuth error body, or the
	// OAuth error temporarily_unavailable. Retrying later may help.
	ErrUnavailable = errors.New("oauth: token endpoint unavailable")
	// ErrNotSent accompanies ErrUnavailable when the request never left the
	// client (connection refused, DNS failure, TLS handshake failure: no
	// request header was written): the server cannot have seen it, so even
	// a request that must not be presented twice may be sent again.
	ErrNotSent = errors.New("oauth: request not sent")
	// ErrBadResponse: the endpoint answered something that is not a valid
	// token or error response (bad JSON, missing access_token/token_type,
	// wrong content, over the size bound).
	ErrBadResponse = errors.New("oauth: invalid token endpoint response")
)
