package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fuzzMaxResponseBytes is the response bound of FuzzTokenResponse's client:
// small, so that the fuzzer reaches it.
const fuzzMaxResponseBytes = 4 << 10

// FuzzTokenResponse answers a token request with a fuzzed HTTP status and
// body, twice: through parseTokenResponse with the raw status (any int), and
// through the real Client.Token against a loopback token endpoint that
// writes that answer (status mapped into 200..999, what net/http can send as
// a final status). Either way the result is a TokenResponse with an
// access_token and a token_type, or an *Error (4xx other than 429, or 5xx
// other than 503, with an error code other than temporarily_unavailable),
// or an error wrapping ErrUnavailable (429, 503, other 5xx without an OAuth
// error body, temporarily_unavailable) or ErrBadResponse (everything else). Both paths classify an answer alike.
// Errors never contain the body, nor any long string value of it other than
// the OAuth error code and description (bodies may carry tokens).
func FuzzTokenResponse(f *testing.F) {
	var answers sync.Map // request id -> fuzzAnswer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers.Load(strings.TrimPrefix(r.URL.Path, "/token/"))
		if !ok {
			http.Error(w, "unknown request", http.StatusNotFound)
			return
		}
		ans := a.(fuzzAnswer)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(ans.status)
		_, _ = w.Write(ans.body) // refused for 204 and 304: the client sees no body
	}))
	f.Cleanup(srv.Close)
	client := NewClient(ClientOptions{HTTPClient: srv.Client(), Timeout: 10 * time.Second, MaxResponseBytes: fuzzMaxResponseBytes})
	var seq atomic.Uint64
	ctx := context.Background()

	for _, s := range []struct {
		status int
		body   string
	}{
		{200, `{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln","token_type":"Bearer","expires_in":300,"scope":"profile email"}`},
		{200, `{"access_token":"at","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"N_A","expires_in":"3600"}`},
		{200, `{"access_token":"at","token_type":"bearer","expires_in":3.6e3,"refresh_token":"rt"}`},
		{200, `{"access_token":"at","token_type":"Bearer","expires_in":-1}`},
		{200, `{"access_token":"at","token_type":"Bearer","expires_in":1e400}`},
		{200, `{"access_token":"at","token_type":"Bearer","expires_in":"9223372036854775808"}`},
		{200, `{"access_token":"","token_type":"Bearer"}`},
		{200, `{"access_token":"at"}`},
		{200, `{"access_token":null,"token_type":"Bearer"}`},
		{200, `{"access_token":{"nested":["x"]},"token_type":"Bearer"}`},
		{200, `{"access_token":"at","token_type":"Bearer","access_token":"second"}`},
		{200, `["access_token"]`},
		{200, `access_token=at&token_type=bearer`},
		{200, ` {"access_token":"at","token_type":"Bearer"} trailing`},
		{200, ``},
		{400, `{"error":"invalid_grant","error_description":"Token reuse detected"}`},
		{400, `{"error":"invalid_request","error_description":"requested_token_type unsupported","error_uri":"https://as.example/e"}`},
		{401, `{"error":"invalid_client"}`},
		{400, `{"error":""}`},
		{400, `{"error":7}`},
		{400, `<html>Bad Request</html>`},
		{429, `{"error":"slow_down","error_description":"retry later"}`},
		{503, `{"error":"temporarily_unavailable"}`},
		{500, `Internal Server Error`},
		{500, `{"error":"server_error","error_description":"user doesn't have impersonation permission"}`},
		{400, `{"error":"temporarily_unavailable"}`},
		{503, `{"error":"server_error"}`},
		{302, ``},
		{204, `{"access_token":"at","token_type":"Bearer"}`},
		{101, ``},
		{-1, `{}`},
		{999, `{"access_token":"at","token_type":"Bearer"}`},
	} {
		f.Add(s.status, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, status int, body []byte) {
		const endpoint = "https://as.example/realms/a/protocol/openid-connect/token"
		resp, err := parseTokenResponse(status, body, endpoint)
		checkTokenResult(t, status, body, resp, err, endpoint)

		// The real path. net/http sends 100..999 only, and 1xx is interim.
		code := status
		if code < 200 || code > 999 {
			code = 200 + int(uint(status)%800)
		}
		sent := body
		if code == http.StatusNoContent || code == http.StatusNotModified {
			sent = nil
		}
		id := strconv.FormatUint(seq.Add(1), 10)
		answers.Store(id, fuzzAnswer{code, body})
		defer answers.Delete(id)
		url := srv.URL + "/token/" + id
		resp, err = client.Token(ctx, Request{
			Endpoint: url,
			Creds:    ClientCredentials{ClientID: "chainbroker", Method: AuthNone},
			Form:     JWTBearer{Assertion: "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}.Form(),
		})
		if len(sent) > fuzzMaxResponseBytes {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("%d-byte response: got %v, want ErrBadResponse", len(sent), err)
			}
			return
		}
		checkTokenResult(t, code, sent, resp, err, url)
		wantResp, wantErr := parseTokenResponse(code, sent, url)
		if class(err) != class(wantErr) || (resp == nil) != (wantResp == nil) || resp != nil && *resp != *wantResp {
			t.Fatalf("Client.Token and parseTokenResponse disagree on HTTP %d: %v, %v; want %v, %v", code, resp, err, wantResp, wantErr)
		}
	})
}

type fuzzAnswer struct {
	status int
	body   []byte
}

// class names the error class of a token endpoint answer.
func class(err error) string {
	var oe *Error
	switch {
	case err == nil:
		return "success"
	case errors.As(err, &oe):
		return "oauth error " + oe.Code
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrBadResponse):
		return "bad response"
	}
	return "unclassified: " + err.Error()
}

func checkTokenResult(t *testing.T, status int, body []byte, resp *TokenResponse, err error, endpoint string) {
	t.Helper()
	if (resp == nil) == (err == nil) {
		t.Fatalf("HTTP %d: got response %+v and error %v", status, resp, err)
	}
	if resp != nil {
		if status != http.StatusOK || resp.AccessToken == "" || resp.TokenType == "" || resp.ExpiresIn < 0 {
			t.Fatalf("HTTP %d: accepted %+v", status, resp)
		}
		return
	}

	var oe *Error
	isOAuth := errors.As(err, &oe)
	unavailable, bad := errors.Is(err, ErrUnavailable), errors.Is(err, ErrBadResponse)
	switch {
	case isOAuth && (unavailable || bad), unavailable && bad:
		t.Fatalf("HTTP %d: error in several classes: %v", status, err)
	case isOAuth:
		if oe.Code == "" || oe.Code == ErrorTemporarilyUnavailable || oe.StatusCode != status || status < 400 || outageStatus(status) {
			t.Fatalf("HTTP %d: OAuth error %+v", status, oe)
		}
	case unavailable:
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.StatusCode != status {
			t.Fatalf("HTTP %d: unavailable without its status: %v", status, err)
		}
		if status != http.StatusTooManyRequests && status < 500 && (ue.OAuth == nil || ue.OAuth.Code != ErrorTemporarilyUnavailable) {
			t.Fatalf("HTTP %d reported as unavailable: %v", status, err)
		}
		if status >= 500 && !outageStatus(status) && ue.OAuth != nil && ue.OAuth.Code != ErrorTemporarilyUnavailable {
			t.Fatalf("HTTP %d: the OAuth error %q is a refusal, not an outage", status, ue.OAuth.Code)
		}
	case bad:
		if status == http.StatusTooManyRequests || status >= 500 {
			t.Fatalf("HTTP %d reported as a bad response, not unavailable: %v", status, err)
		}
	default:
		t.Fatalf("HTTP %d: error %v is neither *Error nor ErrUnavailable nor ErrBadResponse", status, err)
	}

	// What the error says no matter the body: its template.
	_, ref := parseTokenResponse(status, nil, endpoint)
	msg, refMsg := err.Error(), ref.Error()
	if len(body) >= 8 && strings.Contains(msg, string(body)) && !strings.Contains(refMsg, string(body)) {
		t.Fatalf("HTTP %d: error quotes the body: %q", status, msg)
	}
	if isOAuth {
		return // code and description are the server's message to us
	}
	var members map[string]any
	if json.Unmarshal(bytes.TrimSpace(body), &members) != nil {
		return
	}
	for name, v := range members {
		s, ok := v.(string)
		// encoding/json matches member names without regard to case, so
		// "erroR" is the error code the message may quote, as "error" is.
		if !ok || len(s) < 8 || strings.EqualFold(name, "error") || !strings.Contains(msg, s) {
			continue
		}
		// The message contains the value: is it the value, or a template
		// that happens to contain it? Ask again with another value.
		members[name] = strings.Repeat("Q", len(s)+1)
		other, _ := json.Marshal(members)
		members[name] = s
		if _, err2 := parseTokenResponse(status, other, endpoint); err2 != nil && strings.Contains(err2.Error(), s) {
			continue
		}
		t.Fatalf("HTTP %d: error quotes the body's %q member: %q", status, name, msg)
	}
}
