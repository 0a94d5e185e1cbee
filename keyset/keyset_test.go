package keyset

import (
	"bytes"
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
	"github.com/chainbroker/chainbroker/internal/testutil"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

var b64 = base64.RawURLEncoding

// thumbprint computes the RFC 7638 thumbprint of a public key by hand:
// the required members in lexicographic order, no whitespace, SHA-256.
func thumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	var doc string
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		doc = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k.Curve.Params().Name,
			b64.EncodeToString(raw[1:1+size]), b64.EncodeToString(raw[1+size:]))
	case *rsa.PublicKey:
		doc = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, b64.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
			b64.EncodeToString(k.N.Bytes()))
	case ed25519.PublicKey:
		doc = fmt.Sprintf(`{"crv":"Ed25519","kty":"OKP","x":%q}`, b64.EncodeToString(k))
	default:
		t.Fatalf("thumbprint: %T", pub)
	}
	sum := sha256.Sum256([]byte(doc))
	return b64.EncodeToString(sum[:])
}

// privateJWK renders a private key as a JWK by hand (what a user might
// export from another tool).
func privateJWK(t *testing.T, key crypto.Signer, extra map[string]any) []byte {
	t.Helper()
	var m map[string]any
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, _ := k.PublicKey.Bytes()
		d, _ := k.Bytes()
		m = map[string]any{"kty": "EC", "crv": k.Curve.Params().Name,
			"x": b64.EncodeToString(raw[1 : 1+size]), "y": b64.EncodeToString(raw[1+size:]), "d": b64.EncodeToString(d)}
	case *rsa.PrivateKey:
		k.Precompute()
		m = map[string]any{"kty": "RSA", "n": b64.EncodeToString(k.N.Bytes()),
			"e": b64.EncodeToString(big.NewInt(int64(k.E)).Bytes()), "d": b64.EncodeToString(k.D.Bytes()),
			"p": b64.EncodeToString(k.Primes[0].Bytes()), "q": b64.EncodeToString(k.Primes[1].Bytes()),
			"dp": b64.EncodeToString(k.Precomputed.Dp.Bytes()), "dq": b64.EncodeToString(k.Precomputed.Dq.Bytes()),
			"qi": b64.EncodeToString(k.Precomputed.Qinv.Bytes())}
	case ed25519.PrivateKey:
		m = map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64.EncodeToString(k.Public().(ed25519.PublicKey)),
			"d": b64.EncodeToString(k.Seed())}
	default:
		t.Fatalf("privateJWK: %T", key)
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func write(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// genFile writes a fresh PKCS#8 key for alg and returns its path and kid.
func genFile(t *testing.T, dir, name, alg string) (string, string) {
	t.Helper()
	p, kid, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return write(t, dir, name, p), kid
}

// replaceFile atomically replaces path with a fresh key (rename over it)
// and returns the new kid.
func replaceFile(t *testing.T, path, alg string) string {
	t.Helper()
	p, kid, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return kid
}

type jwksDoc struct {
	Keys []map[string]any `json:"keys"`
}

func parseJWKS(t *testing.T, b []byte) jwksDoc {
	t.Helper()
	var d jwksDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	return d
}

func (d jwksDoc) kids() []string {
	var out []string
	for _, k := range d.Keys {
		s, _ := k["kid"].(string)
		out = append(out, s)
	}
	return out
}

// verifies checks that the set's active signer makes tokens its own JWKS
// verifies.
func verifies(t *testing.T, s *Set) {
	t.Helper()
	tok, err := s.Signer().Sign(map[string]any{"sub": "x"}, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewStaticVerifier(s.JWKS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("verify with the set's JWKS: %v", err)
	}
	if got.Header.Kid != s.Signer().KeyID() {
		t.Errorf("token kid %q, signer %q", got.Header.Kid, s.Signer().KeyID())
	}
}

func TestLoadFormats(t *testing.T) {
	dir := t.TempDir()
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ec521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("PRIVATE KEY", der)
	}
	sec1 := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("EC PRIVATE KEY", der)
	}
	// `openssl ecparam -genkey` writes an EC PARAMETERS block first.
	oid, _ := pem.Decode(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}))
	withParams := append(pem.EncodeToMemory(oid), sec1(ec256)...)
	jwks1 := []byte(`{"keys":[` + string(privateJWK(t, ec256, nil)) + `]}`)

	for _, tc := range []struct {
		name    string
		data    []byte
		alg     string
		pub     crypto.PublicKey
		wantAlg string
	}{
		{"PKCS#8 P-256", pkcs8(ec256), "", &ec256.PublicKey, "ES256"},
		{"PKCS#8 P-384", pkcs8(ec384), "", &ec384.PublicKey, "ES384"},
		{"PKCS#8 P-521", pkcs8(ec521), "", &ec521.PublicKey, "ES512"},
		{"PKCS#8 RSA", pkcs8(rsaKey), "", &rsaKey.PublicKey, "RS256"},
		{"PKCS#8 RSA as PS256", pkcs8(rsaKey), "PS256", &rsaKey.PublicKey, "PS256"},
		{"PKCS#8 Ed25519", pkcs8(edKey), "", edKey.Public(), "EdDSA"},
		{"PKCS#1 RSA", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "", &rsaKey.PublicKey, "RS256"},
		{"SEC1 P-256", sec1(ec256), "", &ec256.PublicKey, "ES256"},
		{"SEC1 with EC PARAMETERS", withParams, "", &ec256.PublicKey, "ES256"},
		{"JWK EC", privateJWK(t, ec256, nil), "", &ec256.PublicKey, "ES256"},
		{"JWK EC P-521", privateJWK(t, ec521, nil), "", &ec521.PublicKey, "ES512"},
		{"JWK RSA", privateJWK(t, rsaKey, nil), "", &rsaKey.PublicKey, "RS256"},
		{"JWK RSA own alg", privateJWK(t, rsaKey, map[string]any{"alg": "PS384", "kid": "ignored", "use": "sig"}), "", &rsaKey.PublicKey, "PS384"},
		{"JWK RSA without CRT members", privateJWK(t, rsaKey, map[string]any{"dp": nil, "dq": nil, "qi": nil}), "RS512", &rsaKey.PublicKey, "RS512"},
		{"JWK OKP", privateJWK(t, edKey, nil), "", edKey.Public(), "EdDSA"},
		{"JWKS with one key", jwks1, "", &ec256.PublicKey, "ES256"},
		{"JWK with surrounding space", append(append([]byte("\n  "), privateJWK(t, edKey, nil)...), '\n'), "", edKey.Public(), "EdDSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, dir, strings.NewReplacer(" ", "_", "#", "").Replace(tc.name), tc.data)
			s, err := Load([]KeyConfig{{File: path, State: Active, Alg: tc.alg}}, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			sg := s.Signer()
			if want := thumbprint(t, tc.pub); sg.KeyID() != want {
				t.Errorf("kid %q, want thumbprint %q", sg.KeyID(), want)
			}
			if sg.Alg() != tc.wantAlg {
				t.Errorf("alg %q, want %q", sg.Alg(), tc.wantAlg)
			}
			verifies(t, s)
			if got := s.Keys(); len(got) != 1 || got[0] != (KeyInfo{File: path, State: Active, Alg: tc.wantAlg, KeyID: sg.KeyID()}) {
				t.Errorf("Keys() = %+v", got)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	pubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	otherRaw, _ := other.PublicKey.Bytes()
	smallDER, _ := x509.MarshalPKCS8PrivateKey(small)
	for _, tc := range []struct {
		name, want string
		data       []byte
		alg        string
	}{
		{"empty", "no PEM private key found", nil, ""},
		{"garbage", "no PEM private key found", []byte("hello"), ""},
		{"public key PEM", `PEM block "PUBLIC KEY" is not a private key`, pemBlock("PUBLIC KEY", pubDER), ""},
		{"encrypted PKCS#8", "encrypted PKCS#8", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1}), ""},
		{"legacy encrypted PEM", "encrypted PEM", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}}), ""},
		{"corrupt PKCS#8", "PEM", pemBlock("PRIVATE KEY", []byte{1, 2, 3}), ""},
		{"RSA 1024", "at least 2048", pemBlock("PRIVATE KEY", smallDER), ""},
		{"alg does not fit", "does not fit", privateJWK(t, ec, nil), "RS256"},
		{"HMAC alg", "unsupported signing alg", privateJWK(t, ec, nil), "HS256"},
		{"JWK public only", "no private member d", privateJWK(t, ec, map[string]any{"d": nil}), ""},
		{"JWK x mismatch", "do not match", privateJWK(t, ec, map[string]any{"x": b64.EncodeToString(otherRaw[1:33])}), ""},
		{"JWK OKP x mismatch", "does not match", privateJWK(t, ed, map[string]any{"x": b64.EncodeToString(make([]byte, 32))}), ""},
		{"JWK oct", "not a signing key type", []byte(`{"kty":"oct","k":"AAAA","d":"x"}`), ""},
		{"JWK no kty", "no kty", []byte(`{"d":"AAAA"}`), ""},
		{"JWK use enc", `use "enc"`, privateJWK(t, ec, map[string]any{"use": "enc"}), ""},
		{"JWK alg conflict", "configured alg ES384 but the JWK says ES256", privateJWK(t, ec, map[string]any{"alg": "ES256"}), "ES384"},
		{"JWK bad base64", "not base64url", privateJWK(t, ec, map[string]any{"d": "!!"}), ""},
		{"JWK upper-case member", "no private member d", []byte(strings.Replace(string(privateJWK(t, ec, nil)), `"d"`, `"D"`, 1)), ""},
		{"JWK multi-prime", "oth", []byte(`{"kty":"RSA","d":"AQAB","oth":[]}`), ""},
		{"JWKS two keys", "want exactly one", []byte(`{"keys":[{},{}]}`), ""},
		{"JWK not JSON", "JWK", []byte(`{"kty":`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, dir, "key", tc.data)
			_, err := LoadFile(path, tc.alg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadFile = %v, want an error naming %s and containing %q", err, path, tc.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadFile(filepath.Join(dir, "nope"), "")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := LoadFile(dir, ""); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		path := write(t, dir, "big", bytes.Repeat([]byte("x"), MaxKeyFileBytes+1))
		if _, err := LoadFile(path, ""); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLoadValidation(t *testing.T) {
	dir := t.TempDir()
	a, _ := genFile(t, dir, "a.pem", "ES256")
	b, _ := genFile(t, dir, "b.pem", "ES256")
	broken := write(t, dir, "broken.pem", []byte("nope"))
	dup := filepath.Join(dir, "dup.pem")
	data, _ := os.ReadFile(a)
	write(t, dir, "dup.pem", data)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		keys []KeyConfig
		want []string // every one must appear
	}{
		{"none", nil, []string{"no keys configured"}},
		{"no active", []KeyConfig{{File: a, State: Published}}, []string{"no active key"}},
		{"two active", []KeyConfig{{File: a, State: Active}, {File: b, State: Active}}, []string{"2 active keys", a, b}},
		{"bad state", []KeyConfig{{File: a, State: Active}, {File: b, State: "next"}}, []string{"key 1 (" + b + `): state "next"`}},
		{"empty state", []KeyConfig{{File: a, State: Active}, {File: b}}, []string{`key 1 (` + b + `): state ""`}},
		{"no file", []KeyConfig{{File: a, State: Active}, {State: Published}}, []string{"key 1: file is required"}},
		{"listed twice", []KeyConfig{{File: a, State: Active}, {File: a, State: Published}}, []string{"listed twice"}},
		{"same key twice", []KeyConfig{{File: a, State: Active}, {File: dup, State: Published}}, []string{"key 1 (" + dup + "): same key as " + a}},
		{"broken published", []KeyConfig{{File: a, State: Active}, {File: broken, State: Published}}, []string{"key 1", broken}},
		{"missing active", []KeyConfig{{File: missing, State: Active}}, []string{"key 0", missing, "no such file"}},
		{"every problem at once", []KeyConfig{{File: broken, State: Active}, {File: missing, State: Published}, {File: b, State: "x"}},
			[]string{`state "x"`}},
		{"every file problem at once", []KeyConfig{{File: broken, State: Active}, {File: missing, State: Published}},
			[]string{broken, missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(tc.keys, nil)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", s.Keys())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// A retired key's file is not read: it may be gone already.
	s, err := Load([]KeyConfig{{File: a, State: Active}, {File: missing, State: Retired}, {File: broken, State: Retired}}, nil)
	if err != nil {
		t.Fatalf("retired missing file: %v", err)
	}
	if k := s.Keys(); k[1] != (KeyInfo{File: missing, State: Retired}) {
		t.Errorf("Keys()[1] = %+v", k[1])
	}
}

func TestJWKS(t *testing.T) {
	dir := t.TempDir()
	act, actKid := genFile(t, dir, "active.pem", "ES256")
	pubR, pubRKid := genFile(t, dir, "published-rsa.pem", "RS256")
	pubE, pubEKid := genFile(t, dir, "published-ed.pem", "EdDSA")
	ret, retKid := genFile(t, dir, "retired.pem", "ES256")
	s, err := Load([]KeyConfig{
		{File: pubR, State: Published},
		{File: ret, State: Retired},
		{File: act, State: Active},
		{File: pubE, State: Published},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if s.Signer().KeyID() != actKid || s.Signer().Alg() != "ES256" {
		t.Errorf("signer kid %q alg %q", s.Signer().KeyID(), s.Signer().Alg())
	}
	doc := parseJWKS(t, s.JWKS())
	if got, want := doc.kids(), []string{actKid, pubRKid, pubEKid}; !slices.Equal(got, want) {
		t.Errorf("JWKS kids %v, want %v (active first, no retired %s)", got, want, retKid)
	}
	wantAlg := map[string]string{actKid: "ES256", pubRKid: "RS256", pubEKid: "EdDSA"}
	for _, k := range doc.Keys {
		kid := k["kid"].(string)
		if k["alg"] != wantAlg[kid] || k["use"] != "sig" {
			t.Errorf("key %s: alg %v use %v", kid, k["alg"], k["use"])
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %s has private member %q", kid, private)
			}
		}
	}
	if strings.Contains(string(s.JWKS()), `"d"`) {
		t.Error(`JWKS contains "d"`)
	}
	// The published keys verify what they would sign: a relying party that
	// cached this JWKS accepts the next key once it becomes active.
	v, err := token.NewStaticVerifier(s.JWKS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pubR, pubE} {
		sg, err := LoadFile(p, "")
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := sg.Sign(map[string]any{"sub": "x"}, token.SignOptions{})
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Errorf("published key %s: %v", p, err)
		}
	}
	retired, _ := LoadFile(ret, "")
	tok, _ := retired.Sign(map[string]any{"sub": "x"}, token.SignOptions{})
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, token.ErrKeyUnknown) {
		t.Errorf("retired key verified: %v", err)
	}
	verifies(t, s)
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	act, kid1 := genFile(t, dir, "active.pem", "ES256")
	pub, pubKid := genFile(t, dir, "next.pem", "EdDSA")
	s, err := Load([]KeyConfig{{File: act, State: Active}, {File: pub, State: Published}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil || s.Signer().KeyID() != kid1 {
		t.Fatalf("Reload unchanged: %v, kid %q", err, s.Signer().KeyID())
	}

	kid2 := replaceFile(t, act, "RS256")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Signer().KeyID() != kid2 || s.Signer().Alg() != "RS256" {
		t.Fatalf("after replacing the file: kid %q alg %q, want %q RS256", s.Signer().KeyID(), s.Signer().Alg(), kid2)
	}
	if got := parseJWKS(t, s.JWKS()).kids(); !slices.Equal(got, []string{kid2, pubKid}) {
		t.Errorf("JWKS kids %v", got)
	}
	verifies(t, s)

	// A broken file: the error names it, the previous set stays.
	before := s.JWKS()
	if err := os.WriteFile(pub, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), pub) {
		t.Fatalf("Reload with a broken file = %v", err)
	}
	if s.Signer().KeyID() != kid2 || !bytes.Equal(s.JWKS(), before) {
		t.Error("a failed Reload changed the set")
	}
	if err := os.Remove(act); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Reload with a missing file = %v", err)
	}
	if s.Signer().KeyID() != kid2 {
		t.Error("a failed Reload changed the signer")
	}
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	k1, kid1 := genFile(t, dir, "k1.pem", "ES256")
	k2, kid2 := genFile(t, dir, "k2.pem", "ES256")
	s, err := Load([]KeyConfig{{File: k1, State: Active}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		keys       []KeyConfig
		signer     string
		jwks       []string
		wantErr    string
		unchangedJ []string
	}{
		{"pre-publish k2", []KeyConfig{{File: k1, State: Active}, {File: k2, State: Published}}, kid1, []string{kid1, kid2}, "", nil},
		{"switch to k2", []KeyConfig{{File: k1, State: Published}, {File: k2, State: Active}}, kid2, []string{kid2, kid1}, "", nil},
		{"invalid: no active", []KeyConfig{{File: k1, State: Published}, {File: k2, State: Retired}}, kid2, []string{kid2, kid1}, "no active key", nil},
		{"invalid: missing file", []KeyConfig{{File: k1, State: Retired}, {File: filepath.Join(dir, "x"), State: Active}}, kid2, []string{kid2, kid1}, "x", nil},
		{"retire k1", []KeyConfig{{File: k1, State: Retired}, {File: k2, State: Active}}, kid2, []string{kid2}, "", nil},
	}
	for _, st := range steps {
		err := s.Replace(st.keys)
		if (err == nil) != (st.wantErr == "") || (err != nil && !strings.Contains(err.Error(), st.wantErr)) {
			t.Fatalf("%s: Replace = %v, want error %q", st.name, err, st.wantErr)
		}
		if s.Signer().KeyID() != st.signer {
			t.Errorf("%s: signer %q, want %q", st.name, s.Signer().KeyID(), st.signer)
		}
		if got := parseJWKS(t, s.JWKS()).kids(); !slices.Equal(got, st.jwks) {
			t.Errorf("%s: JWKS kids %v, want %v", st.name, got, st.jwks)
		}
	}
	// Reload follows the replaced configuration.
	kid3 := replaceFile(t, k2, "ES256")
	if err := s.Reload(); err != nil || s.Signer().KeyID() != kid3 {
		t.Errorf("Reload after Replace: %v, kid %q want %q", err, s.Signer().KeyID(), kid3)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	act, kid1 := genFile(t, dir, "active.pem", "ES256")
	var logs testutil.Buffer
	s, err := Load([]KeyConfig{{File: act, State: Active}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 10*time.Millisecond)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after ctx ended")
		}
	}()

	// Rename over the file: a new inode.
	kid2 := replaceFile(t, act, "ES256")
	waitFor(t, "the renamed file", func() bool { return s.Signer().KeyID() == kid2 })

	// A broken file (written whole: a truncate-then-write in place could be
	// seen as two versions, empty then garbage): logged once, the previous
	// key stays.
	tmp := act + ".tmp"
	if err := os.WriteFile(tmp, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, act); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failure log", func() bool { return strings.Contains(logs.String(), "reload after a file change failed") })
	time.Sleep(100 * time.Millisecond) // several ticks
	if n := strings.Count(logs.String(), "reload after a file change failed"); n != 1 {
		t.Errorf("failure logged %d times, want once per file version", n)
	}
	if s.Signer().KeyID() != kid2 {
		t.Fatal("a broken file replaced the key")
	}

	// Rewritten in place (same inode, same size as any P-256 PKCS#8 PEM):
	// the modification time tells.
	p3, kid3, err := Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(act, p3, 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(act, future, future); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file rewritten in place", func() bool { return s.Signer().KeyID() == kid3 })
	if kid3 == kid1 || kid3 == kid2 {
		t.Fatal("Generate repeated a key")
	}

	// Watch follows Replace: a new file is watched.
	other, kid4 := genFile(t, dir, "other.pem", "EdDSA")
	if err := s.Replace([]KeyConfig{{File: act, State: Retired}, {File: other, State: Active}}); err != nil {
		t.Fatal(err)
	}
	kid5 := replaceFile(t, other, "EdDSA")
	waitFor(t, "the replaced configuration's file", func() bool { return s.Signer().KeyID() == kid5 })
	if kid4 == kid5 {
		t.Fatal("Generate repeated a key")
	}
}

// TestConcurrentReads signs and reads the JWKS while keys are reloaded and
// replaced, for the race detector: every token verifies with the JWKS read
// after it was signed (the active key is always published).
func TestConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	k1, _ := genFile(t, dir, "k1.pem", "ES256")
	k2, _ := genFile(t, dir, "k2.pem", "ES256")
	cfgs := [][]KeyConfig{
		{{File: k1, State: Active}, {File: k2, State: Published}},
		{{File: k1, State: Published}, {File: k2, State: Active}},
	}
	s, err := Load(cfgs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.Watch(ctx, time.Millisecond) })
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 200 {
				tok, err := s.Signer().Sign(map[string]any{"sub": "x"}, token.SignOptions{})
				if err != nil {
					errs <- err
					return
				}
				v, err := token.NewStaticVerifier(s.JWKS(), nil)
				if err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(context.Background(), tok); err != nil {
					errs <- fmt.Errorf("token from the set does not verify with its JWKS: %w", err)
					return
				}
			}
		})
	}
	for i := range 50 {
		if err := s.Replace(cfgs[i%2]); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGenerate(t *testing.T) {
	for _, tc := range []struct{ alg, want, kty string }{
		{"", "ES256", "EC"},
		{"ES256", "ES256", "EC"},
		{"ES384", "ES384", "EC"},
		{"RS256", "RS256", "RSA"},
		{"PS256", "PS256", "RSA"},
		{"EdDSA", "EdDSA", "OKP"},
	} {
		t.Run(tc.want+"/"+tc.alg, func(t *testing.T) {
			p, kid, err := Generate(tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			block, rest := pem.Decode(p)
			if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("not one PKCS#8 PEM block: %s", p)
			}
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if k, ok := key.(*rsa.PrivateKey); ok && k.N.BitLen() != 2048 {
				t.Errorf("RSA bits %d", k.N.BitLen())
			}
			if want := thumbprint(t, key.(crypto.Signer).Public()); kid != want {
				t.Errorf("kid %q, want %q", kid, want)
			}
			sg, err := LoadFile(write(t, t.TempDir(), "k.pem", p), tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if sg.KeyID() != kid || sg.Alg() != tc.want {
				t.Errorf("LoadFile: kid %q alg %q", sg.KeyID(), sg.Alg())
			}
		})
	}
	for _, alg := range []string{"HS256", "none", "ES255"} {
		if _, _, err := Generate(alg); err == nil {
			t.Errorf("Generate(%q) succeeded", alg)
		}
	}
}

// TestKeyFilePermissions (#14.11): Load, Reload, Replace and
// ReadPrivateKeyFile refuse a key file its group or others can read or
// write, naming the file and the fix, unless explicitly allowed; 0600 and
// 0400 load; the mode of a symlink's target counts (Kubernetes secret
// volumes are symlinks into ..data).
func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	modes := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o700, true},
		{0o640, false}, {0o440, false}, {0o644, false}, {0o604, false}, {0o660, false}, {0o602, false}, {0o666, false},
	}
	for _, m := range modes {
		t.Run(fmt.Sprintf("%04o", m.mode), func(t *testing.T) {
			p, _ := genFile(t, dir, fmt.Sprintf("key-%04o.pem", m.mode), "ES256")
			if err := os.Chmod(p, m.mode); err != nil {
				t.Fatal(err)
			}
			link := p + ".link"
			if err := os.Symlink(p, link); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{p, link} {
				_, lerr := Load([]KeyConfig{{File: path, State: Active}}, nil)
				_, rerr := ReadPrivateKeyFile(path, false)
				for what, err := range map[string]error{"Load": lerr, "ReadPrivateKeyFile": rerr} {
					if m.ok {
						if err != nil {
							t.Errorf("%s(%s): %v", what, path, err)
						}
						continue
					}
					if !errors.Is(err, ErrInsecurePermissions) {
						t.Errorf("%s(%s): got %v, want ErrInsecurePermissions", what, path, err)
						continue
					}
					for _, want := range []string{path, "chmod 600", fmt.Sprintf("%04o", m.mode), EnvAllowInsecurePermissions} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("%s: error %q does not say %q", what, err, want)
						}
					}
				}
				// The explicit override accepts it.
				if _, err := Load([]KeyConfig{{File: path, State: Active, AllowInsecurePermissions: true}}, nil); err != nil {
					t.Errorf("Load with AllowInsecurePermissions: %v", err)
				}
				if _, err := ReadPrivateKeyFile(path, true); err != nil {
					t.Errorf("ReadPrivateKeyFile(allowInsecure): %v", err)
				}
			}
		})
	}

	// Reload and Replace refuse too, keeping the loaded keys.
	act, kid := genFile(t, dir, "active.pem", "ES256")
	s, err := Load([]KeyConfig{{File: act, State: Active}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	next, _ := genFile(t, dir, "next.pem", "ES256")
	if err := os.Chmod(next, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Replace([]KeyConfig{{File: act, State: Active}, {File: next, State: Published}}); !errors.Is(err, ErrInsecurePermissions) {
		t.Errorf("Replace with a 0644 published key: %v", err)
	}
	if err := os.Chmod(act, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); !errors.Is(err, ErrInsecurePermissions) {
		t.Errorf("Reload of a 0640 key: %v", err)
	}
	if s.Signer().KeyID() != kid || strings.Contains(string(s.JWKS()), "next") {
		t.Error("a refused key changed the set")
	}
	// LoadFile (offline tools: chainbroker keys jwks) does not check.
	if _, err := LoadFile(act, ""); err != nil {
		t.Errorf("LoadFile: %v", err)
	}
}

// TestWatchNoticesChmod: after a reload refused for the file's mode, a
// chmod 600 (which changes neither size nor modification time) is noticed.
func TestWatchNoticesChmod(t *testing.T) {
	dir := t.TempDir()
	act, _ := genFile(t, dir, "active.pem", "ES256")
	var logs testutil.Buffer
	s, err := Load([]KeyConfig{{File: act, State: Active}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 10*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()
	// A new key renamed over the old one, group- and world-readable.
	p, kid2, err := Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	tmp := act + ".tmp"
	if err := os.WriteFile(tmp, p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, act); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused reload", func() bool { return strings.Contains(logs.String(), "reload after a file change failed") })
	if s.Signer().KeyID() == kid2 {
		t.Fatal("a 0644 key was loaded")
	}
	if err := os.Chmod(act, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the key after chmod 600", func() bool { return s.Signer().KeyID() == kid2 })
}
