package oauth

// API to be implemented (stub bodies: the oauth helper replaces this file).

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// ClientCredentials authenticate the broker to one token endpoint.
type ClientCredentials struct {
	ClientID string
	Method   AuthMethod
	Secret   string        // client_secret_basic, client_secret_post
	Signer   *token.Signer // private_key_jwt: signs the client assertion
	// AssertionAudience is the `aud` of private_key_jwt client assertions;
	// "" means the token endpoint URL.
	AssertionAudience string
}

// TokenResponse is a successful token endpoint answer.
type TokenResponse struct {
	AccessToken     string
	IssuedTokenType string // RFC 8693; "" when absent
	TokenType       string
	ExpiresIn       int64 // seconds; 0 when absent
	Scope           string
	RefreshToken    string
}

// Client posts to token endpoints. Safe for concurrent use.
type Client struct{}

// ClientOptions configure a Client.
type ClientOptions struct {
	HTTPClient       *http.Client  // nil: keep-alive pooled client
	Timeout          time.Duration // per call upper bound, on top of ctx; default 10s
	MaxResponseBytes int64         // default 64 KiB
	UserAgent        string
}

// NewClient returns a Client.
func NewClient(opts ClientOptions) *Client { panic("unimplemented") }

// Request is one token request.
type Request struct {
	Endpoint string            // token endpoint URL, from configuration only
	Creds    ClientCredentials // how to authenticate
	Form     url.Values        // grant parameters (grant_type, ...), without client auth
}

// Token performs the request: POST application/x-www-form-urlencoded with
// client authentication added per Creds.Method (basic: RFC 6749 §2.3.1
// form-urlencoded id and secret; post: client_id+client_secret in the body;
// private_key_jwt: client_assertion_type + a fresh client_assertion with iss=sub=client_id,
// aud, jti, iat, exp=iat+60s; none: client_id in the body). It honours ctx's
// deadline, bounds the response size, and returns *Error for an OAuth error
// response, or an error wrapping ErrUnavailable / ErrBadResponse.
func (c *Client) Token(ctx context.Context, req Request) (*TokenResponse, error) {
	panic("unimplemented")
}

// TokenExchange is an RFC 8693 request.
type TokenExchange struct {
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	ActorTokenType     string
	RequestedTokenType string
	Audience           []string
	Resource           []string
	Scope              []string
}

// Form renders the exchange as token request parameters (grant_type included).
func (t TokenExchange) Form() url.Values { panic("unimplemented") }

// JWTBearer is an RFC 7523 §2.1 authorization grant.
type JWTBearer struct {
	Assertion string
	Scope     []string
}

// Form renders the grant as token request parameters (grant_type included).
func (j JWTBearer) Form() url.Values { panic("unimplemented") }

// Metadata is the part of RFC 8414 / OIDC discovery chainbroker uses.
type Metadata struct {
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
	JWKSURI       string `json:"jwks_uri"`
}

// Discover fetches issuer + "/.well-known/openid-configuration" (falling back
// to RFC 8414's "/.well-known/oauth-authorization-server" inserted after the
// host) and checks that the document's issuer equals issuer exactly.
func (c *Client) Discover(ctx context.Context, issuer string) (*Metadata, error) {
	panic("unimplemented")
}
