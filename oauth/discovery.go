package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Metadata is the part of RFC 8414 / OIDC discovery chainbroker uses.
type Metadata struct {
	Issuer        string `json:"issuer"`
	TokenEndpoint string `json:"token_endpoint"`
	JWKSURI       string `json:"jwks_uri"`
}

// errStatus is a non-200 discovery answer: it allows the fallback.
type errStatus struct{ err error }

func (e *errStatus) Error() string { return e.err.Error() }
func (e *errStatus) Unwrap() error { return e.err }

// Discover fetches issuer + "/.well-known/openid-configuration" (falling back
// to RFC 8414's "/.well-known/oauth-authorization-server" inserted after the
// host) and checks that the document's issuer equals issuer exactly.
//
// The fallback is tried only when the first URL answers with a non-200
// status; a transport failure wraps ErrUnavailable at once. The document is
// bounded by ClientOptions.MaxResponseBytes and must carry a token_endpoint;
// an issuer mismatch or an invalid document wraps ErrBadResponse. Redirects
// are not followed: a 3xx answer wraps ErrBadResponse and says so (then the
// fallback URL is tried, on the issuer's host).
func (c *Client) Discover(ctx context.Context, issuer string) (*Metadata, error) {
	u, err := checkEndpoint(issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer must be an absolute http(s) URL", ErrConfig)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%w: issuer must not have user info, query or fragment", ErrConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	md, err := c.fetchMetadata(ctx, oidc, issuer)
	var st *errStatus
	if err == nil || !errors.As(err, &st) {
		return md, err
	}
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.EscapedPath(), "/")
	md, err2 := c.fetchMetadata(ctx, rfc8414, issuer)
	if err2 != nil {
		return nil, fmt.Errorf("%w; fallback: %w", err, err2)
	}
	return md, nil
}

func (c *Client) fetchMetadata(ctx context.Context, docURL, issuer string) (*Metadata, error) {
	ctx, sent := withSendTrace(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	status, _, body, err := c.do(req, sent)
	if err != nil {
		return nil, err
	}
	switch {
	case status == http.StatusOK:
	case status >= 300 && status < 400:
		return nil, &errStatus{fmt.Errorf("%w: GET %s: HTTP %d redirect not followed: discovery documents must be served at the issuer's well-known URL", ErrBadResponse, docURL, status)}
	case status == http.StatusTooManyRequests || status >= 500:
		return nil, &errStatus{fmt.Errorf("%w: GET %s: HTTP %d", ErrUnavailable, docURL, status)}
	default:
		return nil, &errStatus{fmt.Errorf("%w: GET %s: HTTP %d", ErrBadResponse, docURL, status)}
	}
	if !isJSONObject(body) {
		return nil, fmt.Errorf("%w: GET %s: not a JSON object", ErrBadResponse, docURL)
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("%w: GET %s: %s", ErrBadResponse, docURL, jsonErrorKind(err))
	}
	if md.Issuer != issuer {
		return nil, fmt.Errorf("%w: GET %s: document issuer %q does not equal the configured issuer %q", ErrBadResponse, docURL, md.Issuer, issuer)
	}
	if md.TokenEndpoint == "" {
		return nil, fmt.Errorf("%w: GET %s: no token_endpoint", ErrBadResponse, docURL)
	}
	return &md, nil
}
