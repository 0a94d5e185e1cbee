package sandbox

import (
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// startWithCloud runs a sandbox with the cloud imitations, all on
// ephemeral ports.
func startWithCloud(t *testing.T) *Sandbox {
	t.Helper()
	sb, err := Start(t.Context(), Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", CloudAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if sb.Cloud == nil {
		t.Fatal("no cloud imitations with CloudAddr set")
	}
	return sb
}

// testIssuer is an OpenID provider for the cloud tests: a discovery
// document and a JWKS with an RS256 and an ES256 key, on loopback.
type testIssuer struct {
	url           string
	rs, es, rs384 *token.Signer
	ps            *token.Signer // published PS256 key (Google refuses PS256)
	rogue         *token.Signer // unpublished: sign with SignOptions{Kid: rs's kid}
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	gen := func(alg string) *token.Signer {
		s, err := token.GenerateSigner(alg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ti := &testIssuer{rs: gen("RS256"), es: gen("ES256"), rs384: gen("RS384"), ps: gen("PS256"), rogue: gen("RS256")}
	jwks, err := token.PublicJWKS(ti.rs, ti.es, ti.rs384, ti.ps)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			writeJSON(w, http.StatusOK, map[string]any{"issuer": ti.url, "jwks_uri": ti.url + "/jwks"})
		case "/jwks":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	ti.url = srv.URL
	return ti
}

// token signs claims (iss, iat and exp 5 min by default; a nil value
// removes a claim) with s.
func (ti *testIssuer) token(t *testing.T, s *token.Signer, claims map[string]any, opts token.SignOptions) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{"iss": ti.url, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": newUUID()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok, err := s.Sign(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withoutKid rewrites a token's header to {"alg":alg,"typ":"JWT"}: the
// signature no longer verifies, which the checks before it do not see.
func withoutKid(t *testing.T, tok, alg string) string {
	t.Helper()
	parts := strings.SplitN(tok, ".", 3)
	if len(parts) != 3 {
		t.Fatal("not a JWS")
	}
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
}

// deadURL returns an http URL on which nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// cloudExchange runs domain A's token exchange for alice with audience aud
// (the broker's hop 1 towards a cloud).
func cloudExchange(t *testing.T, sb *Sandbox, aud string) string {
	t.Helper()
	f := exchangeForm(subjectToken(t, sb, Alice))
	f.Set("audience", aud)
	r := post(t, sb.A.TokenEndpoint(), f, BrokerClientID, BrokerSecretA)
	if r.status != http.StatusOK {
		t.Fatalf("exchange for %s: %v", aud, r)
	}
	return r.str("access_token")
}

func TestCloudDisabledByDefault(t *testing.T) {
	if sb := start(t); sb.Cloud != nil {
		t.Fatal("cloud imitations started without CloudAddr")
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abd", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"repo:org/*:ref:main", "repo:org/x:ref:main", true},
		{"exact", "exact", true}, {"exact", "exactly", false}, {"*a*b", "xaxxb", true},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func TestCloudListenerClosed(t *testing.T) {
	sb, err := Start(t.Context(), Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", CloudAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	u := sb.Cloud.AWS.Endpoint()
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Post(u, "application/x-www-form-urlencoded", nil); err == nil {
		resp.Body.Close()
		t.Fatal("cloud listener still serves after Close")
	}
}
