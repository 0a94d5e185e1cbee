package oauth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// seen is what the loopback token endpoint received.
type seen struct {
	Method string
	Header http.Header
	Form   url.Values
	Path   string
}

// tokenServer is a real loopback token endpoint: it records each request
// and answers with respond.
type tokenServer struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	hits    atomic.Int64
	respond func(w http.ResponseWriter, r *http.Request)
}

func newTokenServer(t *testing.T, respond func(w http.ResponseWriter, r *http.Request), configure ...func(*http.Server)) *tokenServer {
	t.Helper()
	ts := &tokenServer{respond: respond}
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.hits.Add(1)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.reqs = append(ts.reqs, seen{Method: r.Method, Header: r.Header.Clone(), Form: r.PostForm, Path: r.URL.Path})
		ts.mu.Unlock()
		if ts.respond != nil {
			ts.respond(w, r)
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": "AT", "token_type": "Bearer", "expires_in": 300})
	}))
	for _, f := range configure {
		f(ts.Config)
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) last(t *testing.T) seen {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.reqs) == 0 {
		t.Fatal("server received no request")
	}
	return ts.reqs[len(ts.reqs)-1]
}

func (ts *tokenServer) endpoint() string { return ts.URL + "/realms/a/protocol/openid-connect/token" }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeRaw(status int, contentType, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func bearerForm() url.Values {
	return oauth.JWTBearer{Assertion: "ASSERTION", Scope: []string{"read"}}.Form()
}

func TestClientAuthentication(t *testing.T) {
	signer, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := token.PublicJWKS(signer)
	verifier, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		t.Fatal(err)
	}
	const id, secret = "client:1", "s:e+c r%t"
	// RFC 6749 §2.3.1 / Appendix B, worked by hand: ':' -> %3A, '+' -> %2B,
	// ' ' -> '+', '%' -> %25.
	const basicPair = "client%3A1:s%3Ae%2Bc+r%25t"

	checkAssertion := func(t *testing.T, s seen, wantAud string) string {
		t.Helper()
		if got := s.Form.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Errorf("client_assertion_type = %q", got)
		}
		tok, err := verifier.Verify(context.Background(), s.Form.Get("client_assertion"))
		if err != nil {
			t.Fatalf("client assertion does not verify: %v", err)
		}
		c := tok.Claims
		if c.Issuer != id || c.Subject != id {
			t.Errorf("iss/sub = %q/%q, want %q", c.Issuer, c.Subject, id)
		}
		if len(c.Audience) != 1 || c.Audience[0] != wantAud {
			t.Errorf("aud = %q, want [%q]", c.Audience, wantAud)
		}
		if raw, err := base64.RawURLEncoding.DecodeString(c.JTI); err != nil || len(raw) != 16 {
			t.Errorf("jti %q is not 128 bits of base64url", c.JTI)
		}
		if d := time.Since(c.IssuedAt); d < -2*time.Second || d > 5*time.Second {
			t.Errorf("iat %v is not now", c.IssuedAt)
		}
		if c.Expiry.Sub(c.IssuedAt) != 60*time.Second {
			t.Errorf("exp - iat = %v, want 60s", c.Expiry.Sub(c.IssuedAt))
		}
		if s.Form.Get("client_id") != id {
			t.Errorf("client_id = %q", s.Form.Get("client_id"))
		}
		return c.JTI
	}

	tests := []struct {
		name  string
		creds oauth.ClientCredentials
		check func(t *testing.T, s seen, endpoint string)
	}{
		{"client_secret_basic", oauth.ClientCredentials{ClientID: id, Secret: secret, Method: oauth.AuthClientSecretBasic},
			func(t *testing.T, s seen, _ string) {
				want := "Basic " + base64.StdEncoding.EncodeToString([]byte(basicPair))
				if got := s.Header.Get("Authorization"); got != want {
					t.Errorf("Authorization = %q, want %q", got, want)
				}
				// What a conforming server does: split, then form-decode.
				r := &http.Request{Header: http.Header{"Authorization": {s.Header.Get("Authorization")}}}
				u, p, ok := r.BasicAuth()
				du, _ := url.QueryUnescape(u)
				dp, _ := url.QueryUnescape(p)
				if !ok || du != id || dp != secret {
					t.Errorf("decoded credentials %q/%q", du, dp)
				}
				for _, k := range []string{"client_id", "client_secret", "client_assertion"} {
					if s.Form.Has(k) {
						t.Errorf("form has %s", k)
					}
				}
			}},
		{"client_secret_post", oauth.ClientCredentials{ClientID: id, Secret: secret, Method: oauth.AuthClientSecretPost},
			func(t *testing.T, s seen, _ string) {
				if s.Form.Get("client_id") != id || s.Form.Get("client_secret") != secret {
					t.Errorf("form credentials %q/%q", s.Form.Get("client_id"), s.Form.Get("client_secret"))
				}
				if s.Header.Get("Authorization") != "" {
					t.Error("Authorization header sent")
				}
			}},
		{"none", oauth.ClientCredentials{ClientID: id, Method: oauth.AuthNone},
			func(t *testing.T, s seen, _ string) {
				if s.Form.Get("client_id") != id || s.Form.Has("client_secret") || s.Form.Has("client_assertion") {
					t.Errorf("form = %v", s.Form)
				}
				if s.Header.Get("Authorization") != "" {
					t.Error("Authorization header sent")
				}
			}},
		{"private_key_jwt", oauth.ClientCredentials{ClientID: id, Signer: signer, Method: oauth.AuthPrivateKeyJWT},
			func(t *testing.T, s seen, endpoint string) {
				checkAssertion(t, s, endpoint)
				if s.Form.Has("client_secret") || s.Header.Get("Authorization") != "" {
					t.Error("secret sent with private_key_jwt")
				}
			}},
		{"private_key_jwt with audience", oauth.ClientCredentials{ClientID: id, Signer: signer, Method: oauth.AuthPrivateKeyJWT, AssertionAudience: "http://issuer.example/realms/a"},
			func(t *testing.T, s seen, _ string) { checkAssertion(t, s, "http://issuer.example/realms/a") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t, nil)
			c := oauth.NewClient(oauth.ClientOptions{})
			resp, err := c.Token(context.Background(), oauth.Request{Endpoint: ts.endpoint(), Creds: tt.creds, Form: bearerForm()})
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			if resp.AccessToken != "AT" {
				t.Errorf("access token %q", resp.AccessToken)
			}
			s := ts.last(t)
			if s.Method != http.MethodPost || s.Path != "/realms/a/protocol/openid-connect/token" {
				t.Errorf("%s %s", s.Method, s.Path)
			}
			if ct := s.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type = %q", ct)
			}
			if a := s.Header.Get("Accept"); a != "application/json" {
				t.Errorf("Accept = %q", a)
			}
			if s.Form.Get("grant_type") != oauth.GrantTypeJWTBearer || s.Form.Get("assertion") != "ASSERTION" || s.Form.Get("scope") != "read" {
				t.Errorf("grant parameters lost: %v", s.Form)
			}
			tt.check(t, s, ts.endpoint())
		})
	}
}

func TestPrivateKeyJWTFreshJTI(t *testing.T) {
	signer, _ := token.GenerateSigner("EdDSA")
	ts := newTokenServer(t, nil)
	c := oauth.NewClient(oauth.ClientOptions{})
	creds := oauth.ClientCredentials{ClientID: "broker", Signer: signer, Method: oauth.AuthPrivateKeyJWT}
	jtis := map[string]bool{}
	for range 5 {
		if _, err := c.Token(context.Background(), oauth.Request{Endpoint: ts.endpoint(), Creds: creds, Form: bearerForm()}); err != nil {
			t.Fatal(err)
		}
		tok, err := token.ParseUnverified(ts.last(t).Form.Get("client_assertion"))
		if err != nil {
			t.Fatal(err)
		}
		jtis[tok.Claims.JTI] = true
	}
	if len(jtis) != 5 {
		t.Fatalf("%d distinct jti in 5 assertions", len(jtis))
	}
}

func TestInvalidRequestsSendNothing(t *testing.T) {
	ts := newTokenServer(t, nil)
	good := oauth.ClientCredentials{ClientID: "c", Secret: "s", Method: oauth.AuthClientSecretBasic}
	tests := []struct {
		name string
		req  oauth.Request
	}{
		{"basic without secret", oauth.Request{Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthClientSecretBasic}}},
		{"post without secret", oauth.Request{Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthClientSecretPost}}},
		{"private_key_jwt without signer", oauth.Request{Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthPrivateKeyJWT}}},
		{"no client id", oauth.Request{Creds: oauth.ClientCredentials{Secret: "s", Method: oauth.AuthClientSecretPost}}},
		{"unknown method", oauth.Request{Creds: oauth.ClientCredentials{ClientID: "c", Secret: "s", Method: "tls_client_auth"}}},
		{"empty method", oauth.Request{Creds: oauth.ClientCredentials{ClientID: "c", Secret: "s"}}},
		{"no grant_type", oauth.Request{Creds: good, Form: url.Values{"assertion": {"x"}}}},
		{"exchange without subject", oauth.Request{Creds: good, Form: oauth.TokenExchange{}.Form()}},
		{"bearer without assertion", oauth.Request{Creds: good, Form: oauth.JWTBearer{}.Form()}},
		{"relative endpoint", oauth.Request{Endpoint: "/token", Creds: good}},
		{"ftp endpoint", oauth.Request{Endpoint: "ftp://x/token", Creds: good}},
	}
	c := oauth.NewClient(oauth.ClientOptions{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req.Endpoint == "" {
				req.Endpoint = ts.endpoint()
			}
			if req.Form == nil {
				req.Form = bearerForm()
			}
			_, err := c.Token(context.Background(), req)
			if !errors.Is(err, oauth.ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
		})
	}
	if n := ts.hits.Load(); n != 0 {
		t.Fatalf("server received %d requests", n)
	}
}

func TestTokenResponses(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", 2000) + `","token_type":"Bearer"}`
	tests := []struct {
		name    string
		respond func(http.ResponseWriter, *http.Request)
		check   func(t *testing.T, resp *oauth.TokenResponse, err error)
	}{
		{"success, expires_in number", writeRaw(200, "application/json",
			`{"access_token":"AT","token_type":"bearer","expires_in":300,"scope":"a b","refresh_token":"RT","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`),
			func(t *testing.T, r *oauth.TokenResponse, err error) {
				want := oauth.TokenResponse{AccessToken: "AT", TokenType: "bearer", ExpiresIn: 300, Scope: "a b", RefreshToken: "RT", IssuedTokenType: oauth.TokenTypeAccessToken}
				if err != nil || *r != want {
					t.Fatalf("got %+v, %v; want %+v", r, err, want)
				}
				if !r.IsBearer() {
					t.Error("IsBearer false for \"bearer\"")
				}
			}},
		{"success, expires_in string", writeRaw(200, "application/json", `{"access_token":"AT","token_type":"Bearer","expires_in":"3600"}`),
			func(t *testing.T, r *oauth.TokenResponse, err error) {
				if err != nil || r.ExpiresIn != 3600 {
					t.Fatalf("got %+v, %v", r, err)
				}
			}},
		{"success, no expires_in, N_A type", writeRaw(200, "application/json;charset=UTF-8", `{"access_token":"AT","token_type":"N_A"}`),
			func(t *testing.T, r *oauth.TokenResponse, err error) {
				if err != nil || r.ExpiresIn != 0 || r.TokenType != "N_A" || r.IsBearer() {
					t.Fatalf("got %+v, %v", r, err)
				}
			}},
		{"400 invalid_grant", writeRaw(400, "application/json", `{"error":"invalid_grant","error_description":"Token reuse detected","error_uri":"https://e/x"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var oe *oauth.Error
				if !errors.As(err, &oe) {
					t.Fatalf("got %v, want *oauth.Error", err)
				}
				want := oauth.Error{StatusCode: 400, Code: "invalid_grant", Description: "Token reuse detected", URI: "https://e/x"}
				if *oe != want {
					t.Fatalf("got %+v, want %+v", *oe, want)
				}
				if errors.Is(err, oauth.ErrUnavailable) || errors.Is(err, oauth.ErrBadResponse) {
					t.Error("OAuth error also matches a transport sentinel")
				}
			}},
		{"401 invalid_client", writeRaw(401, "application/json", `{"error":"invalid_client"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var oe *oauth.Error
				if !errors.As(err, &oe) || oe.StatusCode != 401 || oe.Code != "invalid_client" || oe.Description != "" {
					t.Fatalf("got %#v", err)
				}
			}},
		{"403 with error", writeRaw(403, "application/json", `{"error":"access_denied","error_description":"no"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var oe *oauth.Error
				if !errors.As(err, &oe) || oe.Code != "access_denied" {
					t.Fatalf("got %v", err)
				}
			}},
		{"400 without error member", writeRaw(400, "application/json", `{"message":"bad"}`), wantSentinel(oauth.ErrBadResponse)},
		{"404 HTML", writeRaw(404, "text/html", `<html>not found</html>`), wantSentinel(oauth.ErrBadResponse)},
		{"500 plain", writeRaw(500, "text/plain", `oops`), wantSentinel(oauth.ErrUnavailable)},
		{"503 with OAuth error", writeRaw(503, "application/json", `{"error":"temporarily_unavailable"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var oe *oauth.Error
				if !errors.Is(err, oauth.ErrUnavailable) || errors.As(err, &oe) || !strings.Contains(err.Error(), "temporarily_unavailable") {
					t.Fatalf("got %v", err)
				}
			}},
		{"429", writeRaw(429, "application/json", `{"error":"slow_down"}`), wantSentinel(oauth.ErrUnavailable)},
		// A refusal that depends on the user, answered with 500 (Keycloak's
		// impersonation check): the server's answer, not an outage.
		{"500 with OAuth error is a refusal", writeRaw(500, "application/json", `{"error":"server_error","error_description":"user doesn't have impersonation permission"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var oe *oauth.Error
				if !errors.As(err, &oe) || errors.Is(err, oauth.ErrUnavailable) {
					t.Fatalf("got %v, want *oauth.Error and not ErrUnavailable", err)
				}
				want := oauth.Error{StatusCode: 500, Code: "server_error", Description: "user doesn't have impersonation permission"}
				if *oe != want {
					t.Fatalf("got %+v, want %+v", *oe, want)
				}
			}},
		{"503 temporarily_unavailable keeps its description", writeRaw(503, "application/json", `{"error":"temporarily_unavailable","error_description":"maintenance"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var ue *oauth.UnavailableError
				if !errors.As(err, &ue) || ue.OAuth == nil || ue.OAuth.Code != "temporarily_unavailable" || ue.OAuth.Description != "maintenance" {
					t.Fatalf("got %#v", err)
				}
			}},
		{"503 server_error is an outage", writeRaw(503, "application/json", `{"error":"server_error"}`), wantSentinel(oauth.ErrUnavailable)},
		{"400 temporarily_unavailable is an outage", writeRaw(400, "application/json", `{"error":"temporarily_unavailable"}`),
			func(t *testing.T, _ *oauth.TokenResponse, err error) {
				var oe *oauth.Error
				if !errors.Is(err, oauth.ErrUnavailable) || errors.As(err, &oe) {
					t.Fatalf("got %v, want ErrUnavailable", err)
				}
			}},
		{"200 HTML", writeRaw(200, "text/html", `<html>login</html>`), wantSentinel(oauth.ErrBadResponse)},
		{"200 JSON array", writeRaw(200, "application/json", `[{"access_token":"AT","token_type":"Bearer"}]`), wantSentinel(oauth.ErrBadResponse)},
		{"200 without access_token", writeRaw(200, "application/json", `{"token_type":"Bearer"}`), wantSentinel(oauth.ErrBadResponse)},
		{"200 empty access_token", writeRaw(200, "application/json", `{"access_token":"","token_type":"Bearer"}`), wantSentinel(oauth.ErrBadResponse)},
		{"200 without token_type", writeRaw(200, "application/json", `{"access_token":"AT"}`), wantSentinel(oauth.ErrBadResponse)},
		{"200 access_token number", writeRaw(200, "application/json", `{"access_token":1,"token_type":"Bearer"}`), wantSentinel(oauth.ErrBadResponse)},
		{"200 bad expires_in", writeRaw(200, "application/json", `{"access_token":"AT","token_type":"Bearer","expires_in":"soon"}`), wantSentinel(oauth.ErrBadResponse)},
		{"200 negative expires_in", writeRaw(200, "application/json", `{"access_token":"AT","token_type":"Bearer","expires_in":-5}`), wantSentinel(oauth.ErrBadResponse)},
		{"oversized", writeRaw(200, "application/json", big), func(t *testing.T, _ *oauth.TokenResponse, err error) {
			if !errors.Is(err, oauth.ErrBadResponse) || !strings.Contains(err.Error(), "response exceeds 1024 bytes") {
				t.Fatalf("got %v", err)
			}
		}},
		{"204", writeRaw(204, "", ""), wantSentinel(oauth.ErrBadResponse)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t, tt.respond)
			c := oauth.NewClient(oauth.ClientOptions{MaxResponseBytes: 1024})
			resp, err := c.Token(context.Background(), oauth.Request{
				Endpoint: ts.endpoint(),
				Creds:    oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone},
				Form:     bearerForm(),
			})
			if err != nil && resp != nil {
				t.Fatal("both response and error")
			}
			tt.check(t, resp, err)
		})
	}
}

func wantSentinel(want error) func(*testing.T, *oauth.TokenResponse, error) {
	return func(t *testing.T, _ *oauth.TokenResponse, err error) {
		t.Helper()
		var oe *oauth.Error
		if !errors.Is(err, want) || errors.As(err, &oe) {
			t.Fatalf("got %v, want %v", err, want)
		}
	}
}

func TestResponseSizeBoundary(t *testing.T) {
	body := `{"access_token":"AT","token_type":"Bearer","pad":"`
	body += strings.Repeat("x", 1024-len(body)-2) + `"}`
	if len(body) != 1024 {
		t.Fatalf("test body is %d bytes", len(body))
	}
	ts := newTokenServer(t, writeRaw(200, "application/json", body))
	c := oauth.NewClient(oauth.ClientOptions{MaxResponseBytes: 1024})
	if _, err := c.Token(context.Background(), oauth.Request{Endpoint: ts.endpoint(), Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone}, Form: bearerForm()}); err != nil {
		t.Fatalf("response of exactly MaxResponseBytes: %v", err)
	}
}

func sleeper(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
		writeJSON(w, 200, map[string]any{"access_token": "late", "token_type": "Bearer"})
	}
}

func TestDeadlines(t *testing.T) {
	ts := newTokenServer(t, sleeper)
	req := oauth.Request{Endpoint: ts.endpoint(), Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone}, Form: bearerForm()}
	tests := []struct {
		name    string
		opts    oauth.ClientOptions
		timeout time.Duration
	}{
		{"ctx deadline", oauth.ClientOptions{}, 150 * time.Millisecond},
		{"client timeout", oauth.ClientOptions{Timeout: 150 * time.Millisecond}, 0},
		{"earlier of both", oauth.ClientOptions{Timeout: 150 * time.Millisecond}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			start := time.Now()
			_, err := oauth.NewClient(tt.opts).Token(ctx, req)
			if !errors.Is(err, oauth.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want ErrUnavailable and DeadlineExceeded", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("returned after %v", d)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := oauth.NewClient(oauth.ClientOptions{}).Token(ctx, req); !errors.Is(err, oauth.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: got %v", err)
	}
}

func TestClosedPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = oauth.NewClient(oauth.ClientOptions{}).Token(context.Background(), oauth.Request{
		Endpoint: "http://" + addr + "/token", Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone}, Form: bearerForm(),
	})
	if !errors.Is(err, oauth.ErrUnavailable) || !errors.Is(err, oauth.ErrNotSent) {
		t.Fatalf("got %v, want ErrUnavailable and ErrNotSent", err)
	}
}

// A TLS handshake that fails (a certificate the client does not trust)
// sends nothing: the server cannot have seen the request.
func TestTLSHandshakeFailureIsNotSent(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	defer srv.Close()
	_, err := oauth.NewClient(oauth.ClientOptions{}).Token(context.Background(), oauth.Request{
		Endpoint: srv.URL + "/token", Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone}, Form: bearerForm(),
	})
	if !errors.Is(err, oauth.ErrUnavailable) || !errors.Is(err, oauth.ErrNotSent) || requests.Load() != 0 {
		t.Fatalf("got %v (%d requests seen), want ErrUnavailable and ErrNotSent", err, requests.Load())
	}
}

// A connection that fails after the request was written: the server may
// have seen it, so the error must not claim it was not sent.
func TestResetAfterWriteIsNotNotSent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { // read the request, then drop the connection unanswered
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST
				}
				c.Close()
			}()
		}
	}()
	_, err = oauth.NewClient(oauth.ClientOptions{}).Token(context.Background(), oauth.Request{
		Endpoint: "http://" + l.Addr().String() + "/token", Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone}, Form: bearerForm(),
	})
	if !errors.Is(err, oauth.ErrUnavailable) || errors.Is(err, oauth.ErrNotSent) {
		t.Fatalf("got %v, want ErrUnavailable without ErrNotSent", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newTokenServer(t, nil)
	for _, custom := range []bool{false, true} {
		t.Run(fmt.Sprintf("custom HTTP client %v", custom), func(t *testing.T) {
			ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.endpoint(), http.StatusTemporaryRedirect)
			})
			opts := oauth.ClientOptions{}
			callers := &http.Client{} // follows redirects by default
			if custom {
				opts.HTTPClient = callers
			}
			_, err := oauth.NewClient(opts).Token(context.Background(), oauth.Request{
				Endpoint: ts.endpoint(), Creds: oauth.ClientCredentials{ClientID: "c", Secret: "s", Method: oauth.AuthClientSecretPost}, Form: bearerForm(),
			})
			if !errors.Is(err, oauth.ErrBadResponse) {
				t.Fatalf("got %v, want ErrBadResponse", err)
			}
			if n := target.hits.Load(); n != 0 {
				t.Fatalf("redirect target received %d requests", n)
			}
			if callers.CheckRedirect != nil {
				t.Fatal("caller's client was modified")
			}
		})
	}
}

func TestTokenExchangeForm(t *testing.T) {
	tests := []struct {
		name string
		tx   oauth.TokenExchange
		want url.Values
	}{
		{"minimal", oauth.TokenExchange{SubjectToken: "ST"}, url.Values{
			"grant_type":         {oauth.GrantTypeTokenExchange},
			"subject_token":      {"ST"},
			"subject_token_type": {oauth.TokenTypeAccessToken},
		}},
		{"full", oauth.TokenExchange{
			SubjectToken: "ST", SubjectTokenType: oauth.TokenTypeIDToken,
			ActorToken: "AT", ActorTokenType: oauth.TokenTypeJWT,
			RequestedTokenType: oauth.TokenTypeIDJAG,
			Audience:           []string{"http://127.0.0.1:8282/realms/domain-b", "second"},
			Resource:           []string{"https://api.b/one", "https://api.b/two"},
			Scope:              []string{"read", "", "write"},
		}, url.Values{
			"grant_type":           {oauth.GrantTypeTokenExchange},
			"subject_token":        {"ST"},
			"subject_token_type":   {oauth.TokenTypeIDToken},
			"actor_token":          {"AT"},
			"actor_token_type":     {oauth.TokenTypeJWT},
			"requested_token_type": {oauth.TokenTypeIDJAG},
			"audience":             {"http://127.0.0.1:8282/realms/domain-b", "second"},
			"resource":             {"https://api.b/one", "https://api.b/two"},
			"scope":                {"read write"},
		}},
		{"actor type defaults", oauth.TokenExchange{SubjectToken: "ST", ActorToken: "AT"}, url.Values{
			"grant_type":         {oauth.GrantTypeTokenExchange},
			"subject_token":      {"ST"},
			"subject_token_type": {oauth.TokenTypeAccessToken},
			"actor_token":        {"AT"},
			"actor_token_type":   {oauth.TokenTypeAccessToken},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tx.Form(); !equalValues(got, tt.want) {
				t.Errorf("Form()\n got %v\nwant %v", got, tt.want)
			}
			// And as the server sees it on the wire.
			ts := newTokenServer(t, nil)
			_, err := oauth.NewClient(oauth.ClientOptions{}).Token(context.Background(), oauth.Request{
				Endpoint: ts.endpoint(), Creds: oauth.ClientCredentials{ClientID: "broker", Secret: "s", Method: oauth.AuthClientSecretBasic}, Form: tt.tx.Form(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := ts.last(t).Form; !equalValues(got, tt.want) {
				t.Errorf("server saw\n %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestJWTBearerForm(t *testing.T) {
	got := oauth.JWTBearer{Assertion: "A.B.C", Scope: []string{"x", "y"}}.Form()
	want := url.Values{"grant_type": {oauth.GrantTypeJWTBearer}, "assertion": {"A.B.C"}, "scope": {"x y"}}
	if !equalValues(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got = oauth.JWTBearer{Assertion: "A.B.C"}.Form()
	if got.Has("scope") {
		t.Errorf("empty scope sent: %v", got)
	}
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestCallerFormNotModified(t *testing.T) {
	ts := newTokenServer(t, nil)
	form := bearerForm()
	_, err := oauth.NewClient(oauth.ClientOptions{}).Token(context.Background(), oauth.Request{
		Endpoint: ts.endpoint(), Creds: oauth.ClientCredentials{ClientID: "c", Secret: "s", Method: oauth.AuthClientSecretPost}, Form: form,
	})
	if err != nil {
		t.Fatal(err)
	}
	if form.Has("client_secret") || form.Has("client_id") {
		t.Fatalf("caller's form was modified: %v", form)
	}
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	const subject, secret, access = "SUBJECT-TOKEN-4f1d", "CLIENT-SECRET-9a2c", "ACCESS-TOKEN-77e0"
	respond := []func(http.ResponseWriter, *http.Request){
		writeRaw(400, "application/json", `{"error":"invalid_grant","error_description":"bad subject"}`),
		writeRaw(500, "text/plain", "boom"),
		writeRaw(503, "application/json", `{"error":"temporarily_unavailable"}`),
		writeRaw(200, "application/json", `{"access_token":"`+access+`"}`),
		writeRaw(200, "application/json", `{"access_token":"`+access+`","token_type":"Bearer","expires_in":"`+access+`"}`),
		writeRaw(200, "application/json", `{"access_token":"`+access+`","token_type":7}`),
		writeRaw(200, "text/html", "<p>"+access+"</p>"),
		writeRaw(200, "application/json", `{"access_token":"`+access+strings.Repeat("x", 4096)+`","token_type":"Bearer"}`),
		func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) },
		sleeper,
	}
	for i, h := range respond {
		for _, method := range []oauth.AuthMethod{oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost} {
			ts := newTokenServer(t, h)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_, err := oauth.NewClient(oauth.ClientOptions{MaxResponseBytes: 2048}).Token(ctx, oauth.Request{
				Endpoint: ts.endpoint(),
				Creds:    oauth.ClientCredentials{ClientID: "c", Secret: secret, Method: method},
				Form:     oauth.TokenExchange{SubjectToken: subject, Audience: []string{"b"}}.Form(),
			})
			cancel()
			if err == nil {
				t.Fatalf("case %d: no error", i)
			}
			for _, s := range []string{subject, secret, access, base64.StdEncoding.EncodeToString([]byte("c:" + secret))} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("case %d (%s): error %q contains a secret", i, method, err)
				}
			}
		}
	}
}

func TestConnectionReuseAndConcurrency(t *testing.T) {
	var conns atomic.Int64
	ts := newTokenServer(t, nil, func(s *http.Server) {
		s.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
	})
	c := oauth.NewClient(oauth.ClientOptions{})
	req := oauth.Request{Endpoint: ts.endpoint(), Creds: oauth.ClientCredentials{ClientID: "c", Method: oauth.AuthNone}, Form: bearerForm()}
	for range 10 {
		if _, err := c.Token(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("10 sequential requests used %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := c.Token(context.Background(), req); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d concurrent requests failed", failed.Load())
	}
}

// discoveryServer serves metadata documents by path.
func discoveryServer(t *testing.T, docs func(base string) map[string]string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Method != http.MethodGet {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		doc, ok := docs(srv.URL)[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(doc))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestDiscover(t *testing.T) {
	md := func(iss, tokenEP, jwks string) string {
		b, _ := json.Marshal(map[string]string{"issuer": iss, "token_endpoint": tokenEP, "jwks_uri": jwks, "authorization_endpoint": "x"})
		return string(b)
	}
	tests := []struct {
		name    string
		path    string // issuer path
		docs    func(base string) map[string]string
		want    func(base string) *oauth.Metadata
		wantErr error
		errHas  []string
	}{
		{"OIDC", "/realms/domain-a", func(base string) map[string]string {
			iss := base + "/realms/domain-a"
			return map[string]string{"/realms/domain-a/.well-known/openid-configuration": md(iss, iss+"/protocol/openid-connect/token", iss+"/protocol/openid-connect/certs")}
		}, func(base string) *oauth.Metadata {
			iss := base + "/realms/domain-a"
			return &oauth.Metadata{Issuer: iss, TokenEndpoint: iss + "/protocol/openid-connect/token", JWKSURI: iss + "/protocol/openid-connect/certs"}
		}, nil, nil},
		{"RFC 8414 fallback", "/tenant1", func(base string) map[string]string {
			return map[string]string{"/.well-known/oauth-authorization-server/tenant1": md(base+"/tenant1", base+"/t", "")}
		}, func(base string) *oauth.Metadata {
			return &oauth.Metadata{Issuer: base + "/tenant1", TokenEndpoint: base + "/t"}
		}, nil, nil},
		{"issuer mismatch", "/realms/domain-a", func(base string) map[string]string {
			return map[string]string{"/realms/domain-a/.well-known/openid-configuration": md("https://evil.example/realms/domain-a", base+"/t", "")}
		}, nil, oauth.ErrBadResponse, []string{"https://evil.example/realms/domain-a", "/realms/domain-a\""}},
		{"trailing slash is not the same issuer", "/realms/domain-a", func(base string) map[string]string {
			return map[string]string{"/realms/domain-a/.well-known/openid-configuration": md(base+"/realms/domain-a/", base+"/t", "")}
		}, nil, oauth.ErrBadResponse, nil},
		{"no token endpoint", "/r", func(base string) map[string]string {
			return map[string]string{"/r/.well-known/openid-configuration": md(base+"/r", "", "")}
		}, nil, oauth.ErrBadResponse, nil},
		{"not JSON", "/r", func(string) map[string]string {
			return map[string]string{"/r/.well-known/openid-configuration": "<html>"}
		}, nil, oauth.ErrBadResponse, nil},
		{"neither document", "/r", func(string) map[string]string { return nil }, nil, oauth.ErrBadResponse, nil},
		{"oversized", "/r", func(base string) map[string]string {
			return map[string]string{"/r/.well-known/openid-configuration": md(base+"/r", base+"/t", strings.Repeat("j", 2048))}
		}, nil, oauth.ErrBadResponse, []string{"exceeds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := discoveryServer(t, tt.docs)
			c := oauth.NewClient(oauth.ClientOptions{MaxResponseBytes: 1024})
			got, err := c.Discover(context.Background(), srv.URL+tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.want(srv.URL); *got != *want {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		})
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if _, err := oauth.NewClient(oauth.ClientOptions{}).Discover(context.Background(), "http://"+addr+"/r"); !errors.Is(err, oauth.ErrUnavailable) {
		t.Fatalf("server down: got %v, want ErrUnavailable", err)
	}
	if _, err := oauth.NewClient(oauth.ClientOptions{}).Discover(context.Background(), "not a url"); !errors.Is(err, oauth.ErrConfig) {
		t.Fatalf("bad issuer: got %v, want ErrConfig", err)
	}
}

// A discovery URL answering a redirect to another server: not followed,
// the error says so, and the other server sees no request.
func TestDiscoverRefusesRedirects(t *testing.T) {
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	defer redirector.Close()
	_, err := oauth.NewClient(oauth.ClientOptions{}).Discover(context.Background(), redirector.URL+"/realms/a")
	if !errors.Is(err, oauth.ErrBadResponse) || !strings.Contains(err.Error(), "HTTP 302 redirect not followed") {
		t.Fatalf("got %v, want ErrBadResponse naming the refused redirect", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the redirect target saw %d requests", n)
	}
}
