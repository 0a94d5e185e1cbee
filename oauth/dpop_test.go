package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/oauth"
)

var basicCreds = oauth.ClientCredentials{ClientID: "c", Secret: "s", Method: oauth.AuthClientSecretBasic}

// Extra request headers (the DPoP proof) reach the server; the client's own
// headers cannot be overridden.
func TestRequestHeader(t *testing.T) {
	ts := newTokenServer(t, nil)
	c := oauth.NewClient(oauth.ClientOptions{})
	hdr := http.Header{"Dpop": {"PROOF"}}
	if _, err := c.Token(context.Background(), oauth.Request{Endpoint: ts.endpoint(), Creds: basicCreds, Form: bearerForm(),
		Header: hdr}); err != nil {
		t.Fatal(err)
	}
	got := ts.last(t).Header
	if v := got.Values("DPoP"); len(v) != 1 || v[0] != "PROOF" {
		t.Errorf("DPoP header = %q", v)
	}
	if !strings.HasPrefix(got.Get("Authorization"), "Basic ") {
		t.Errorf("Authorization = %q", got.Get("Authorization"))
	}
	for _, name := range []string{"Authorization", "content-type", "Accept", "User-Agent", "Host", "Content-Length"} {
		before := ts.hits.Load()
		_, err := c.Token(context.Background(), oauth.Request{Endpoint: ts.endpoint(), Creds: basicCreds, Form: bearerForm(),
			Header: http.Header{name: {"x"}}})
		if !errors.Is(err, oauth.ErrConfig) || ts.hits.Load() != before {
			t.Errorf("header %s: %v (sent: %v)", name, err, ts.hits.Load() != before)
		}
	}
}

// The DPoP-Nonce header of an answer reaches the caller: with the error
// use_dpop_nonce (RFC 9449 §8) and with a success.
func TestDPoPNonce(t *testing.T) {
	c := oauth.NewClient(oauth.ClientOptions{})
	call := func(t *testing.T, nonces []string, status int, body map[string]any) (*oauth.TokenResponse, error) {
		t.Helper()
		ts := newTokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			for _, n := range nonces {
				w.Header().Add("DPoP-Nonce", n)
			}
			writeJSON(w, status, body)
		})
		return c.Token(context.Background(), oauth.Request{Endpoint: ts.endpoint(), Creds: basicCreds, Form: bearerForm()})
	}
	challenge := map[string]any{"error": oauth.ErrorUseDPoPNonce, "error_description": "Authorization server requires nonce in DPoP proof"}
	tests := []struct {
		name   string
		nonces []string
		want   string
	}{
		{"one nonce", []string{"eyJ7S_zG.eyJH0-Z.HX4w-7v"}, "eyJ7S_zG.eyJH0-Z.HX4w-7v"},
		{"none", nil, ""},
		{"two", []string{"a", "b"}, ""},
		{"space", []string{"a b"}, ""},
		{"quote", []string{`a"b`}, ""},
		{"too long", []string{strings.Repeat("n", oauth.MaxDPoPNonceBytes+1)}, ""},
		{"longest", []string{strings.Repeat("n", oauth.MaxDPoPNonceBytes)}, strings.Repeat("n", oauth.MaxDPoPNonceBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, tt.nonces, 400, challenge)
			var oe *oauth.Error
			if !errors.As(err, &oe) || oe.Code != oauth.ErrorUseDPoPNonce || oe.DPoPNonce != tt.want {
				t.Fatalf("err = %#v, want nonce %q", err, tt.want)
			}
			resp, err := call(t, tt.nonces, 200, map[string]any{"access_token": "AT", "token_type": "DPoP"})
			if err != nil || resp.DPoPNonce != tt.want || resp.TokenType != "DPoP" {
				t.Fatalf("success: %+v, %v", resp, err)
			}
		})
	}
}
