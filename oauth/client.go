package oauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/internal/deadline"
	"github.com/chainbroker/chainbroker/internal/jsonobj"
	"github.com/chainbroker/chainbroker/token"
)

// Defaults for ClientOptions.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 64 << 10
	DefaultUserAgent        = "chainbroker"
)

// ErrConfig reports a request the Client refuses to send: missing endpoint,
// grant parameters, client id, secret or signer for the authentication
// method. It is returned before any network call.
var ErrConfig = errors.New("oauth: invalid request or client configuration")

// Client posts to token endpoints. Safe for concurrent use.
//
// Redirects are never followed (a 3xx answer is ErrBadResponse): a token
// request carries credentials and must reach the configured endpoint only.
type Client struct {
	http      *http.Client
	timeout   time.Duration
	maxBytes  int64
	userAgent string
	now       func() time.Time
	endpoints endpointMemo
}

// ClientOptions configure a Client.
type ClientOptions struct {
	HTTPClient       *http.Client  // nil: keep-alive pooled client
	Timeout          time.Duration // per call upper bound, on top of ctx; default 10s
	MaxResponseBytes int64         // default 64 KiB
	UserAgent        string
	// WrapTransport, when set, wraps the HTTP transport (e.g. with
	// OpenTelemetry instrumentation that propagates traceparent).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// NewClient returns a Client. A given HTTPClient is copied and its copy set
// not to follow redirects; nil means a dedicated pooled transport (64 idle
// connections per host, TLS 1.2+ with system roots, proxy from the
// standard environment variables).
func NewClient(opts ClientOptions) *Client {
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	} else {
		hc = http.Client{Transport: newTransport()}
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if opts.WrapTransport != nil {
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		hc.Transport = opts.WrapTransport(base)
	}
	c := &Client{
		http:      &hc,
		timeout:   opts.Timeout,
		maxBytes:  opts.MaxResponseBytes,
		userAgent: opts.UserAgent,
		now:       time.Now,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultMaxResponseBytes
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	return c
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

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
	// DPoPNonce is the server's DPoP-Nonce header (RFC 9449 §8.2: a nonce
	// for the next proof), "" when absent or malformed.
	DPoPNonce string
}

// IsBearer reports whether TokenType is "Bearer", compared
// case-insensitively as RFC 6749 §5.1 requires (TokenType keeps the
// server's spelling).
func (r *TokenResponse) IsBearer() bool { return strings.EqualFold(r.TokenType, "Bearer") }

// Request is one token request.
type Request struct {
	Endpoint string            // token endpoint URL, from configuration only
	Creds    ClientCredentials // how to authenticate
	Form     url.Values        // grant parameters (grant_type, ...), without client auth
	// Header holds extra request headers, such as the DPoP proof (RFC
	// 9449, header DPoP); the headers the client sets itself
	// (Authorization, Content-Type, Accept, User-Agent, Host,
	// Content-Length) are refused with ErrConfig.
	Header http.Header
}

// reservedHeaders are set by Token itself.
var reservedHeaders = []string{"Authorization", "Content-Type", "Accept", "User-Agent", "Host", "Content-Length"}

// MaxDPoPNonceBytes bounds a DPoP-Nonce header the client keeps.
const MaxDPoPNonceBytes = 512

// Token performs the request: POST application/x-www-form-urlencoded with
// client authentication added per Creds.Method (basic: RFC 6749 §2.3.1
// form-urlencoded id and secret; post: client_id+client_secret in the body;
// private_key_jwt: client_assertion_type + a fresh client_assertion with iss=sub=client_id,
// aud, jti, iat, exp=iat+60s; none: client_id in the body). It honours ctx's
// deadline, bounds the response size, and returns *Error for an OAuth error
// response, or an error wrapping ErrUnavailable / ErrBadResponse.
//
// Classification: 200 with a JSON object holding non-empty access_token and
// token_type is success. An answer with a well-formed OAuth error body (a
// JSON object with a non-empty "error" member) is the server's deliberate
// answer and is *Error whatever the HTTP status, 500 included (some servers
// answer a refusal that depends on the user, such as a missing permission,
// with 500 and error server_error): not an outage, not worth retrying.
// Outages wrap ErrUnavailable (*UnavailableError, carrying the OAuth error
// if there was one): 429 and 503 whatever the body (their status says "come
// back later"), any other 5xx without an OAuth error body, and the error
// code temporarily_unavailable at any status.
// Everything else, redirects included, wraps ErrBadResponse. Transport
// failures and deadlines wrap ErrUnavailable and keep the cause reachable
// (errors.Is(err, context.DeadlineExceeded)); when the request was not sent
// at all (connection refused, DNS failure: no header was written) they
// also wrap ErrNotSent. Invalid requests wrap ErrConfig and send nothing.
// Errors never contain form values, credentials or response bodies (an
// *Error holds the server's error code and description, which are meant
// for the client).
func (c *Client) Token(ctx context.Context, req Request) (*TokenResponse, error) {
	ep, err := c.endpoints.get(req.Endpoint)
	if err != nil {
		return nil, err
	}
	if err := checkGrant(req.Form); err != nil {
		return nil, err
	}
	// The fixed headers' values share one allocation; each slice is capped,
	// so that an append by anyone else copies it.
	fixed := []string{"application/x-www-form-urlencoded", "application/json", c.userAgent}
	header := make(http.Header, len(req.Header)+4)
	header["Content-Type"] = fixed[0:1:1]
	header["Accept"] = fixed[1:2:2]
	header["User-Agent"] = fixed[2:3:3]
	for k, v := range req.Header {
		k = http.CanonicalHeaderKey(k)
		for _, r := range reservedHeaders {
			if k == r {
				return nil, fmt.Errorf("%w: header %s is set by the client", ErrConfig, k)
			}
		}
		header[k] = append([]string(nil), v...)
	}
	// Client authentication adds parameters (extra, which take precedence
	// over the caller's) or the Authorization header; req.Form is not
	// modified.
	var extra url.Values
	if req.Creds.Method != AuthClientSecretBasic {
		extra = make(url.Values, 3)
	}
	if err := c.authenticate(req.Creds, req.Endpoint, extra, header); err != nil {
		return nil, err
	}
	body := encodeForm(req.Form, extra)

	// The caller's deadline is usually the nearer one (the broker bounds
	// each call to a domain): a timer of our own would change nothing.
	ctx, cancel := deadline.Within(ctx, c.timeout)
	defer cancel()
	// Built as http.NewRequestWithContext would build it, with the URL
	// checkEndpoint parsed (a copy of it: the request is the transport's
	// until it answers) and the trace that tells whether the request was
	// sent (c.do) in its context from the start.
	u, hu := ep.u, new(url.URL)
	*hu = *ep.request
	tctx, sent := withSendTrace(ctx)
	hreq := (&http.Request{
		Method:        http.MethodPost,
		URL:           hu,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Host:          hu.Host,
	}).WithContext(tctx)

	status, rheader, rbody, err := c.do(hreq, sent)
	if err != nil {
		return nil, err
	}
	var resp *TokenResponse
	if status == http.StatusOK {
		// The endpoint is rendered for an error only.
		resp, err = parseTokenOK(rbody, nil)
	}
	if resp == nil {
		resp, err = parseTokenResponse(status, rbody, redact(u))
	}
	nonce := dpopNonce(rheader)
	if err == nil {
		resp.DPoPNonce = nonce
		return resp, nil
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		ue.RetryAfter = parseRetryAfter(rheader.Get("Retry-After"), c.now())
	}
	var oe *Error
	if errors.As(err, &oe) {
		oe.DPoPNonce = nonce
	}
	return nil, err
}

// dpopNonce returns the DPoP-Nonce header when it is one bounded token of
// printable ASCII (RFC 9449 §8.1: NQCHAR), else "".
func dpopNonce(h http.Header) string {
	vals := h["Dpop-Nonce"] // h.Values("DPoP-Nonce") without canonicalising the name each time
	if len(vals) != 1 || vals[0] == "" || len(vals[0]) > MaxDPoPNonceBytes {
		return ""
	}
	for i := 0; i < len(vals[0]); i++ {
		if c := vals[0][i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return ""
		}
	}
	return vals[0]
}

// sendTrace records whether a request's headers were written. (A body that
// records its first read would tell as much without a trace, but net/http
// flushes the headers of a request whose body it does not know to be in
// memory before writing the body: two packets per token request instead of
// one, which cost more than the trace; measured at c=1.)
type sendTrace struct {
	wrote atomic.Bool
	trace httptrace.ClientTrace
}

// withSendTrace returns ctx with a trace that records whether the headers
// of the request made with it were written (for do).
func withSendTrace(ctx context.Context) (context.Context, *sendTrace) {
	t := new(sendTrace)
	t.trace.WroteHeaders = func() { t.wrote.Store(true) }
	return httptrace.WithClientTrace(ctx, &t.trace), t
}

// do sends the request, whose context carries sent's trace, and reads a
// bounded body. A transport failure before any request header was written
// also wraps ErrNotSent.
func (c *Client) do(req *http.Request, sent *sendTrace) (int, http.Header, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if !sent.wrote.Load() {
			return 0, nil, nil, fmt.Errorf("%w (%w): %w", ErrUnavailable, ErrNotSent, err)
		}
		return 0, nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := readBounded(resp.Body, resp.ContentLength, c.maxBytes)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: %s %s: read response: %w", ErrUnavailable, req.Method, redact(req.URL), err)
	}
	if int64(len(body)) > c.maxBytes {
		return 0, nil, nil, fmt.Errorf("%w: %s %s: response exceeds %d bytes", ErrBadResponse, req.Method, redact(req.URL), c.maxBytes)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// readBounded reads r to its end, or to max+1 bytes (more than max: the
// caller refuses it), as io.ReadAll(io.LimitReader(r, max+1)) would, into
// one buffer sized from the declared length (size, -1 when unknown) when
// there is one.
func readBounded(r io.Reader, size, max int64) ([]byte, error) {
	limit := max + 1
	n := int64(512)
	if size >= 0 && size < limit { // a larger declared length is not trusted for a buffer
		n = size + 1 // the last read may then see the end along with the data
	}
	buf := make([]byte, 0, min(n, limit))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(cap(buf)), limit-int64(len(buf)))))
		}
		end := int(min(int64(cap(buf)), limit))
		m, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// UnavailableError is an answer that wraps ErrUnavailable (HTTP 429 or 503,
// another 5xx without an OAuth error body, or error temporarily_unavailable);
// RetryAfter is the delay the server asked for (Retry-After), or 0. OAuth is
// the server's OAuth error when it sent one (errors.As does not find it: an
// UnavailableError is not a refusal).
type UnavailableError struct {
	StatusCode int
	RetryAfter time.Duration
	OAuth      *Error
	msg        string
}

func (e *UnavailableError) Error() string        { return e.msg }
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// RetryAfter returns the delay an unavailable answer asked for, if any.
func RetryAfter(err error) time.Duration {
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return ue.RetryAfter
	}
	return 0
}

// parseRetryAfter reads delay-seconds or an HTTP-date (RFC 9110 §10.2.3);
// anything else, or a date in the past, is 0. It is capped at one hour.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(max(secs, 0), 3600)) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = min(max(t.Sub(now), 0), time.Hour)
	}
	return d
}

// tokenJSON is RFC 6749 §5.1 / RFC 8693 §2.2.1. expires_in is decoded by
// hand: some servers send it as a string.
type tokenJSON struct {
	AccessToken     *string         `json:"access_token"`
	TokenType       *string         `json:"token_type"`
	IssuedTokenType string          `json:"issued_token_type"`
	ExpiresIn       json.RawMessage `json:"expires_in"`
	Scope           string          `json:"scope"`
	RefreshToken    string          `json:"refresh_token"`
}

// errorJSON is RFC 6749 §5.2.
type errorJSON struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorURI         string `json:"error_uri"`
}

func parseTokenResponse(status int, body []byte, endpoint string) (*TokenResponse, error) {
	switch {
	case status == http.StatusOK:
		return parseTokenOK(body, func() string { return endpoint })
	case status >= 400:
		oe := parseOAuthError(status, body)
		switch {
		case oe != nil && !outageStatus(status) && oe.Code != ErrorTemporarilyUnavailable:
			return nil, oe // a refusal, even with a 5xx status
		case oe != nil:
			return nil, &UnavailableError{StatusCode: status, OAuth: oe,
				msg: fmt.Sprintf("%s: %s: HTTP %d, error %q", ErrUnavailable, endpoint, status, oe.Code)}
		case status == http.StatusTooManyRequests || status >= 500:
			return nil, &UnavailableError{StatusCode: status, msg: fmt.Sprintf("%s: %s: HTTP %d", ErrUnavailable, endpoint, status)}
		}
		return nil, fmt.Errorf("%w: %s: HTTP %d without an OAuth error body", ErrBadResponse, endpoint, status)
	case status >= 300:
		return nil, fmt.Errorf("%w: %s: HTTP %d redirect not followed", ErrBadResponse, endpoint, status)
	default:
		return nil, fmt.Errorf("%w: %s: unexpected HTTP %d", ErrBadResponse, endpoint, status)
	}
}

// parseTokenOK parses the body of a 200 answer. endpoint renders the
// endpoint for an error; nil: the error is errBadTokenBody (the caller asks
// parseTokenResponse for the full error).
func parseTokenOK(body []byte, endpoint func() string) (*TokenResponse, error) {
	fail := func(format string, args ...any) error {
		if endpoint == nil {
			return errBadTokenBody
		}
		return fmt.Errorf("%w: %s: "+format, append([]any{ErrBadResponse, endpoint()}, args...)...)
	}
	if !isJSONObject(body) {
		return nil, fail("HTTP 200 body is not a JSON object")
	}
	var tf tokenFields
	if !decodeTokenFast(body, &tf) {
		var tj tokenJSON
		if err := json.Unmarshal(body, &tj); err != nil {
			return nil, fail("token response: %s", jsonErrorKind(err))
		}
		tf = tj.fields()
	}
	if !tf.has[memAccessToken] || tf.str[memAccessToken] == "" {
		return nil, fail("token response has no access_token")
	}
	if !tf.has[memTokenType] || tf.str[memTokenType] == "" {
		return nil, fail("token response has no token_type")
	}
	exp, err := parseExpiresIn(tf.expiresIn)
	if err != nil {
		return nil, fail("%w", err)
	}
	return &TokenResponse{
		AccessToken:     tf.str[memAccessToken],
		IssuedTokenType: tf.str[memIssuedTokenType],
		TokenType:       tf.str[memTokenType],
		ExpiresIn:       exp,
		Scope:           tf.str[memScope],
		RefreshToken:    tf.str[memRefreshToken],
	}, nil
}

// errBadTokenBody is parseTokenOK's error without an endpoint to name.
var errBadTokenBody = errors.New("oauth: invalid token response body")

// outageStatus reports whether an HTTP status says "come back later"
// whatever the body: 429 Too Many Requests and 503 Service Unavailable.
func outageStatus(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// parseOAuthError returns the RFC 6749 §5.2 error in body, or nil.
func parseOAuthError(status int, body []byte) *Error {
	if !isJSONObject(body) {
		return nil
	}
	var ej errorJSON
	if err := json.Unmarshal(body, &ej); err != nil || ej.Error == "" {
		return nil
	}
	return &Error{StatusCode: status, Code: ej.Error, Description: ej.ErrorDescription, URI: ej.ErrorURI}
}

// parseExpiresIn accepts a non-negative integer as a JSON number or a
// numeric string; absent or null gives 0.
func parseExpiresIn(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	if n, ok := smallUint(raw); ok { // the usual answer, without a string
		return n, nil
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("expires_in is not a number")
		}
		s = strings.TrimSpace(s)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	// Tolerate a fractional or exponent form of a whole number (3600.0, 3.6e3).
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1<<53 && f == float64(int64(f)) {
		return int64(f), nil
	}
	return 0, errors.New("expires_in is not a non-negative integer")
}

// smallUint parses b when it is 1 to 18 ASCII digits, as strconv.ParseInt
// would.
func smallUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// jsonErrorKind describes a decoding error without quoting the input.
func jsonErrorKind(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("member %q has the wrong JSON type", te.Field)
	}
	return "invalid JSON"
}

// isJSONObject reports whether b, once trimmed by bytes.TrimSpace, is a
// valid JSON object. A flat one (a token response) is checked in one pass
// (jsonobj.Flat); anything else goes to json.Valid.
func isJSONObject(b []byte) bool {
	if jsonobj.Flat(b) {
		return true
	}
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// endpointMemo keeps the token endpoints a Client posts to parsed and
// checked: they come from configuration, so there are few of them, and
// parsing one again on every call is work for nothing. Past
// maxMemoEndpoints distinct endpoints (an approximate bound: concurrent
// first calls may each count) each call parses its own.
type endpointMemo struct {
	m sync.Map // endpoint string -> *parsedEndpoint
	n atomic.Int32
}

const maxMemoEndpoints = 256

type parsedEndpoint struct {
	u       *url.URL // as configured: what errors name (redacted)
	request *url.URL // as a request carries it: an empty port dropped, as http.NewRequest does
}

func (e *endpointMemo) get(endpoint string) (*parsedEndpoint, error) {
	if p, ok := e.m.Load(endpoint); ok {
		return p.(*parsedEndpoint), nil
	}
	u, err := checkEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	p := &parsedEndpoint{u: u, request: u}
	if strings.HasSuffix(u.Host, ":") {
		cu := *u
		cu.Host = strings.TrimSuffix(cu.Host, ":")
		p.request = &cu
	}
	if e.n.Add(1) <= maxMemoEndpoints {
		e.m.Store(endpoint, p)
	}
	return p, nil
}

func checkEndpoint(endpoint string) (*url.URL, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("%w: endpoint must be an absolute http(s) URL", ErrConfig)
	}
	return u, nil
}

// checkGrant catches requests that no server would accept.
func checkGrant(form url.Values) error {
	gt := form.Get("grant_type")
	switch {
	case gt == "":
		return fmt.Errorf("%w: form has no grant_type", ErrConfig)
	case gt == GrantTypeTokenExchange && (form.Get("subject_token") == "" || form.Get("subject_token_type") == ""):
		return fmt.Errorf("%w: token exchange needs subject_token and subject_token_type", ErrConfig)
	case gt == GrantTypeJWTBearer && form.Get("assertion") == "":
		return fmt.Errorf("%w: jwt-bearer grant needs an assertion", ErrConfig)
	}
	return nil
}

// redact renders a URL without user info or query.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}
