package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestUnavailableRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "3": 3 * time.Second, "-5": 0, "soon": 0, "99999": time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	for _, status := range []int{429, 503} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			http.Error(w, `{"error":"temporarily_unavailable"}`, status)
		}))
		_, err := NewClient(ClientOptions{}).Token(context.Background(), Request{
			Endpoint: srv.URL, Creds: ClientCredentials{ClientID: "c", Method: AuthNone},
			Form: JWTBearer{Assertion: "a"}.Form(),
		})
		srv.Close()
		if !errors.Is(err, ErrUnavailable) || RetryAfter(err) != 7*time.Second {
			t.Errorf("HTTP %d: err %v, RetryAfter %v", status, err, RetryAfter(err))
		}
	}
}
