package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

const (
	dpopURL = "https://as.example/realms/c/protocol/openid-connect/token"
	dpopNow = 1_800_000_000
)

func dpopCheck() DPoPCheck {
	return DPoPCheck{Method: "POST", URL: dpopURL, Now: time.Unix(dpopNow, 0)}
}

// rawJWK is the bare public JWK of s as a map, for hand-made headers.
func rawJWK(t *testing.T, s *Signer) map[string]any {
	t.Helper()
	b, err := s.DPoPJWK()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func dpopClaimsAt(iat int64) map[string]any {
	return map[string]any{"jti": "proof-1", "htm": "POST", "htu": dpopURL, "iat": iat}
}

func TestDPoPRoundTrip(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			s := mustSigner(t, alg)
			proof, err := s.DPoPProof("POST", dpopURL, DPoPOptions{JTI: "j-1", IssuedAt: time.Unix(dpopNow, 0),
				Nonce: "n-1", AccessToken: "at"})
			if err != nil {
				t.Fatal(err)
			}
			c := dpopCheck()
			c.Nonce, c.AccessToken = "n-1", "at"
			got, err := VerifyDPoP(proof, c)
			if err != nil {
				t.Fatalf("VerifyDPoP: %v", err)
			}
			want, err := s.Thumbprint()
			if err != nil {
				t.Fatal(err)
			}
			// The default kid is the RFC 7638 thumbprint too (TestSignerKidIsRFC7638Thumbprint).
			if got.Thumbprint != want || want != s.KeyID() {
				t.Errorf("Thumbprint = %q, want %q (kid %q)", got.Thumbprint, want, s.KeyID())
			}
			if got.JTI != "j-1" || got.Method != "POST" || got.URL != dpopURL || got.IssuedAt.Unix() != dpopNow ||
				got.Alg != alg || got.Nonce != "n-1" || got.ATH != AccessTokenHash("at") {
				t.Errorf("proof = %+v", got)
			}
			// The jwk header is bare: no kid, alg, use, and no private member.
			h := strings.Split(proof, ".")[0]
			hb, _ := base64.RawURLEncoding.DecodeString(h)
			var hdr struct {
				JWK map[string]any `json:"jwk"`
			}
			if err := json.Unmarshal(hb, &hdr); err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{"kid", "alg", "use", "d"} {
				if _, ok := hdr.JWK[m]; ok {
					t.Errorf("jwk header has %q", m)
				}
			}
		})
	}
}

// RFC 9449 §7.1's example: the ath of its access token.
func TestAccessTokenHashRFC9449Example(t *testing.T) {
	if got := AccessTokenHash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"); got != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" {
		t.Errorf("ath = %q", got)
	}
}

func TestDPoPRefusals(t *testing.T) {
	es := mustSigner(t, "ES256")
	other := mustSigner(t, "ES256")
	rs := mustSigner(t, "RS256")
	hdr := func(s *Signer, mod func(map[string]any)) map[string]any {
		h := map[string]any{"typ": TypeDPoP, "alg": s.Alg(), "jwk": rawJWK(t, s)}
		if mod != nil {
			mod(h)
		}
		return h
	}
	claims := func(mod func(map[string]any)) map[string]any {
		c := dpopClaimsAt(dpopNow)
		if mod != nil {
			mod(c)
		}
		return c
	}
	privEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privJWK, err := jwk.FromRaw(privEC)
	if err != nil {
		t.Fatal(err)
	}
	privSigner, err := NewSigner(privEC, "ES256", "")
	if err != nil {
		t.Fatal(err)
	}
	valid := handSign(t, es, hdr(es, nil), claims(nil))
	parts := strings.Split(valid, ".")

	tests := []struct {
		name  string
		proof string
		check func(*DPoPCheck)
		want  error
	}{
		{"empty", "", nil, ErrDPoPMalformed},
		{"too large", strings.Repeat("a", MaxDPoPProofBytes+1), nil, ErrTooLarge},
		{"two parts", parts[0] + "." + parts[1], nil, ErrDPoPMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", nil, ErrDPoPMalformed},
		{"header not base64url", "!!." + parts[1] + "." + parts[2], nil, ErrDPoPMalformed},
		{"header not an object", enc([]int{1}) + "." + parts[1] + "." + parts[2], nil, ErrDPoPMalformed},
		{"crit header", handSign(t, es, hdr(es, func(h map[string]any) { h["crit"] = []string{"x"} }), claims(nil)), nil, ErrDPoPMalformed},
		{"typ missing", handSign(t, es, hdr(es, func(h map[string]any) { delete(h, "typ") }), claims(nil)), nil, ErrDPoPType},
		{"typ JWT", handSign(t, es, hdr(es, func(h map[string]any) { h["typ"] = "JWT" }), claims(nil)), nil, ErrDPoPType},
		{"typ other case", handSign(t, es, hdr(es, func(h map[string]any) { h["typ"] = "DPoP+JWT" }), claims(nil)), nil, ErrDPoPType},
		{"alg none", enc(hdr(es, func(h map[string]any) { h["alg"] = "none" })) + "." + parts[1] + "." + parts[2], nil, ErrDPoPAlg},
		{"alg HS256", enc(hdr(es, func(h map[string]any) { h["alg"] = "HS256" })) + "." + parts[1] + "." + parts[2], nil, ErrDPoPAlg},
		{"alg missing", enc(hdr(es, func(h map[string]any) { delete(h, "alg") })) + "." + parts[1] + "." + parts[2], nil, ErrDPoPAlg},
		{"alg not in the allow-list", valid, func(c *DPoPCheck) { c.AllowedAlgs = []string{"RS256"} }, ErrDPoPAlg},
		{"no jwk", handSign(t, es, hdr(es, func(h map[string]any) { delete(h, "jwk") }), claims(nil)), nil, ErrDPoPNoKey},
		{"jwk not an object", handSign(t, es, hdr(es, func(h map[string]any) { h["jwk"] = "key" }), claims(nil)), nil, ErrDPoPKey},
		{"private jwk", handSign(t, privSigner, hdr(privSigner, func(h map[string]any) { h["jwk"] = privJWK }), claims(nil)), nil, ErrDPoPPrivateKey},
		{"symmetric jwk", handSign(t, es, hdr(es, func(h map[string]any) {
			h["jwk"] = map[string]any{"kty": "oct", "k": "c2VjcmV0"}
		}), claims(nil)), nil, ErrDPoPPrivateKey},
		{"jwk of another type than alg", handSign(t, es, hdr(es, func(h map[string]any) { h["jwk"] = rawJWK(t, rs) }), claims(nil)), nil, ErrDPoPKey},
		{"RSA key below 2048 bits", smallRSAProof(t), nil, ErrDPoPKey},
		{"jwk of another key", handSign(t, es, hdr(es, func(h map[string]any) { h["jwk"] = rawJWK(t, other) }), claims(nil)), nil, ErrDPoPSignature},
		{"tampered claims", parts[0] + "." + enc(claims(func(c map[string]any) { c["htu"] = "https://evil.example/" })) + "." + parts[2], nil, ErrDPoPSignature},
		{"jti missing", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { delete(c, "jti") })), nil, ErrDPoPClaims},
		{"jti empty", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["jti"] = "" })), nil, ErrDPoPClaims},
		{"jti too long", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["jti"] = strings.Repeat("j", MaxDPoPJTIBytes+1) })), nil, ErrDPoPClaims},
		{"jti not a string", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["jti"] = 7 })), nil, ErrDPoPClaims},
		{"htm missing", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { delete(c, "htm") })), nil, ErrDPoPClaims},
		{"htu missing", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { delete(c, "htu") })), nil, ErrDPoPClaims},
		{"iat missing", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { delete(c, "iat") })), nil, ErrDPoPClaims},
		{"iat a string", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = "1800000000" })), nil, ErrDPoPClaims},
		{"htm GET", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htm"] = "GET" })), nil, ErrDPoPMethod},
		{"htm lower case", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htm"] = "post" })), nil, ErrDPoPMethod},
		{"htu another path", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htu"] = "https://as.example/realms/c/protocol/openid-connect/userinfo" })), nil, ErrDPoPURL},
		{"htu another host", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htu"] = "https://other.example/realms/c/protocol/openid-connect/token" })), nil, ErrDPoPURL},
		{"htu http for https", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htu"] = "http://as.example/realms/c/protocol/openid-connect/token" })), nil, ErrDPoPURL},
		{"htu relative", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htu"] = "/realms/c/protocol/openid-connect/token" })), nil, ErrDPoPURL},
		{"iat too old", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = dpopNow - 26 })), nil, ErrDPoPNotActive},
		{"iat in the future", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = dpopNow + 16 })), nil, ErrDPoPNotActive},
		{"iat older than a shorter max age", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = dpopNow - 5 })),
			func(c *DPoPCheck) { c.MaxAge, c.ClockSkew = time.Second, time.Second }, ErrDPoPNotActive},
		{"nonce required, absent", valid, func(c *DPoPCheck) { c.Nonce = "n-1" }, ErrDPoPNonce},
		{"nonce required, another", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["nonce"] = "n-0" })),
			func(c *DPoPCheck) { c.Nonce = "n-1" }, ErrDPoPNonce},
		{"ath required, absent", valid, func(c *DPoPCheck) { c.AccessToken = "at" }, ErrDPoPATH},
		{"ath of another token", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["ath"] = AccessTokenHash("other") })),
			func(c *DPoPCheck) { c.AccessToken = "at" }, ErrDPoPATH},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dpopCheck()
			if tt.check != nil {
				tt.check(&c)
			}
			got, err := VerifyDPoP(tt.proof, c)
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrDPoPInvalid) || got != nil {
				t.Fatalf("VerifyDPoP = %v, %v; want %v", got, err, tt.want)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error echoes too much input: %d bytes", len(err.Error()))
			}
		})
	}
	// The control: the valid proof passes, also within the window's edges,
	// with a query on htu, and with the nonce and ath it was asked for.
	for _, tt := range []struct {
		name  string
		proof string
		check func(*DPoPCheck)
	}{
		{"valid", valid, nil},
		{"iat at the oldest", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = dpopNow - 25 })), nil},
		{"iat at the newest", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = dpopNow + 15 })), nil},
		{"fractional iat", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["iat"] = float64(dpopNow) + 0.5 })), nil},
		{"htu with query and fragment", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["htu"] = dpopURL + "?a=b#f" })), nil},
		{"htu with default port and upper-case host", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) {
			c["htu"] = "HTTPS://AS.example:443/realms/c/protocol/openid-connect/token"
		})), nil},
		{"nonce and ath", handSign(t, es, hdr(es, nil), claims(func(c map[string]any) { c["nonce"] = "n-1"; c["ath"] = AccessTokenHash("at") })),
			func(c *DPoPCheck) { c.Nonce, c.AccessToken = "n-1", "at" }},
	} {
		t.Run("accepts "+tt.name, func(t *testing.T) {
			c := dpopCheck()
			if tt.check != nil {
				tt.check(&c)
			}
			if _, err := VerifyDPoP(tt.proof, c); err != nil {
				t.Fatalf("VerifyDPoP: %v", err)
			}
		})
	}
}

// smallRSAProof is a proof signed with a 1024-bit RSA key (NewSigner
// refuses such keys, so it is signed by hand).
func smallRSAProof(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.FromRaw(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	input := enc(map[string]any{"typ": TypeDPoP, "alg": "RS256", "jwk": pub}) + "." + enc(dpopClaimsAt(dpopNow))
	signer, err := jws.NewSigner(jwa.RS256)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign([]byte(input), key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestSameHTU(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"https://a.example/token", "https://a.example/token", true},
		{"https://a.example/token?x=1", "https://a.example/token#frag", true},
		{"https://A.EXAMPLE/token", "https://a.example/token", true},
		{"https://a.example:443/token", "https://a.example/token", true},
		{"http://a.example:80/token", "http://a.example/token", true},
		{"http://127.0.0.1:8383/t", "http://127.0.0.1:8383/t", true},
		{"https://a.example", "https://a.example/", true},
		{"http://[::1]:80/t", "http://[::1]/t", true},
		{"https://a.example/Token", "https://a.example/token", false},
		{"https://a.example:8443/token", "https://a.example/token", false},
		{"http://a.example/token", "https://a.example/token", false},
		{"https://a.example/token/", "https://a.example/token", false},
		{"ftp://a.example/token", "ftp://a.example/token", false},
		{"/token", "/token", false},
		{"https://user@a.example/token", "https://a.example/token", false},
		{"", "", false},
		{"https://a.example/%zz", "https://a.example/%zz", false},
	}
	for _, tt := range tests {
		if got := SameHTU(tt.a, tt.b); got != tt.same {
			t.Errorf("SameHTU(%q, %q) = %v", tt.a, tt.b, got)
		}
		if got := SameHTU(tt.b, tt.a); got != tt.same {
			t.Errorf("SameHTU(%q, %q) = %v", tt.b, tt.a, got)
		}
	}
}

func TestDPoPProofNeedsAsymmetricKey(t *testing.T) {
	h, err := NewHMACSigner([]byte("secret"), "HS256", "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.DPoPProof("POST", dpopURL, DPoPOptions{}); err == nil {
		t.Error("an HMAC signer made a DPoP proof")
	}
	if _, err := h.Thumbprint(); err == nil {
		t.Error("an HMAC signer has a thumbprint")
	}
}

// Fresh proofs get fresh jtis.
func TestDPoPProofFreshJTI(t *testing.T) {
	s := mustSigner(t, "ES256")
	seen := map[string]bool{}
	for range 20 {
		p, err := s.DPoPProof("POST", dpopURL, DPoPOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := VerifyDPoP(p, DPoPCheck{Method: "POST", URL: dpopURL})
		if err != nil {
			t.Fatal(err)
		}
		if seen[got.JTI] {
			t.Fatalf("jti %q twice", got.JTI)
		}
		seen[got.JTI] = true
	}
}

// FuzzVerifyDPoP: hostile proofs never panic, errors stay bounded, and an
// accepted proof matched the request and named its key.
//
//	go test -run='^$' -fuzz='^FuzzVerifyDPoP$' -fuzztime=30s ./token
func FuzzVerifyDPoP(f *testing.F) {
	s := mustSigner(f, "ES256")
	now := time.Now()
	for _, opts := range []DPoPOptions{{}, {Nonce: "n"}, {AccessToken: "at"}} {
		opts.IssuedAt = now
		p, err := s.DPoPProof("POST", dpopURL, opts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add("e30.e30.e30")
	f.Fuzz(func(t *testing.T, proof string) {
		got, err := VerifyDPoP(proof, DPoPCheck{Method: "POST", URL: dpopURL, Now: now})
		if err != nil {
			if got != nil || !errors.Is(err, ErrDPoPInvalid) || len(err.Error()) > maxErrorBytes {
				t.Fatalf("VerifyDPoP = %v, %v", got, err)
			}
			return
		}
		if got.Thumbprint == "" || got.Method != "POST" || !SameHTU(got.URL, dpopURL) || got.JTI == "" {
			t.Fatalf("accepted %+v", got)
		}
	})
}
