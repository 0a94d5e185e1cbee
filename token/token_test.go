package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer is a real loopback JWKS endpoint that counts requests.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	doc    atomic.Pointer[[]byte]
	status atomic.Int32
	delay  atomic.Int64 // nanoseconds
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.setDoc(doc)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if d := s.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s.status.Load()))
		_, _ = w.Write(*s.doc.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setDoc(doc []byte) { s.doc.Store(&doc) }

// fakeClock drives the refresh rate limit deterministically.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func remoteVerifier(t *testing.T, url string, interval time.Duration) (*Verifier, *fakeClock) {
	t.Helper()
	v := NewRemoteVerifier(RemoteKeys{URL: url, MinRefreshInterval: interval, Timeout: 2 * time.Second}, nil)
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	v.now = clk.now
	return v, clk
}

func mustSigner(t testing.TB, alg string) *Signer {
	t.Helper()
	s, err := GenerateSigner(alg)
	if err != nil {
		t.Fatalf("GenerateSigner(%s): %v", alg, err)
	}
	return s
}

func mustJWKS(t testing.TB, signers ...*Signer) []byte {
	t.Helper()
	b, err := PublicJWKS(signers...)
	if err != nil {
		t.Fatalf("PublicJWKS: %v", err)
	}
	return b
}

func mustSign(t testing.TB, s *Signer, claims map[string]any, opts SignOptions) string {
	t.Helper()
	tok, err := s.Sign(claims, opts)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

func baseClaims() map[string]any {
	return map[string]any{
		"iss": "https://a.example", "sub": "alice", "aud": "https://b.example",
		"exp": 1_900_000_000, "iat": 1_800_000_000, "jti": "j-1",
	}
}

func enc(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// handSign builds a compact JWS with an arbitrary header, signed by s's key
// with s's algorithm (bypassing Sign's fixed header).
func handSign(t *testing.T, s *Signer, header map[string]any, claims map[string]any) string {
	t.Helper()
	input := enc(header) + "." + enc(claims)
	sig, err := s.impl.Sign([]byte(input), s.key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			s := mustSigner(t, alg)
			v, err := NewStaticVerifier(mustJWKS(t, s), nil)
			if err != nil {
				t.Fatal(err)
			}
			claims := baseClaims()
			claims["client_id"] = "broker"
			claims["azp"] = "agent"
			claims["scope"] = "read write"
			claims["nbf"] = 1_799_999_999
			compact := mustSign(t, s, claims, SignOptions{})
			tok, err := v.Verify(context.Background(), compact)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := Token{
				Header: Header{Alg: alg, Kid: s.KeyID(), Typ: "JWT"},
				Claims: Claims{
					Issuer: "https://a.example", Subject: "alice", Audience: []string{"https://b.example"},
					Expiry: time.Unix(1_900_000_000, 0), NotBefore: time.Unix(1_799_999_999, 0),
					IssuedAt: time.Unix(1_800_000_000, 0), JTI: "j-1", ClientID: "broker", AZP: "agent",
					Scope: "read write",
				},
				Verified: true,
			}
			got := *tok
			got.members = nil // compared through Claim below
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Errorf("token\n got %+v\nwant %+v", got, want)
			}
			if v, ok := tok.StringClaim("azp"); !ok || v != "agent" {
				t.Errorf("StringClaim(azp) = %q, %v", v, ok)
			}
			if _, ok := tok.Claim("AZP"); ok {
				t.Error("claim names are case-sensitive")
			}
			if s.Alg() != alg {
				t.Errorf("Alg() = %q", s.Alg())
			}
			// The same token through PEM public key configuration.
			der, err := x509.MarshalPKIXPublicKey(s.key.(crypto.Signer).Public())
			if err != nil {
				t.Fatal(err)
			}
			pv, err := NewStaticVerifier(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pv.Verify(context.Background(), compact); err != nil {
				t.Errorf("PEM verifier: %v", err)
			}
		})
	}
}

func TestStaticVerifierCertificatePEM(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: bigOne(), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewStaticVerifier(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(key, "ES256", "any-kid")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mustSign(t, s, baseClaims(), SignOptions{})); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	other := mustSigner(t, "ES256")
	if _, err := v.Verify(context.Background(), mustSign(t, other, baseClaims(), SignOptions{})); !errors.Is(err, ErrSignature) {
		t.Fatalf("other key: got %v, want ErrSignature", err)
	}
}

func TestStaticVerifierRejectsBadConfig(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	privPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	for name, in := range map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("hello"),
		"private key PEM": privPEM,
		"empty JWKS":      []byte(`{"keys":[]}`),
		"only enc keys":   mustEncOnlyJWKS(t),
		"only oct keys":   []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`),
		"bad JSON":        []byte(`{"keys":[`),
	} {
		if _, err := NewStaticVerifier(in, nil); err == nil {
			t.Errorf("%s: NewStaticVerifier succeeded", name)
		}
	}
}

func mustEncOnlyJWKS(t *testing.T) []byte {
	s := mustSigner(t, "RS256")
	var doc map[string][]map[string]any
	if err := json.Unmarshal(mustJWKS(t, s), &doc); err != nil {
		t.Fatal(err)
	}
	doc["keys"][0]["use"] = "enc"
	doc["keys"][0]["alg"] = "RSA-OAEP"
	b, _ := json.Marshal(doc)
	return b
}

func TestWrongKeySameKid(t *testing.T) {
	good, _ := GenerateSigner("RS256")
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	evil, err := NewSigner(k, "RS256", good.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewStaticVerifier(mustJWKS(t, good), nil)
	_, err = v.Verify(context.Background(), mustSign(t, evil, baseClaims(), SignOptions{}))
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("got %v, want ErrSignature", err)
	}
}

func TestTamperedPayload(t *testing.T) {
	s := mustSigner(t, "ES256")
	v, _ := NewStaticVerifier(mustJWKS(t, s), nil)
	parts := strings.Split(mustSign(t, s, baseClaims(), SignOptions{}), ".")
	c := baseClaims()
	c["sub"] = "mallory"
	parts[1] = enc(c)
	_, err := v.Verify(context.Background(), strings.Join(parts, "."))
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("got %v, want ErrSignature", err)
	}
	// Flipped signature bytes.
	parts = strings.Split(mustSign(t, s, baseClaims(), SignOptions{}), ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[5] ^= 0xff
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	if _, err := v.Verify(context.Background(), strings.Join(parts, ".")); !errors.Is(err, ErrSignature) {
		t.Fatalf("flipped signature: got %v, want ErrSignature", err)
	}
}

func TestAlgorithmPolicy(t *testing.T) {
	rs := mustSigner(t, "RS256")
	jwks := mustJWKS(t, rs)
	hs, err := NewHMACSigner([]byte("0123456789abcdef0123456789abcdef"), "HS256", rs.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	noneTok := enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." + enc(baseClaims()) + "."
	noneTokSig := enc(map[string]any{"alg": "none", "kid": rs.KeyID()}) + "." + enc(baseClaims()) + ".AAAA"
	psTok := handSign(t, rs, map[string]any{"alg": "PS256", "kid": rs.KeyID()}, baseClaims())

	tests := []struct {
		name    string
		allowed []string
		token   string
		want    error
	}{
		{"none, empty signature", nil, noneTok, ErrAlgNotAllowed},
		{"none with signature", nil, noneTokSig, ErrAlgNotAllowed},
		{"none even when listed", []string{"none", "RS256"}, noneTokSig, ErrAlgNotAllowed},
		{"HS256 against RSA keys", nil, mustSign(t, hs, baseClaims(), SignOptions{}), ErrAlgNotAllowed},
		{"HS256 listed but no secret", []string{"HS256", "RS256"}, mustSign(t, hs, baseClaims(), SignOptions{}), ErrAlgNotAllowed},
		{"RS256 not in allow list", []string{"ES256"}, mustSign(t, rs, baseClaims(), SignOptions{}), ErrAlgNotAllowed},
		{"unknown alg", nil, handSign(t, rs, map[string]any{"alg": "RS1", "kid": rs.KeyID()}, baseClaims()), ErrAlgNotAllowed},
		{"JWK alg RS256 refuses PS256", nil, psTok, ErrKeyUnknown},
		{"RS256 allowed", []string{"RS256"}, mustSign(t, rs, baseClaims(), SignOptions{}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewStaticVerifier(jwks, tt.allowed)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), tt.token)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHMACVerifier(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	hs, _ := NewHMACSigner(secret, "HS256", "")
	v, err := NewHMACVerifier(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mustSign(t, hs, baseClaims(), SignOptions{})); err != nil {
		t.Fatalf("HS256: %v", err)
	}
	other, _ := NewHMACSigner([]byte("another secret, another secret!!"), "HS256", "")
	if _, err := v.Verify(context.Background(), mustSign(t, other, baseClaims(), SignOptions{})); !errors.Is(err, ErrSignature) {
		t.Fatalf("other secret: got %v, want ErrSignature", err)
	}
	rs := mustSigner(t, "RS256")
	if _, err := v.Verify(context.Background(), mustSign(t, rs, baseClaims(), SignOptions{})); !errors.Is(err, ErrAlgNotAllowed) {
		t.Fatalf("RS256 at HMAC verifier: got %v, want ErrAlgNotAllowed", err)
	}
	if b, _ := PublicJWKS(hs); strings.Contains(string(b), `"k"`) || string(b) != `{"keys":[]}` {
		t.Fatalf("PublicJWKS(hmac) = %s", b)
	}
	if _, err := NewHMACVerifier(nil, nil); err == nil {
		t.Fatal("empty secret accepted")
	}
}

func TestMalformed(t *testing.T) {
	s := mustSigner(t, "ES256")
	v, _ := NewStaticVerifier(mustJWKS(t, s), nil)
	good := mustSign(t, s, baseClaims(), SignOptions{})
	parts := strings.Split(good, ".")
	hdr := parts[0]
	b64s := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"bad base64 header", "!!!." + parts[1] + "." + parts[2], ErrMalformed},
		{"bad base64 payload", hdr + ".@@@." + parts[2], ErrMalformed},
		{"padded base64 payload", hdr + "." + base64.URLEncoding.EncodeToString([]byte(`{"a":1}`)) + "." + parts[2], ErrMalformed},
		{"bad base64 signature", hdr + "." + parts[1] + ".%%", ErrMalformed},
		{"non-JSON payload", hdr + "." + b64s([]byte("hello")) + "." + parts[2], ErrMalformed},
		{"payload JSON array", hdr + "." + b64s([]byte(`[{"sub":"x"}]`)) + "." + parts[2], ErrMalformed},
		{"payload JSON null", hdr + "." + b64s([]byte(`null`)) + "." + parts[2], ErrMalformed},
		{"payload exp string", hdr + "." + b64s([]byte(`{"exp":"soon"}`)) + "." + parts[2], ErrMalformed},
		{"payload aud number", hdr + "." + b64s([]byte(`{"aud":1}`)) + "." + parts[2], ErrMalformed},
		{"header not JSON", b64s([]byte("alg=ES256")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"header array", b64s([]byte(`["ES256"]`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"header without alg", b64s([]byte(`{"typ":"JWT"}`)) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","signatures":[]}`, ErrMalformed},
		{"too large", hdr + "." + strings.Repeat("A", MaxTokenBytes) + "." + parts[2], ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseUnverified(tt.token); !errors.Is(err, tt.want) {
				t.Errorf("ParseUnverified: got %v, want %v", err, tt.want)
			}
			if _, err := v.Verify(context.Background(), tt.token); !errors.Is(err, tt.want) {
				t.Errorf("Verify: got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := v.Verify(context.Background(), hdr+"."+parts[1]+"."); !errors.Is(err, ErrSignature) {
		t.Errorf("empty signature: got %v, want ErrSignature", err)
	}
	// crit is understood by nobody here: refused at Verify.
	crit := handSign(t, s, map[string]any{"alg": "ES256", "kid": s.KeyID(), "crit": []string{"exp"}, "exp": 1}, baseClaims())
	if _, err := v.Verify(context.Background(), crit); !errors.Is(err, ErrMalformed) {
		t.Errorf("crit: got %v, want ErrMalformed", err)
	}
	if _, err := ParseUnverified(good); err != nil {
		t.Errorf("good token: %v", err)
	}
	// Exactly at the bound is fine as far as size goes.
	if _, err := ParseUnverified(strings.Repeat("A", MaxTokenBytes)); errors.Is(err, ErrTooLarge) {
		t.Errorf("token of MaxTokenBytes reported too large")
	}
}

func TestClaimsParsing(t *testing.T) {
	s := mustSigner(t, "EdDSA")
	tests := []struct {
		name   string
		claims map[string]any
		check  func(t *testing.T, c Claims)
	}{
		{"aud string", map[string]any{"aud": "b"}, func(t *testing.T, c Claims) {
			if len(c.Audience) != 1 || c.Audience[0] != "b" {
				t.Errorf("aud = %q", c.Audience)
			}
		}},
		{"aud array", map[string]any{"aud": []string{"b", "c"}}, func(t *testing.T, c Claims) {
			if len(c.Audience) != 2 || c.Audience[0] != "b" || c.Audience[1] != "c" {
				t.Errorf("aud = %q", c.Audience)
			}
		}},
		{"aud absent", map[string]any{"sub": "x"}, func(t *testing.T, c Claims) {
			if c.Audience == nil || len(c.Audience) != 0 {
				t.Errorf("aud = %#v, want empty non-nil slice", c.Audience)
			}
		}},
		{"exp absent", map[string]any{"sub": "x"}, func(t *testing.T, c Claims) {
			if !c.Expiry.IsZero() || !c.IssuedAt.IsZero() || !c.NotBefore.IsZero() {
				t.Errorf("times = %v %v %v, want zero", c.Expiry, c.IssuedAt, c.NotBefore)
			}
		}},
		{"exp null", map[string]any{"exp": nil}, func(t *testing.T, c Claims) {
			if !c.Expiry.IsZero() {
				t.Errorf("exp = %v", c.Expiry)
			}
		}},
		{"exp float", map[string]any{"exp": 1700000000.5}, func(t *testing.T, c Claims) {
			if want := time.Unix(1700000000, 500_000_000); !c.Expiry.Equal(want) {
				t.Errorf("exp = %v, want %v", c.Expiry, want)
			}
		}},
		{"exp exponent", map[string]any{"exp": json.Number("1.7e9")}, func(t *testing.T, c Claims) {
			if want := time.Unix(1_700_000_000, 0); !c.Expiry.Equal(want) {
				t.Errorf("exp = %v, want %v", c.Expiry, want)
			}
		}},
		{"scope array", map[string]any{"scope": []string{"a", "b"}}, func(t *testing.T, c Claims) {
			if c.Scope != "a b" {
				t.Errorf("scope = %q", c.Scope)
			}
		}},
	}
	v, _ := NewStaticVerifier(mustJWKS(t, s), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compact := mustSign(t, s, tt.claims, SignOptions{})
			tok, err := ParseUnverified(compact)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Verified {
				t.Error("ParseUnverified set Verified")
			}
			tt.check(t, tok.Claims)
			vt, err := v.Verify(context.Background(), compact)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, vt.Claims)
		})
	}
}

func TestRemoteUnknownKidRefreshIsRateLimited(t *testing.T) {
	s := mustSigner(t, "RS256")
	srv := newJWKSServer(t, mustJWKS(t, s))
	v, clk := remoteVerifier(t, srv.URL, 30*time.Second)
	ctx := context.Background()

	good := mustSign(t, s, baseClaims(), SignOptions{})
	for range 3 {
		if _, err := v.Verify(ctx, good); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("after lazy first fetch and cached verifies: %d fetches, want 1", n)
	}

	// Within the interval, an unknown kid does not refetch.
	unknown1 := mustSign(t, s, baseClaims(), SignOptions{Kid: "unknown-1"})
	if _, err := v.Verify(ctx, unknown1); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("got %v, want ErrKeyUnknown", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("unknown kid right after the first fetch: %d fetches, want 1", n)
	}

	clk.advance(31 * time.Second)
	if _, err := v.Verify(ctx, unknown1); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("got %v, want ErrKeyUnknown", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("unknown kid after the interval: %d fetches, want 2 (exactly one refetch)", n)
	}
	unknown2 := mustSign(t, s, baseClaims(), SignOptions{Kid: "unknown-2"})
	if _, err := v.Verify(ctx, unknown2); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("got %v, want ErrKeyUnknown", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("second unknown kid immediately after: %d fetches, want 2 (rate limited)", n)
	}
	clk.advance(29 * time.Second)
	_, _ = v.Verify(ctx, unknown2)
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("29s later: %d fetches, want 2", n)
	}
	clk.advance(1 * time.Second)
	if _, err := v.Verify(ctx, unknown2); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("got %v, want ErrKeyUnknown", err)
	}
	if n := srv.hits.Load(); n != 3 {
		t.Fatalf("after the interval: %d fetches, want 3", n)
	}
	// Known kids keep verifying without fetches.
	if _, err := v.Verify(ctx, good); err != nil || srv.hits.Load() != 3 {
		t.Fatalf("good token: err %v, fetches %d", err, srv.hits.Load())
	}
}

func TestRemoteKeyRotation(t *testing.T) {
	oldS, newS := mustSigner(t, "ES256"), mustSigner(t, "ES256")
	srv := newJWKSServer(t, mustJWKS(t, oldS))
	v, clk := remoteVerifier(t, srv.URL, 30*time.Second)
	ctx := context.Background()
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, mustSign(t, oldS, baseClaims(), SignOptions{})); err != nil {
		t.Fatal(err)
	}
	srv.setDoc(mustJWKS(t, newS))
	newTok := mustSign(t, newS, baseClaims(), SignOptions{})
	clk.advance(12 * time.Second)
	_, err := v.Verify(ctx, newTok)
	var ku *KeyUnknownError
	if !errors.Is(err, ErrKeyUnknown) || !errors.As(err, &ku) || ku.Kid != newS.KeyID() || ku.RefreshIn != 18*time.Second {
		t.Fatalf("new kid within the interval: got %v (%+v), want a KeyUnknownError naming the kid, refetch in 18s", err, ku)
	}
	clk.advance(time.Minute)

	// Many concurrent misses cause a single fetch.
	srv.delay.Store(int64(50 * time.Millisecond))
	before := srv.hits.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(ctx, newTok); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Verify after rotation: %v", err)
	}
	if n := srv.hits.Load() - before; n != 1 {
		t.Fatalf("concurrent misses caused %d fetches, want 1", n)
	}
	// The old key is gone from the new set, which was just fetched: no
	// refetch is pending.
	clk.advance(time.Minute)
	if _, err := v.Verify(ctx, mustSign(t, oldS, baseClaims(), SignOptions{})); !errors.As(err, &ku) || ku.RefreshIn != 0 {
		t.Fatalf("old kid after rotation: got %v, want ErrKeyUnknown with no refetch pending", err)
	}
}

func TestRemoteKeysUnavailable(t *testing.T) {
	s := mustSigner(t, "RS256")
	tok := mustSign(t, s, baseClaims(), SignOptions{})
	three := mustJWKS(t, s, mustSigner(t, "ES256"), mustSigner(t, "EdDSA"))

	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	tests := []struct {
		name  string
		url   func(t *testing.T) string
		keys  RemoteKeys
		setup func(s *jwksServer)
	}{
		{"server down", func(*testing.T) string { return downURL }, RemoteKeys{}, nil},
		{"HTTP 500", nil, RemoteKeys{}, func(s *jwksServer) { s.status.Store(500) }},
		{"HTTP 404", nil, RemoteKeys{}, func(s *jwksServer) { s.status.Store(404) }},
		{"not JSON", nil, RemoteKeys{}, func(s *jwksServer) { s.setDoc([]byte("<html>")) }},
		{"oversized", nil, RemoteKeys{MaxBytes: 100}, nil},
		{"too many keys", nil, RemoteKeys{MaxKeys: 2}, func(s *jwksServer) { s.setDoc(three) }},
		{"timeout", nil, RemoteKeys{Timeout: 50 * time.Millisecond}, func(s *jwksServer) { s.delay.Store(int64(time.Second)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.keys
			if tt.url != nil {
				keys.URL = tt.url(t)
			} else {
				srv := newJWKSServer(t, mustJWKS(t, s))
				if tt.setup != nil {
					tt.setup(srv)
				}
				keys.URL = srv.URL
			}
			v := NewRemoteVerifier(keys, nil)
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("Verify: got %v, want ErrKeysUnavailable", err)
			}
			if err := v.Refresh(context.Background()); !errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("Refresh: got %v, want ErrKeysUnavailable", err)
			}
		})
	}
}

func TestRemoteFailedRefreshKeepsKeys(t *testing.T) {
	s := mustSigner(t, "RS256")
	srv := newJWKSServer(t, mustJWKS(t, s))
	v, clk := remoteVerifier(t, srv.URL, time.Second)
	ctx := context.Background()
	tok := mustSign(t, s, baseClaims(), SignOptions{})
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	srv.status.Store(503)
	clk.advance(time.Minute)
	if _, err := v.Verify(ctx, mustSign(t, s, baseClaims(), SignOptions{Kid: "new"})); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("unknown kid with JWKS down: got %v, want ErrKeysUnavailable", err)
	}
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("known kid with JWKS down: %v", err)
	}
}

// A token's jku/x5u/jwk headers must never cause a fetch nor supply a key.
func TestIgnoresTokenKeyHeaders(t *testing.T) {
	legit := mustSigner(t, "RS256")
	attacker := mustSigner(t, "RS256")
	attackerJWK, _ := attacker.PublicJWK()
	evil := newJWKSServer(t, mustJWKS(t, attacker))
	trusted := newJWKSServer(t, mustJWKS(t, legit))
	v, _ := remoteVerifier(t, trusted.URL, time.Nanosecond)
	ctx := context.Background()

	hostile := func(s *Signer, kid string) map[string]any {
		return map[string]any{
			"alg": "RS256", "kid": kid, "typ": "JWT",
			"jku": evil.URL, "x5u": evil.URL + "/cert.pem", "jwk": json.RawMessage(attackerJWK),
		}
	}
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"attacker key and kid", handSign(t, attacker, hostile(attacker, attacker.KeyID()), baseClaims()), ErrKeyUnknown},
		{"attacker key, legit kid", handSign(t, attacker, hostile(attacker, legit.KeyID()), baseClaims()), ErrSignature},
		{"attacker key, no kid", handSign(t, attacker, hostile(attacker, ""), baseClaims()), ErrSignature},
		{"legit key with jku", handSign(t, legit, hostile(legit, legit.KeyID()), baseClaims()), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(ctx, tt.token)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if n := evil.hits.Load(); n != 0 {
				t.Fatalf("jku/x5u server received %d requests", n)
			}
		})
	}
	if trusted.hits.Load() == 0 {
		t.Fatal("configured JWKS was never fetched")
	}
}

func TestNoKidSelection(t *testing.T) {
	a, b := mustSigner(t, "ES256"), mustSigner(t, "ES256")
	ed := mustSigner(t, "EdDSA")
	ctx := context.Background()
	noKid := func(s *Signer) string {
		return handSign(t, s, map[string]any{"alg": s.Alg(), "typ": "JWT"}, baseClaims())
	}
	one, _ := NewStaticVerifier(mustJWKS(t, a, ed), nil)
	if _, err := one.Verify(ctx, noKid(a)); err != nil {
		t.Fatalf("single ES256 key, no kid: %v", err)
	}
	if _, err := one.Verify(ctx, noKid(b)); !errors.Is(err, ErrSignature) {
		t.Fatalf("single ES256 key, other signer: got %v, want ErrSignature", err)
	}
	two, _ := NewStaticVerifier(mustJWKS(t, a, b), nil)
	if _, err := two.Verify(ctx, noKid(a)); !errors.Is(err, ErrKeyUnknown) {
		t.Fatalf("two ES256 keys, no kid: got %v, want ErrKeyUnknown", err)
	}
	if _, err := two.Verify(ctx, mustSign(t, b, baseClaims(), SignOptions{})); err != nil {
		t.Fatalf("two keys, kid b: %v", err)
	}
}

func TestConcurrentVerify(t *testing.T) {
	signers := []*Signer{mustSigner(t, "RS256"), mustSigner(t, "ES256"), mustSigner(t, "EdDSA")}
	srv := newJWKSServer(t, mustJWKS(t, signers...))
	v := NewRemoteVerifier(RemoteKeys{URL: srv.URL}, nil)
	var tokens []string
	for _, s := range signers {
		tokens = append(tokens, mustSign(t, s, baseClaims(), SignOptions{}))
	}
	var wg sync.WaitGroup
	var failures atomic.Int64
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := v.Verify(context.Background(), tokens[(g+i)%len(tokens)]); err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d verifications failed", n)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}
}

func TestVerifyContextCanceledWhileWaiting(t *testing.T) {
	s := mustSigner(t, "ES256")
	srv := newJWKSServer(t, mustJWKS(t, s))
	srv.delay.Store(int64(300 * time.Millisecond))
	v := NewRemoteVerifier(RemoteKeys{URL: srv.URL}, nil)
	tok := mustSign(t, s, baseClaims(), SignOptions{})
	go func() { _, _ = v.Verify(context.Background(), tok) }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, tok)
	if !errors.Is(err, ErrKeysUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrKeysUnavailable wrapping DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("Verify took %v after its deadline", d)
	}
	// The abandoned wait recorded nothing: a patient caller succeeds.
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("patient Verify: %v", err)
	}
}

func TestSignerKeyChecks(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name string
		key  crypto.Signer
		alg  string
		ok   bool
	}{
		{"RSA RS256", rsaKey, "RS256", true},
		{"RSA PS512", rsaKey, "PS512", true},
		{"RSA ES256", rsaKey, "ES256", false},
		{"RSA EdDSA", rsaKey, "EdDSA", false},
		{"RSA 1024", smallRSA, "RS256", false},
		{"P-256 ES256", p256, "ES256", true},
		{"P-256 ES384", p256, "ES384", false},
		{"P-256 RS256", p256, "RS256", false},
		{"Ed25519 EdDSA", edKey, "EdDSA", true},
		{"Ed25519 ES256", edKey, "ES256", false},
		{"RSA HS256", rsaKey, "HS256", false},
		{"RSA none", rsaKey, "none", false},
		{"nil key", nil, "RS256", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSigner(tt.key, tt.alg, "")
			if (err == nil) != tt.ok {
				t.Fatalf("NewSigner: err %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if _, err := GenerateSigner("HS256"); err == nil {
		t.Error("GenerateSigner(HS256) succeeded")
	}
	if _, err := NewHMACSigner([]byte("s"), "RS256", ""); err == nil {
		t.Error("NewHMACSigner(RS256) succeeded")
	}
}

func TestSignerKidIsRFC7638Thumbprint(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := NewSigner(key, "ES256", "")
	if err != nil {
		t.Fatal(err)
	}
	// RFC 7638 §3.2: members crv, kty, x, y in lexicographic order, no spaces.
	pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
	pub := key.Public().(*ecdsa.PublicKey)
	raw, err := pub.Bytes() // uncompressed point 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	x, y := pad(raw[1:33]), pad(raw[33:])
	canon := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`,
		base64.RawURLEncoding.EncodeToString(x), base64.RawURLEncoding.EncodeToString(y))
	sum := sha256.Sum256([]byte(canon))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); s.KeyID() != want {
		t.Fatalf("kid = %s, want %s", s.KeyID(), want)
	}
	named, _ := NewSigner(key, "ES256", "my-kid")
	if named.KeyID() != "my-kid" {
		t.Fatalf("kid = %s", named.KeyID())
	}
}

func TestSignHeader(t *testing.T) {
	s := mustSigner(t, "ES256")
	tests := []struct {
		opts     SignOptions
		typ, kid string
	}{
		{SignOptions{}, "JWT", s.KeyID()},
		{SignOptions{Typ: TypeIDJAG}, TypeIDJAG, s.KeyID()},
		{SignOptions{Kid: "lie"}, "JWT", "lie"},
	}
	for _, tt := range tests {
		tok, err := ParseUnverified(mustSign(t, s, map[string]any{"aud": []string{"x"}}, tt.opts))
		if err != nil {
			t.Fatal(err)
		}
		if tok.Header != (Header{Alg: "ES256", Kid: tt.kid, Typ: tt.typ}) {
			t.Errorf("opts %+v: header %+v", tt.opts, tok.Header)
		}
	}
	if _, err := s.Sign(map[string]any{"bad": make(chan int)}, SignOptions{}); err == nil {
		t.Error("unmarshalable claims accepted")
	}
	tok, err := s.Sign(nil, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Split(tok, ".")[1]; p != enc(map[string]any{}) {
		t.Errorf("nil claims payload = %s", p)
	}
}

func TestPublicJWKS(t *testing.T) {
	signers := []*Signer{mustSigner(t, "RS256"), mustSigner(t, "PS384"), mustSigner(t, "ES512"), mustSigner(t, "EdDSA")}
	hs, _ := NewHMACSigner([]byte("secret-secret-secret-secret-1234"), "HS256", "h")
	doc := mustJWKS(t, append(signers, hs)...)
	var parsed struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &parsed); err != nil {
		t.Fatal(err)
	}
	if len(parsed.Keys) != len(signers) {
		t.Fatalf("%d keys, want %d: %s", len(parsed.Keys), len(signers), doc)
	}
	wantKty := []string{"RSA", "RSA", "EC", "OKP"}
	for i, k := range parsed.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %d has private member %q", i, private)
			}
		}
		if k["kty"] != wantKty[i] || k["kid"] != signers[i].KeyID() || k["alg"] != signers[i].Alg() || k["use"] != "sig" {
			t.Errorf("key %d = %v", i, k)
		}
	}
}

func TestLoadSignerPEM(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	tests := []struct {
		name string
		pem  []byte
		alg  string
		ok   bool
	}{
		{"PKCS#8 RSA", pkcs8(rsaKey), "RS256", true},
		{"PKCS#1 RSA", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), "PS256", true},
		{"SEC1 EC", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), "ES384", true},
		{"PKCS#8 EC", pkcs8(ecKey), "ES384", true},
		{"PKCS#8 Ed25519", pkcs8(edKey), "EdDSA", true},
		{"alg mismatch", pkcs8(ecKey), "ES256", false},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), "RS256", false},
		{"not PEM", []byte("nope"), "RS256", false},
		{"corrupt", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "RS256", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := LoadSignerPEM(tt.pem, tt.alg, "kid-1")
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			v, _ := NewStaticVerifier(mustJWKS(t, s), nil)
			if _, err := v.Verify(context.Background(), mustSign(t, s, baseClaims(), SignOptions{})); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestErrorsDoNotEchoHugeInput(t *testing.T) {
	s := mustSigner(t, "ES256")
	v, _ := NewStaticVerifier(mustJWKS(t, s), nil)
	long := strings.Repeat("k", 5000)
	_, err := v.Verify(context.Background(), mustSign(t, s, baseClaims(), SignOptions{Kid: long}))
	if !errors.Is(err, ErrKeyUnknown) || len(err.Error()) > 300 {
		t.Fatalf("err = %.400v", err)
	}
}

func BenchmarkVerifyRS256(b *testing.B) {
	s := mustSigner(b, "RS256")
	v, err := NewStaticVerifier(mustJWKS(b, s), nil)
	if err != nil {
		b.Fatal(err)
	}
	tok := mustSign(b, s, baseClaims(), SignOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	s := mustSigner(b, "ES256")
	v, _ := NewStaticVerifier(mustJWKS(b, s), nil)
	tok := mustSign(b, s, baseClaims(), SignOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSign(b *testing.B, alg string) {
	s := mustSigner(b, alg)
	claims := baseClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(claims, SignOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignES256(b *testing.B) { benchSign(b, "ES256") }
func BenchmarkSignRS256(b *testing.B) { benchSign(b, "RS256") }
func BenchmarkSignEdDSA(b *testing.B) { benchSign(b, "EdDSA") }

func bigOne() *big.Int { return big.NewInt(1) }

func TestNewSignerDefaultAlg(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "ES384", "EdDSA"} {
		s, err := GenerateSigner(alg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := NewSigner(s.key.(crypto.Signer), "", "")
		if err != nil || d.Alg() != alg {
			t.Errorf("key of a %s signer: default alg %v, %v", alg, d, err)
		}
	}
}

// Member names are case-sensitive: "ISS" is not "iss", "ALG" is not "alg".
func TestMemberNamesCaseSensitive(t *testing.T) {
	enc := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	tok, err := ParseUnverified(enc(`{"alg":"RS256"}`) + "." + enc(`{"iss":"a","ISS":"b","EXP":5,"Sub":"x"}`) + ".c2ln")
	if err != nil {
		t.Fatal(err)
	}
	if c := tok.Claims; c.Issuer != "a" || !c.Expiry.IsZero() || c.Subject != "" {
		t.Errorf("claims = %+v: case variants were read as registered claims", c)
	}
	if _, err := ParseUnverified(enc(`{"ALG":"RS256"}`) + "." + enc(`{}`) + ".c2ln"); !errors.Is(err, ErrMalformed) {
		t.Errorf(`{"ALG":...} without alg: %v, want ErrMalformed`, err)
	}
}

// TestNumericDateMustBeJSONNumber: RFC 7519 §2 defines a NumericDate as a
// JSON numeric value. A date given as a JSON string, even one holding only
// digits, is refused by ParseUnverified and by Verify, for exp, iat and nbf
// alike; encoding/json would otherwise decode "1764000000" into json.Number.
func TestNumericDateMustBeJSONNumber(t *testing.T) {
	s := mustSigner(t, "ES256")
	v, _ := NewStaticVerifier(mustJWKS(t, s), nil)
	tests := []struct {
		name  string
		value any
		ok    bool
	}{
		{"integer", 1_764_000_000, true},
		{"fraction", 1_764_000_000.25, true},
		{"negative", -1, true},
		{"null", nil, true},
		{"digits in a string", "1764000000", false},
		{"fraction in a string", "1764000000.5", false},
		{"exponent in a string", "1.764e9", false},
		{"string with spaces", " 1764000000 ", false},
		{"empty string", "", false},
		{"boolean", true, false},
		{"object", map[string]any{"n": 1}, false},
		{"array", []int{1_764_000_000}, false},
	}
	for _, claim := range []string{"exp", "iat", "nbf"} {
		for _, tt := range tests {
			t.Run(claim+"/"+tt.name, func(t *testing.T) {
				c := baseClaims()
				c[claim] = tt.value
				compact := mustSign(t, s, c, SignOptions{})
				_, perr := ParseUnverified(compact)
				_, verr := v.Verify(context.Background(), compact)
				for what, err := range map[string]error{"ParseUnverified": perr, "Verify": verr} {
					switch {
					case tt.ok && err != nil:
						t.Errorf("%s: %v, want accepted", what, err)
					case !tt.ok && !errors.Is(err, ErrMalformed):
						t.Errorf("%s: got %v, want ErrMalformed", what, err)
					case !tt.ok && !strings.Contains(err.Error(), claim):
						t.Errorf("%s: error %q does not name the claim %s", what, err, claim)
					}
				}
			})
		}
	}
}

// A JWKS URL answering a redirect to another server: the redirect is not
// followed (neither with the default client nor with a caller's client that
// would follow it), the fetch fails with a clear error, and the other
// server sees no request.
func TestRemoteKeysRefuseRedirects(t *testing.T) {
	s := mustSigner(t, "RS256")
	tok := mustSign(t, s, baseClaims(), SignOptions{})
	other := newJWKSServer(t, mustJWKS(t, s))
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/jwks", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	for name, hc := range map[string]*http.Client{"default client": nil, "caller's client": {}} {
		t.Run(name, func(t *testing.T) {
			v := NewRemoteVerifier(RemoteKeys{URL: redirector.URL + "/certs", HTTPClient: hc}, nil)
			_, err := v.Verify(context.Background(), tok)
			if !errors.Is(err, ErrKeysUnavailable) || !strings.Contains(err.Error(), "HTTP 302 redirect not followed") {
				t.Fatalf("got %v, want ErrKeysUnavailable naming the refused redirect", err)
			}
			if n := other.hits.Load(); n != 0 {
				t.Fatalf("the redirect target saw %d requests", n)
			}
			if hc != nil && hc.CheckRedirect != nil {
				t.Error("the caller's client was modified")
			}
		})
	}
}
