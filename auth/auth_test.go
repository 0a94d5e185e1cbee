package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

func TestAuthenticate(t *testing.T) {
	signer, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := token.PublicJWKS(signer)
	keys, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := token.GenerateSigner("ES256")
	sign := func(s *token.Signer, claims map[string]any) string {
		base := map[string]any{"iss": "https://issuer.test", "aud": "chainbroker", "sub": "system:serviceaccount:ns:agent",
			"exp": time.Now().Add(time.Minute).Unix(), "azp": "agent-client"}
		for k, v := range claims {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		tok, err := s.Sign(base, token.SignOptions{Kid: signer.KeyID()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	spiffe, _ := url.Parse("spiffe://example.org/agent")
	full, err := New(Config{
		APIKeys: []APIKey{{Name: "k1", SHA256: HashAPIKey("key-one")}, {Name: "k2", SHA256: HashAPIKey("key-two")}},
		JWT:     &JWTIssuer{Issuer: "https://issuer.test", Audience: "chainbroker", Keys: keys},
		MTLS:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	azp, _ := New(Config{JWT: &JWTIssuer{Issuer: "https://issuer.test", Audience: "chainbroker", Keys: keys, CallerClaim: "azp"}})
	anon, _ := New(Config{AllowAnonymous: true})
	none, _ := New(Config{})

	tests := []struct {
		name   string
		a      *Authenticator
		creds  Credentials
		caller string
		method Method
		errSub string
	}{
		{"api key", full, Credentials{APIKey: "key-two"}, "k2", MethodAPIKey, ""},
		{"wrong api key", full, Credentials{APIKey: "key-three"}, "", "", "invalid API key"},
		{"api key prefix", full, Credentials{APIKey: "key-on"}, "", "", "invalid API key"},
		{"api keys not accepted", anon, Credentials{APIKey: "key-one"}, "", "", "not accepted"},
		{"jwt", full, Credentials{Bearer: sign(signer, nil)}, "system:serviceaccount:ns:agent", MethodJWT, ""},
		{"jwt caller from azp", azp, Credentials{Bearer: sign(signer, nil)}, "agent-client", MethodJWT, ""},
		{"jwt expired", full, Credentials{Bearer: sign(signer, map[string]any{"exp": time.Now().Add(-time.Second).Unix()})}, "", "", "expired"},
		{"jwt without exp", full, Credentials{Bearer: sign(signer, map[string]any{"exp": nil})}, "", "", "expired"},
		{"jwt exp as a JSON string", full, Credentials{Bearer: sign(signer, map[string]any{"exp": strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)})}, "", "", "does not verify"},
		{"jwt not yet valid", full, Credentials{Bearer: sign(signer, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})}, "", "", "not yet valid"},
		{"jwt wrong issuer", full, Credentials{Bearer: sign(signer, map[string]any{"iss": "https://evil.test"})}, "", "", "issuer"},
		{"jwt wrong audience", full, Credentials{Bearer: sign(signer, map[string]any{"aud": []string{"a", "b"}})}, "", "", "audience"},
		{"jwt bad signature", full, Credentials{Bearer: sign(other, nil)}, "", "", "does not verify"},
		{"jwt without sub", full, Credentials{Bearer: sign(signer, map[string]any{"sub": nil})}, "", "", "no sub claim"},
		{"jwt not accepted", anon, Credentials{Bearer: sign(signer, nil)}, "", "", "not accepted"},
		{"mtls uri san", full, Credentials{PeerChain: []*x509.Certificate{{URIs: []*url.URL{spiffe}, DNSNames: []string{"a.example"}}}}, "spiffe://example.org/agent", MethodMTLS, ""},
		{"mtls dns san", full, Credentials{PeerChain: []*x509.Certificate{{DNSNames: []string{"agent.example"}}}}, "agent.example", MethodMTLS, ""},
		{"mtls no san", full, Credentials{PeerChain: []*x509.Certificate{{}}}, "", "", "neither a URI nor a DNS SAN"},
		{"cert without mtls enabled", none, Credentials{PeerChain: []*x509.Certificate{{DNSNames: []string{"x"}}}}, "", "", "credentials required"},
		{"a failing key does not fall back to the certificate", full, Credentials{APIKey: "bad", PeerChain: []*x509.Certificate{{DNSNames: []string{"x"}}}}, "", "", "invalid API key"},
		{"anonymous", anon, Credentials{}, Anonymous, MethodAnonymous, ""},
		{"nothing", full, Credentials{}, "", "", "credentials required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.a.Authenticate(context.Background(), tt.creds)
			if tt.errSub != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("err = %v, want ErrUnauthenticated containing %q", err, tt.errSub)
				}
				return
			}
			if err != nil || c.Name != tt.caller || c.Method != tt.method {
				t.Fatalf("got %+v, %v; want %s via %s", c, err, tt.caller, tt.method)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"short hash":    {APIKeys: []APIKey{{Name: "a", SHA256: "abcd"}}},
		"no key name":   {APIKeys: []APIKey{{SHA256: HashAPIKey("x")}}},
		"jwt no keys":   {JWT: &JWTIssuer{Issuer: "i", Audience: "a"}},
		"jwt bad claim": {JWT: &JWTIssuer{Issuer: "i", Audience: "a", Keys: &token.Verifier{}, CallerClaim: "email"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// An unreachable caller issuer fails closed.
func TestJWTKeysUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }))
	defer srv.Close()
	s, _ := token.GenerateSigner("ES256")
	a, _ := New(Config{JWT: &JWTIssuer{Issuer: "i", Audience: "a", Keys: token.NewRemoteVerifier(token.RemoteKeys{URL: srv.URL}, nil)}})
	tok, _ := s.Sign(map[string]any{"iss": "i", "aud": "a", "sub": "x", "exp": time.Now().Add(time.Minute).Unix()}, token.SignOptions{})
	if _, err := a.Authenticate(context.Background(), Credentials{Bearer: tok}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("err = %v", err)
	}
}

func TestBearerFromHeader(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		if got := BearerFromHeader(in); got != want {
			t.Errorf("BearerFromHeader(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCallerNamespace (#14.8): a bearer JWT or client certificate whose
// derived name is a configured API key's caller name (or "anonymous") is
// refused, so it cannot take that caller's policy; other names still pass.
func TestCallerNamespace(t *testing.T) {
	signer, _ := token.GenerateSigner("ES256")
	jwks, _ := token.PublicJWKS(signer)
	keys, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims map[string]any) string {
		base := map[string]any{"iss": "https://issuer.test", "aud": "chainbroker", "sub": "system:serviceaccount:ns:agent",
			"exp": time.Now().Add(time.Minute).Unix()}
		for k, v := range claims {
			base[k] = v
		}
		tok, err := signer.Sign(base, token.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	newAuth := func(claim string) *Authenticator {
		a, err := New(Config{
			APIKeys:        []APIKey{{Name: "payments-agent", SHA256: HashAPIKey("pay-key")}},
			JWT:            &JWTIssuer{Issuer: "https://issuer.test", Audience: "chainbroker", Keys: keys, CallerClaim: claim},
			MTLS:           true,
			AllowAnonymous: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	spiffe, _ := url.Parse("spiffe://example.org/payments-agent")
	reservedURI, _ := url.Parse("payments-agent")
	tests := []struct {
		name   string
		a      *Authenticator
		creds  Credentials
		caller string // "" when refused
	}{
		{"api key names its caller", newAuth(""), Credentials{APIKey: "pay-key"}, "payments-agent"},
		{"jwt client_id equal to an api key name", newAuth("client_id"), Credentials{Bearer: sign(map[string]any{"client_id": "payments-agent"})}, ""},
		{"jwt sub equal to an api key name", newAuth("sub"), Credentials{Bearer: sign(map[string]any{"sub": "payments-agent"})}, ""},
		{"jwt azp equal to an api key name", newAuth("azp"), Credentials{Bearer: sign(map[string]any{"azp": "payments-agent"})}, ""},
		{"jwt sub anonymous", newAuth("sub"), Credentials{Bearer: sign(map[string]any{"sub": "anonymous"})}, ""},
		{"jwt other client_id", newAuth("client_id"), Credentials{Bearer: sign(map[string]any{"client_id": "payments-agent-2"})}, "payments-agent-2"},
		{"jwt name differing in case is another name", newAuth("sub"), Credentials{Bearer: sign(map[string]any{"sub": "Payments-Agent"})}, "Payments-Agent"},
		{"mtls dns san equal to an api key name", newAuth(""), Credentials{PeerChain: []*x509.Certificate{{DNSNames: []string{"payments-agent"}}}}, ""},
		{"mtls uri san equal to an api key name", newAuth(""), Credentials{PeerChain: []*x509.Certificate{{URIs: []*url.URL{reservedURI}}}}, ""},
		{"mtls dns san anonymous", newAuth(""), Credentials{PeerChain: []*x509.Certificate{{DNSNames: []string{"anonymous"}}}}, ""},
		{"mtls spiffe id", newAuth(""), Credentials{PeerChain: []*x509.Certificate{{URIs: []*url.URL{spiffe}}}}, "spiffe://example.org/payments-agent"},
		{"anonymous without credentials", newAuth(""), Credentials{}, Anonymous},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.a.Authenticate(context.Background(), tt.creds)
			if tt.caller == "" {
				if !errors.Is(err, ErrReservedName) || !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("got %+v, %v; want ErrReservedName (unauthenticated)", c, err)
				}
				return
			}
			if err != nil || c.Name != tt.caller {
				t.Fatalf("got %+v, %v; want %s", c, err, tt.caller)
			}
		})
	}
}

func TestNewRefusesAmbiguousAPIKeyNames(t *testing.T) {
	for name, keys := range map[string][]APIKey{
		"anonymous": {{Name: Anonymous, SHA256: HashAPIKey("x")}},
		"duplicate": {{Name: "a", SHA256: HashAPIKey("x")}, {Name: "a", SHA256: HashAPIKey("y")}},
	} {
		if _, err := New(Config{APIKeys: keys}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
