package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// cannedTransport answers every request with the same 200 token response,
// reading and discarding the request body as a server would, so that
// allocation counts measure the client's own work.
type cannedTransport struct{ body string }

func (t cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(t.body)),
		ContentLength: int64(len(t.body)),
		Request:       req,
	}, nil
}

// TestReadBounded checks readBounded against io.ReadAll(io.LimitReader)
// whatever length the answer declares, a false one included.
func TestReadBounded(t *testing.T) {
	const max = 1024
	for _, n := range []int{0, 1, 511, 512, 513, max - 1, max, max + 1, 5000} {
		body := strings.Repeat("x", n)
		for _, declared := range []int64{-1, 0, int64(n), int64(n) + 7, max, max + 1, 1 << 40, 1<<63 - 1} {
			got, err := readBounded(strings.NewReader(body), declared, max)
			want, _ := io.ReadAll(io.LimitReader(strings.NewReader(body), max+1))
			if err != nil || string(got) != string(want) {
				t.Errorf("%d bytes declared as %d: got %d bytes, %v; want %d", n, declared, len(got), err, len(want))
			}
		}
	}
}

// keycloakTokenBody is what a Keycloak token exchange answers.
var keycloakTokenBody = `{"access_token":"` + strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 40) + `","expires_in":300,"refresh_expires_in":0,` +
	`"token_type":"Bearer","not-before-policy":0,"session_state":"6c1a2a3b-8f1e-4f1e-9a7b-1c2d3e4f5a6b","scope":"profile email",` +
	`"issued_token_type":"urn:ietf:params:oauth:token-type:jwt"}`

func allocClient() *Client {
	return NewClient(ClientOptions{HTTPClient: &http.Client{Transport: cannedTransport{keycloakTokenBody}}})
}

func allocRequest() Request {
	return Request{
		Endpoint: "http://127.0.0.1:8081/realms/b/protocol/openid-connect/token",
		Creds:    ClientCredentials{ClientID: "chainbroker", Method: AuthClientSecretBasic, Secret: "s3cret"},
		Form:     JWTBearer{Assertion: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", Scope: []string{"profile"}}.Form(),
	}
}

// TestTokenAllocations bounds the allocations of one Client.Token call
// (request built, sent through a canned transport, answer read and parsed)
// and of parsing a token response: the chain path makes two per chain.
func TestTokenAllocations(t *testing.T) {
	c, req := allocClient(), allocRequest()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // nearer than the client's own timeout, as the broker's
	defer cancel()
	if _, err := c.Token(ctx, req); err != nil {
		t.Fatal(err)
	}
	body := []byte(keycloakTokenBody)
	exchange := TokenExchange{SubjectToken: "st", Audience: []string{"b"}, Resource: []string{"https://r.example"}, Scope: []string{"openid", "profile"}}
	bearer := JWTBearer{Assertion: "a.b.c", Scope: []string{"profile"}}
	for _, tc := range []struct {
		name string
		max  float64
		f    func()
	}{
		{"Token", tokenAllocCeiling, func() { _, _ = c.Token(ctx, req) }},
		{"parseTokenResponse", parseAllocCeiling, func() { _, _ = parseTokenResponse(http.StatusOK, body, "x") }},
		{"TokenExchange.Form", exchangeFormAllocCeiling, func() { _ = exchange.Form() }},
		{"JWTBearer.Form", bearerFormAllocCeiling, func() { _ = bearer.Form() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(200, tc.f); got > tc.max {
				t.Errorf("%s: %v allocations per call, want at most %v", tc.name, got, tc.max)
			}
		})
	}
}

// The ceilings: 29 allocations per Token call (6 of them the canned
// transport's), 2 per parse (the values' string and the TokenResponse);
// before the request was built by hand and the answer decoded without
// reflection, 66 and 15.
// The grants' forms: the map (2), one array for the values and the joined
// scopes: 4 and 3 allocations for the forms below (before: one slice per
// parameter and the kept scopes, 9 and 5).
const (
	tokenAllocCeiling        = 32
	parseAllocCeiling        = 2
	exchangeFormAllocCeiling = 4
	bearerFormAllocCeiling   = 3
)

func BenchmarkToken(b *testing.B) {
	c, req := allocClient(), allocRequest()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // nearer than the client's own timeout, as the broker's
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Token(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseTokenResponse(b *testing.B) {
	body := []byte(keycloakTokenBody)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseTokenResponse(http.StatusOK, body, "x"); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodeTokenFast checks decodeTokenFast against the decoding it
// stands for: whenever it accepts a body, json.Unmarshal into a tokenJSON
// succeeds with the same members.
func FuzzDecodeTokenFast(f *testing.F) {
	for _, s := range []string{
		keycloakTokenBody,
		`{"access_token":"a","token_type":"Bearer","expires_in":300}`,
		`{"ACCESS_TOKEN":"a","Token_Type":"Bearer"}`,
		`{"access_token":"a","access_token":null,"token_type":"x"}`,
		`{"access_token":null,"access_token":"b","scope":"s","scope":null}`,
		`{"access_token":"a\u0041","token_type":"x"}`,
		`{"acceſſ_token":"a","token_type":"x"}`,
		`{"access_token":5,"token_type":"x"}`,
		`{"access_token":"a","token_type":"x","expires_in":"300","other":{"a":[1,"}",{"b":null}]},"z":true}`,
		` { "access_token" : "a" , "token_type" : "x" , "expires_in" : 3.6e3 } `,
		`{"expires_in":null,"refresh_token":"r","issued_token_type":"t"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !isJSONObject(body) {
			return
		}
		var got tokenFields
		if !decodeTokenFast(body, &got) {
			return
		}
		var tj tokenJSON
		if err := json.Unmarshal(body, &tj); err != nil {
			t.Fatalf("decodeTokenFast accepted %q, json.Unmarshal: %v", body, err)
		}
		want := tj.fields()
		if got.str != want.str || got.has != want.has || !bytes.Equal(got.expiresIn, want.expiresIn) || (got.expiresIn == nil) != (want.expiresIn == nil) {
			t.Fatalf("%q: decodeTokenFast %+v, json.Unmarshal %+v", body, got, want)
		}
	})
}

// TestEncodeForm checks encodeForm against url.Values.Encode of the merged
// form.
func TestEncodeForm(t *testing.T) {
	for _, tc := range []struct{ form, extra url.Values }{
		{url.Values{}, nil},
		{url.Values{"grant_type": {GrantTypeJWTBearer}, "assertion": {"a.b-c_d~e"}, "scope": {"openid profile"}}, nil},
		{url.Values{"audience": {"x", "y/z", ""}, "client_id": {"caller's"}}, url.Values{"client_id": {"ü id+&="}, "client_secret": {"%s3c r3t"}}},
		{url.Values{"k": {"\x00\xff\n"}}, url.Values{}},
	} {
		merged := url.Values{}
		for k, v := range tc.form {
			merged[k] = v
		}
		for k, v := range tc.extra {
			merged[k] = v
		}
		if got, want := string(encodeForm(tc.form, tc.extra)), merged.Encode(); got != want {
			t.Errorf("encodeForm(%v, %v) = %q, want %q", tc.form, tc.extra, got, want)
		}
	}
}

// urlTransport records the URL of each request, then changes it (which a
// RoundTripper must not do, but a careless wrapper might).
type urlTransport struct {
	cannedTransport
	seen *[]string
}

func (t urlTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	*t.seen = append(*t.seen, req.URL.String()+" host "+req.Host)
	req.URL.Path = "/changed"
	return t.cannedTransport.RoundTrip(req)
}

// TestEndpointMemo checks that an endpoint is parsed once and kept, that
// each request gets its own copy of its URL, that an empty port is dropped
// as http.NewRequest drops it, that a refused endpoint is not kept, and
// that the memo is bounded.
func TestEndpointMemo(t *testing.T) {
	var seen []string
	c := NewClient(ClientOptions{HTTPClient: &http.Client{Transport: urlTransport{cannedTransport{keycloakTokenBody}, &seen}}})
	req := allocRequest()
	ctx := context.Background()
	for _, ep := range []string{req.Endpoint, req.Endpoint, "http://127.0.0.1:/token"} {
		req.Endpoint = ep
		if _, err := c.Token(ctx, req); err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
	}
	want := []string{
		"http://127.0.0.1:8081/realms/b/protocol/openid-connect/token host 127.0.0.1:8081",
		"http://127.0.0.1:8081/realms/b/protocol/openid-connect/token host 127.0.0.1:8081", // not the /changed the transport wrote
		"http://127.0.0.1/token host 127.0.0.1",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests went to\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	if n := c.endpoints.n.Load(); n != 2 {
		t.Errorf("%d endpoints parsed and kept, want 2", n)
	}
	for _, bad := range []string{"ftp://x/token", "/token", "http://"} {
		req.Endpoint = bad
		if _, err := c.Token(ctx, req); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v, want ErrConfig", bad, err)
		}
		if _, kept := c.endpoints.m.Load(bad); kept {
			t.Errorf("%q refused but kept", bad)
		}
	}
	for i := range 2 * maxMemoEndpoints {
		if _, err := c.endpoints.get(fmt.Sprintf("http://h%d/token", i)); err != nil {
			t.Fatal(err)
		}
	}
	kept := 0
	c.endpoints.m.Range(func(any, any) bool { kept++; return true })
	if kept != maxMemoEndpoints {
		t.Errorf("%d endpoints kept, want the bound %d", kept, maxMemoEndpoints)
	}
}
