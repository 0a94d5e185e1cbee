package token

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// FuzzDecodeFast checks decodeHeader and decodeClaims against the
// reflection-based decoding they stand for: same fields, same members, same
// errors, for any bytes isJSONObject lets through.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"alg":"RS256","kid":"k1","typ":"JWT"}`,
		`{"alg":null,"kid":5}`, `{"alg":"a","alg":null}`, `{"crit":null,"b64":false,"alg":"\u0041"}`,
		`{"iss":"https://a.example/realms/a","sub":"u-1","aud":["b","c"],"exp":1900000000,"iat":1800000000,"jti":"j","azp":"x","scope":"openid profile","typ":"Bearer","realm_access":{"roles":["r"]}}`,
		`{"aud":"b","exp":1.5,"nbf":-3,"iat":null,"scope":["a","b"],"client_id":null}`,
		`{"aud":[],"exp":"1900000000"}`, `{"aud":["a",1]}`, `{"aud":[null,"a"]}`, `{"exp":9999999999999999}`,
		`{"iss":"a","iss":"b","ISS":"c"}`, `{"sub":"\u00e9"}`, `{"é":1,"sub":"s"}`, "{}\f", ` {"jti" : "j" } `,
		`{"exp":1e400}`, `{"scope":5}`, `{"iss":"a"`, `{"azp":{"a":1},"azp":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !isJSONObject(b) {
			return
		}
		var h1, h2 rawHeader
		err1, err2 := decodeHeader(b, &h1), unmarshalExact(b, &h2)
		if fmt.Sprint(err1) != fmt.Sprint(err2) || err1 == nil && !reflect.DeepEqual(h1, h2) {
			t.Fatalf("header %q: decodeHeader %+v, %v; unmarshalExact %+v, %v", b, h1, err1, h2, err2)
		}
		var c1, c2 rawClaims
		m1, err1 := decodeClaims(b, &c1)
		m2, err2 := unmarshalExactMembers(b, &c2)
		if fmt.Sprint(err1) != fmt.Sprint(err2) {
			t.Fatalf("claims %q: decodeClaims %v; unmarshalExactMembers %v", b, err1, err2)
		}
		if err1 != nil {
			return
		}
		if !reflect.DeepEqual(c1, c2) {
			t.Fatalf("claims %q: decodeClaims %+v; unmarshalExactMembers %+v", b, c1, c2)
		}
		if len(m1) != len(m2) {
			t.Fatalf("claims %q: %d members, want %d", b, len(m1), len(m2))
		}
		for k, v := range m2 {
			if string(m1[k]) != string(v) {
				t.Fatalf("claims %q: member %q is %q, want %q", b, k, m1[k], v)
			}
		}
	})
}

// TestVerifyAllocations bounds the allocations of verifying an RS256 grant
// shaped like Keycloak's: 21 with decodeHeader, decodeClaims and verifyPKCS1v15 (most of
// them crypto/rsa's), 135 with the reflection-based decoding.
func TestVerifyAllocations(t *testing.T) {
	s := mustSigner(t, "RS256")
	v, err := NewStaticVerifier(mustJWKS(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, s, keycloakClaims(), SignOptions{})
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got := testing.AllocsPerRun(100, func() { _, _ = v.Verify(ctx, tok) }); got > verifyAllocCeiling {
		t.Errorf("Verify: %v allocations, want at most %v", got, verifyAllocCeiling)
	}
}

const verifyAllocCeiling = 23

// keycloakClaims are the claims of a Keycloak token exchange grant.
func keycloakClaims() map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(`{"exp":1900000300,"iat":1900000000,"jti":"trrtcc:5b0b4a9e-8f3a-4c52-9f64-0d5c2e1b7a31",
		"iss":"http://127.0.0.1:8081/realms/a","aud":"http://127.0.0.1:8082/realms/b","sub":"4c1e4f2e-6d0b-4f0e-9d6f-2b8f4b7a9c11",
		"typ":"Bearer","azp":"chainbroker","sid":"0e7d1c3b-2a9f-4e8d-b6c5-7f1a2b3c4d5e","acr":"1","scope":"openid profile email",
		"email_verified":true,"name":"Alice Liddell","preferred_username":"alice","given_name":"Alice","family_name":"Liddell",
		"email":"alice@example.com","realm_access":{"roles":["offline_access","uma_authorization"]}}`), &m); err != nil {
		panic(err)
	}
	return m
}

func BenchmarkVerifyRS256Keycloak(b *testing.B) {
	s := mustSigner(b, "RS256")
	v, err := NewStaticVerifier(mustJWKS(b, s), nil)
	if err != nil {
		b.Fatal(err)
	}
	tok := mustSign(b, s, keycloakClaims(), SignOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
