package sandbox

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

func dpopKey(t *testing.T) *token.Signer {
	t.Helper()
	s, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func proof(t *testing.T, s *token.Signer, method, u string, opts token.DPoPOptions) string {
	t.Helper()
	p, err := s.DPoPProof(method, u, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func thumbprint(t *testing.T, s *token.Signer) string {
	t.Helper()
	tp, err := s.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func dpopHeader(proofs ...string) http.Header { return http.Header{HeaderDPoP: proofs} }

// userinfo calls a realm's userinfo endpoint with GET and an Authorization
// header (none when authz is "").
func userinfo(t *testing.T, rl *Realm, authz string, hdr http.Header) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rl.UserinfoEndpoint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	return do(t, req)
}

// handProof signs a DPoP proof with an arbitrary header and claims by key
// (ES256); header["jwk"] = true stands for key's public JWK.
func handProof(t *testing.T, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	if header["jwk"] == true {
		header["jwk"] = ecJWK(key)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func ecJWK(key *ecdsa.PrivateKey) map[string]any {
	b, _ := key.PublicKey.Bytes() // 0x04 || X || Y
	return map[string]any{"kty": "EC", "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(b[1:33]), "y": base64.RawURLEncoding.EncodeToString(b[33:])}
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A DPoP-bound token from domain C, used at its userinfo endpoint with the
// key, and refused with another key or without proof, as Keycloak does.
func TestDPoPDomainC(t *testing.T) {
	sb := start(t)
	key, other := dpopKey(t), dpopKey(t)
	r := cGrant(t, sb, idjag(t, sb), dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{})), nil)
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("C with DPoP: %v", r)
	}
	at := r.str("access_token")
	if jkt, err := cnfJKT(at); err != nil || jkt != thumbprint(t, key) {
		t.Fatalf("cnf.jkt = %q, %v; want %q", jkt, err, thumbprint(t, key))
	}
	if typ := parsed(t, at).claims.Typ; typ != "DPoP" {
		t.Errorf("typ claim %q", typ)
	}
	ui := sb.C.UserinfoEndpoint()
	good := func() string { return proof(t, key, "GET", ui, token.DPoPOptions{AccessToken: at}) }
	if u := userinfo(t, sb.C.Realm, "DPoP "+at, dpopHeader(good())); u.status != 200 || u.str("sub") != AliceSubC {
		t.Fatalf("userinfo with the key: %v", u)
	}
	replayed := good()
	if u := userinfo(t, sb.C.Realm, "DPoP "+at, dpopHeader(replayed)); u.status != 200 {
		t.Fatalf("userinfo: %v", u)
	}
	tests := []struct {
		name, authz string
		hdr         http.Header
		desc        string
	}{
		{"another key", "DPoP " + at, dpopHeader(proof(t, other, "GET", ui, token.DPoPOptions{AccessToken: at})), DescDPoPBinding},
		{"Bearer scheme", "Bearer " + at, nil, DescDPoPSchemeMissing},
		{"no proof", "DPoP " + at, nil, DescDPoPMissing},
		{"no ath", "DPoP " + at, dpopHeader(proof(t, key, "GET", ui, token.DPoPOptions{})), DescDPoPNoATH},
		{"ath of another token", "DPoP " + at, dpopHeader(proof(t, key, "GET", ui, token.DPoPOptions{AccessToken: "x"})), DescDPoPATH},
		{"htm POST", "DPoP " + at, dpopHeader(proof(t, key, "POST", ui, token.DPoPOptions{AccessToken: at})), DescDPoPMethod},
		{"htu token endpoint", "DPoP " + at, dpopHeader(proof(t, key, "GET", sb.C.TokenEndpoint(), token.DPoPOptions{AccessToken: at})), DescDPoPURL},
		{"stale proof", "DPoP " + at, dpopHeader(proof(t, key, "GET", ui, token.DPoPOptions{AccessToken: at,
			IssuedAt: time.Now().Add(-time.Minute)})), DescDPoPNotActive},
		{"replayed proof", "DPoP " + at, dpopHeader(replayed), DescDPoPReplayed},
		{"not a token", "DPoP not-a-token", dpopHeader(good()), DescTokenVerificationFailed},
		{"Basic scheme", "Basic " + at, nil, DescTokenVerificationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := userinfo(t, sb.C.Realm, tt.authz, tt.hdr)
			wantError(t, u, 401, errInvalidToken, tt.desc)
			if h := u.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q", h)
			}
		})
	}
	wantError(t, userinfo(t, sb.C.Realm, "", nil), 400, errInvalidRequest, DescTokenNotProvided)

	// An unbound token: Bearer works (also as a form parameter), the DPoP
	// scheme does not.
	plain := cGrant(t, sb, idjag(t, sb), nil, nil).str("access_token")
	if u := userinfo(t, sb.C.Realm, "Bearer "+plain, nil); u.status != 200 {
		t.Errorf("Bearer: %v", u)
	}
	if u := post(t, ui, url.Values{"access_token": {plain}}, "", ""); u.status != 200 || u.str("sub") != AliceSubC {
		t.Errorf("form access_token: %v", u)
	}
	wantError(t, userinfo(t, sb.C.Realm, "DPoP "+plain, dpopHeader(proof(t, key, "GET", ui, token.DPoPOptions{AccessToken: plain}))),
		401, errInvalidToken, DescDPoPSchemeUnbound)
	// Another realm's token.
	bTok := jwtBearer(t, sb, assertion(t, sb)).str("access_token")
	wantError(t, userinfo(t, sb.C.Realm, "Bearer "+bTok, nil), 401, errInvalidToken, DescTokenVerificationFailed)
}

// Every refusal of a DPoP proof at a token endpoint: 400 invalid_request
// with Keycloak's text, before the grant is judged.
func TestDPoPTokenEndpointRefusals(t *testing.T) {
	sb := start(t)
	k, k2 := ecKey(t), ecKey(t)
	te := sb.C.TokenEndpoint()
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"jti": newUUID(), "htm": "POST", "htu": te, "iat": time.Now().Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	hdr := func(edit func(map[string]any)) map[string]any {
		h := map[string]any{"typ": token.TypeDPoP, "alg": "ES256", "jwk": true}
		if edit != nil {
			edit(h)
		}
		return h
	}
	withD := ecJWK(k)
	withD["d"] = "c2VjcmV0"
	replayed := handProof(t, k, hdr(nil), claims(nil))
	if r := cGrant(t, sb, idjag(t, sb), dpopHeader(replayed), nil); r.status != 200 {
		t.Fatalf("first use: %v", r)
	}
	tests := []struct {
		name string
		hdr  http.Header
		desc string
	}{
		{"empty header", dpopHeader(""), DescDPoPMissing},
		{"two headers", dpopHeader(handProof(t, k, hdr(nil), claims(nil)), handProof(t, k, hdr(nil), claims(nil))), DescDPoPMalformed},
		{"not a JWS", dpopHeader("garbage"), DescDPoPMalformed},
		{"typ JWT", dpopHeader(handProof(t, k, hdr(func(h map[string]any) { h["typ"] = "JWT" }), claims(nil))), DescDPoPType + "JWT"},
		{"alg HS256", dpopHeader(handProof(t, k, hdr(func(h map[string]any) { h["alg"] = "HS256" }), claims(nil))), DescDPoPAlg + "HS256"},
		{"alg of another key type", dpopHeader(handProof(t, k, hdr(func(h map[string]any) { h["alg"] = "RS256" }), claims(nil))), DescDPoPKeyType},
		{"no jwk", dpopHeader(handProof(t, k, hdr(func(h map[string]any) { delete(h, "jwk") }), claims(nil))), DescDPoPNoKey},
		{"private jwk", dpopHeader(handProof(t, k, hdr(func(h map[string]any) { h["jwk"] = withD }), claims(nil))), DescDPoPPrivateKey},
		{"signed by another key", dpopHeader(handProof(t, k2, hdr(func(h map[string]any) { h["jwk"] = ecJWK(k) }), claims(nil))), DescDPoPSignature},
		{"no htu", dpopHeader(handProof(t, k, hdr(nil), claims(func(c map[string]any) { delete(c, "htu") }))), DescDPoPClaims},
		{"no jti", dpopHeader(handProof(t, k, hdr(nil), claims(func(c map[string]any) { delete(c, "jti") }))), DescDPoPClaims},
		{"htm GET", dpopHeader(handProof(t, k, hdr(nil), claims(func(c map[string]any) { c["htm"] = "GET" }))), DescDPoPMethod},
		{"htu of another realm", dpopHeader(handProof(t, k, hdr(nil), claims(func(c map[string]any) { c["htu"] = sb.B.TokenEndpoint() }))), DescDPoPURL},
		{"stale", dpopHeader(handProof(t, k, hdr(nil), claims(func(c map[string]any) { c["iat"] = time.Now().Add(-time.Minute).Unix() }))), DescDPoPNotActive},
		{"from the future", dpopHeader(handProof(t, k, hdr(nil), claims(func(c map[string]any) { c["iat"] = time.Now().Add(time.Minute).Unix() }))), DescDPoPNotActive},
		{"replayed", dpopHeader(replayed), DescDPoPReplayed},
	}
	jag := idjag(t, sb) // refused before the grant: the same ID-JAG serves every case
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, cGrant(t, sb, jag, tt.hdr, nil), 400, errInvalidRequest, tt.desc)
		})
	}
	if sb.C.Saw(parsed(t, jag).claims.JTI) {
		t.Error("C judged a grant whose DPoP proof it refused")
	}
	if r := cGrant(t, sb, jag, dpopHeader(handProof(t, k, hdr(nil), claims(nil))), nil); r.status != 200 {
		t.Fatalf("control: %v", r)
	}
}

// RFC 9449 §8: with the nonce switched on, a proof without it gets
// use_dpop_nonce and the nonce; a new proof with it passes.
func TestDPoPNonce(t *testing.T) {
	sb := start(t)
	key := dpopKey(t)
	sb.C.SetDPoPNonceRequired(true)
	nonce := sb.C.DPoPNonce()
	if nonce == "" {
		t.Fatal("no nonce")
	}
	jag := idjag(t, sb)
	r := cGrant(t, sb, jag, dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{})), nil)
	wantError(t, r, 400, errUseDPoPNonce, DescDPoPNonceRequired)
	if got := r.header.Get(HeaderDPoPNonce); got != nonce {
		t.Errorf("DPoP-Nonce %q, want %q", got, nonce)
	}
	r = cGrant(t, sb, jag, dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{Nonce: "stale"})), nil)
	wantError(t, r, 400, errUseDPoPNonce, DescDPoPNonceRequired)
	r = cGrant(t, sb, jag, dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{Nonce: nonce})), nil)
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("with the nonce: %v", r)
	}
	sb.C.SetDPoPNonceRequired(true)
	if sb.C.DPoPNonce() == nonce {
		t.Error("the nonce did not change")
	}
	sb.C.SetDPoPNonceRequired(false)
	if r := cGrant(t, sb, idjag(t, sb), dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{})), nil); r.status != 200 {
		t.Errorf("nonce off: %v", r)
	}
	// Without a DPoP header the nonce does not matter.
	sb.C.SetDPoPNonceRequired(true)
	if r := cGrant(t, sb, idjag(t, sb), nil, nil); r.status != 200 {
		t.Errorf("no DPoP: %v", r)
	}
}

// Targets that ignore the binding, for the broker's tests.
func TestDPoPMisbehaviour(t *testing.T) {
	sb := start(t)
	key := dpopKey(t)
	for _, tc := range []struct {
		m       Misbehaviour
		typ     string
		wantCnf bool
	}{
		{Misbehaviour{}, "DPoP", true},
		{Misbehaviour{IgnoreDPoP: true}, "Bearer", false},
		{Misbehaviour{DPoPWithoutBinding: true}, "DPoP", false},
	} {
		sb.C.SetMisbehaviour(tc.m)
		r := cGrant(t, sb, idjag(t, sb), dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{})), nil)
		jkt, _ := cnfJKT(r.str("access_token"))
		if r.status != 200 || r.str("token_type") != tc.typ || (jkt != "") != tc.wantCnf {
			t.Errorf("%+v: %v (jkt %q)", tc.m, r, jkt)
		}
	}
}

// Domain B binds its tokens as Keycloak does, and its userinfo checks them.
func TestDPoPDomainB(t *testing.T) {
	sb := start(t)
	key := dpopKey(t)
	req := func(hdr http.Header) reply {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.B.TokenEndpoint(),
			strings.NewReader(url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion(t, sb)}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(BrokerClientID, BrokerSecretB)
		for k, v := range hdr {
			req.Header[k] = v
		}
		return do(t, req)
	}
	r := req(dpopHeader(proof(t, key, "POST", sb.B.TokenEndpoint(), token.DPoPOptions{})))
	at := r.str("access_token")
	if jkt, _ := cnfJKT(at); r.status != 200 || r.str("token_type") != "DPoP" || jkt != thumbprint(t, key) {
		t.Fatalf("B with DPoP: %v", r)
	}
	ui := sb.B.UserinfoEndpoint()
	if u := userinfo(t, sb.B.Realm, "DPoP "+at, dpopHeader(proof(t, key, "GET", ui, token.DPoPOptions{AccessToken: at}))); u.status != 200 || u.str("sub") != AliceSubB {
		t.Errorf("B userinfo: %v", u)
	}
	wantError(t, userinfo(t, sb.B.Realm, "DPoP "+at, dpopHeader(proof(t, dpopKey(t), "GET", ui, token.DPoPOptions{AccessToken: at}))),
		401, errInvalidToken, DescDPoPBinding)
	wantError(t, req(dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{}))), 400, errInvalidRequest, DescDPoPURL)
}

// A proof sent with the ID-JAG exchange binds the ID-JAG (cnf.jkt); domain C
// then wants a proof of that key with the grant.
func TestDPoPBoundIDJAG(t *testing.T) {
	sb := start(t)
	key := dpopKey(t)
	exchange := func(t *testing.T) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.A.TokenEndpoint(),
			strings.NewReader(idjagForm(sb, idToken(t, sb, Alice)).Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(BrokerClientID, BrokerSecretA)
		req.Header.Set(HeaderDPoP, proof(t, key, "POST", sb.A.TokenEndpoint(), token.DPoPOptions{}))
		r := do(t, req)
		if r.status != 200 {
			t.Fatalf("exchange with DPoP: %v", r)
		}
		return r.str("access_token")
	}
	jag := exchange(t)
	if jkt, _ := cnfJKT(jag); jkt != thumbprint(t, key) {
		t.Fatalf("ID-JAG cnf.jkt %q", jkt)
	}
	wantError(t, cGrant(t, sb, jag, dpopHeader(proof(t, dpopKey(t), "POST", sb.C.TokenEndpoint(), token.DPoPOptions{})), nil),
		400, errInvalidGrant, DescGrantKeyMismatch)
	jag = exchange(t)
	wantError(t, cGrant(t, sb, jag, nil, nil), 400, errInvalidGrant, DescGrantKeyMismatch)
	jag = exchange(t)
	if r := cGrant(t, sb, jag, dpopHeader(proof(t, key, "POST", sb.C.TokenEndpoint(), token.DPoPOptions{})), nil); r.status != 200 {
		t.Errorf("same key: %v", r)
	}
}
