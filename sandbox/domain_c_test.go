package sandbox

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

func idToken(t *testing.T, sb *Sandbox, username string) string {
	t.Helper()
	tok, err := sb.A.IDToken(t.Context(), username, username)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// idjagForm is an ID-JAG token exchange for domain C.
func idjagForm(sb *Sandbox, subject string) url.Values {
	return url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {subject},
		"subject_token_type":   {TokenTypeIDToken},
		"requested_token_type": {TokenTypeIDJAG},
		"audience":             {sb.C.Issuer()},
	}
}

func idjagExchange(t *testing.T, sb *Sandbox, form url.Values) reply {
	t.Helper()
	return post(t, sb.A.TokenEndpoint(), form, BrokerClientID, BrokerSecretA)
}

// idjag returns an ID-JAG for alice and domain C.
func idjag(t *testing.T, sb *Sandbox) string {
	t.Helper()
	r := idjagExchange(t, sb, idjagForm(sb, idToken(t, sb, Alice)))
	if r.status != http.StatusOK {
		t.Fatalf("ID-JAG exchange: %v", r)
	}
	return r.str("access_token")
}

// cGrant presents an assertion at domain C as chainbroker, with extra
// headers (DPoP) and form values.
func cGrant(t *testing.T, sb *Sandbox, assertion string, hdr http.Header, extra url.Values) reply {
	t.Helper()
	form := url.Values{"grant_type": {grantJWTBearer}, "assertion": {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, sb.C.TokenEndpoint(), strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(BrokerClientID, BrokerSecretC)
	for k, v := range hdr {
		req.Header[k] = v
	}
	return do(t, req)
}

func TestIDToken(t *testing.T) {
	sb := start(t)
	r := post(t, sb.A.TokenEndpoint(), url.Values{"grant_type": {grantPassword}, "client_id": {AgentClientID},
		"username": {Alice}, "password": {AlicePassword}, "scope": {"openid"}}, "", "")
	if r.status != 200 || r.str("id_token") == "" || r.str("scope") != "openid profile email" {
		t.Fatalf("password grant with openid: %v", r)
	}
	idt := r.str("id_token")
	tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.A.JWKSURI()}, nil).Verify(t.Context(), idt)
	if err != nil {
		t.Fatalf("Verify with A's JWKS: %v", err)
	}
	c := tok.Claims
	if c.Issuer != sb.A.Issuer() || c.Subject != AliceSubA || fmt.Sprint(c.Audience) != "[sandbox-agent chainbroker]" ||
		c.AZP != AgentClientID || c.JTI == "" || c.Expiry.Sub(c.IssuedAt) != 300*time.Second {
		t.Errorf("ID token: %+v", c)
	}
	if typ, _ := tok.StringClaim("typ"); typ != "ID" {
		t.Errorf("typ claim %q", typ)
	}
	// Without openid, no ID token.
	if r := post(t, sb.A.TokenEndpoint(), url.Values{"grant_type": {grantPassword}, "client_id": {AgentClientID},
		"username": {Alice}, "password": {AlicePassword}}, "", ""); r.status != 200 || r.str("id_token") != "" {
		t.Errorf("password grant without openid: %v", r)
	}
	if got := idToken(t, sb, Bob); parsed(t, got).claims.Sub != BobSubA {
		t.Errorf("IDToken(bob) sub %q", parsed(t, got).claims.Sub)
	}
}

func TestIDJAGExchange(t *testing.T) {
	sb := start(t)
	form := idjagForm(sb, idToken(t, sb, Alice))
	form.Set("resource", "https://mcp.example/api")
	form.Set("scope", "read  write")
	r := idjagExchange(t, sb, form)
	if r.status != 200 || r.str("token_type") != "N_A" || r.str("issued_token_type") != TokenTypeIDJAG ||
		r.body["expires_in"] != float64(300) || r.str("scope") != "read write" {
		t.Fatalf("ID-JAG exchange: %v", r)
	}
	if _, ok := r.body["refresh_token"]; ok {
		t.Error("A issued a refresh token")
	}
	jag := r.str("access_token")
	tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.A.JWKSURI()}, nil).Verify(t.Context(), jag)
	if err != nil {
		t.Fatalf("Verify with A's JWKS: %v", err)
	}
	c := tok.Claims
	if tok.Header.Typ != token.TypeIDJAG || c.Issuer != sb.A.Issuer() || c.Subject != AliceSubA ||
		fmt.Sprint(c.Audience) != "["+sb.C.Issuer()+"]" || c.ClientID != BrokerClientID || c.JTI == "" ||
		c.Expiry.Sub(c.IssuedAt) != IDJAGLifetime || c.Scope != "read write" {
		t.Errorf("ID-JAG: typ %q, %+v", tok.Header.Typ, c)
	}
	if res, _ := tok.StringClaim("resource"); res != "https://mcp.example/api" {
		t.Errorf("resource %q", res)
	}
	if aud := payload(t, jag)["aud"]; string(aud) != `"`+sb.C.Issuer()+`"` {
		t.Errorf("aud is not a single string: %s", aud)
	}
	// Without scope and resource, neither claim; the client id mapped per
	// audience.
	sb.A.AllowIDJAGAudience("https://rs.example", "agent-at-rs")
	form = idjagForm(sb, idToken(t, sb, Bob))
	form.Set("audience", "https://rs.example")
	r = idjagExchange(t, sb, form)
	if r.status != 200 || r.str("scope") != "" {
		t.Fatalf("mapped exchange: %v", r)
	}
	p := payload(t, r.str("access_token"))
	if string(p["client_id"]) != `"agent-at-rs"` || string(p["sub"]) != `"`+BobSubA+`"` || p["scope"] != nil || p["resource"] != nil {
		t.Errorf("mapped ID-JAG claims: %v", p)
	}
}

func TestIDJAGExchangeRefusals(t *testing.T) {
	sb := start(t)
	alice := idToken(t, sb, Alice)
	now := time.Now()
	signedByA := func(edit func(map[string]any)) string {
		c := map[string]any{"iss": sb.A.Issuer(), "sub": AliceSubA, "aud": []string{AgentClientID, BrokerClientID},
			"azp": AgentClientID, "typ": "ID", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": newUUID()}
		edit(c)
		tok, err := sb.A.SignToken(c, "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	foreign, err := sb.C.SignToken(map[string]any{"iss": sb.C.Issuer(), "sub": AliceSubC, "aud": BrokerClientID, "typ": "ID",
		"exp": now.Add(time.Minute).Unix()}, "")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(alice, ".")
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	tests := []struct {
		name   string
		edit   func(url.Values)
		user   string // client credentials: "" chainbroker; "public" sandbox-agent without secret
		set    func()
		status int
		code   string
		desc   string
	}{
		{"public client", nil, "public", nil, 400, errInvalidClient, DescIDJAGPublicClient},
		{"issuance off", nil, "", func() { sb.A.SetIDJAGIssuance(false) }, 400, errUnauthorizedClient, DescIDJAGNotAllowed},
		{"no subject_token", func(f url.Values) { f.Del("subject_token") }, "", nil, 400, errInvalidRequest, DescIDJAGSubjectRequired},
		{"access token type", func(f url.Values) { f.Set("subject_token_type", tokenTypeAccess) }, "", nil, 400, errInvalidRequest, DescIDJAGSubjectType},
		{"no audience", func(f url.Values) { f.Del("audience") }, "", nil, 400, errInvalidRequest, DescIDJAGAudienceRequired},
		{"two audiences", func(f url.Values) { f.Add("audience", sb.B.Issuer()) }, "", nil, 400, errInvalidRequest, DescIDJAGOneAudience},
		{"audience not allowed", func(f url.Values) { f.Set("audience", sb.B.Issuer()) }, "", nil, 403, errAccessDenied, DescIDJAGAudienceNotAllowed},
		{"audience taken off", nil, "", func() { sb.A.DisallowIDJAGAudience(sb.C.Issuer()) }, 403, errAccessDenied, DescIDJAGAudienceNotAllowed},
		{"two resources", func(f url.Values) { f["resource"] = []string{"https://r1.example", "https://r2.example"} }, "", nil,
			400, errInvalidRequest, DescIDJAGOneResource},
		{"token of another realm", func(f url.Values) { f.Set("subject_token", foreign) }, "", nil, 400, errInvalidGrant, DescIDJAGForeignSubject},
		{"bad signature", func(f url.Values) { f.Set("subject_token", tampered) }, "", nil, 400, errInvalidGrant, DescIDJAGInvalidSubject},
		{"expired", func(f url.Values) {
			f.Set("subject_token", signedByA(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }))
		}, "", nil, 400, errInvalidGrant, DescIDJAGInvalidSubject},
		{"unknown user", func(f url.Values) {
			f.Set("subject_token", signedByA(func(c map[string]any) { c["sub"] = "nobody" }))
		}, "", nil, 400, errInvalidGrant, DescIDJAGInvalidSubject},
		{"access token as ID token", func(f url.Values) { f.Set("subject_token", subjectToken(t, sb, Alice)) }, "", nil,
			400, errInvalidGrant, DescIDJAGNotIDToken},
		{"not issued to the client", func(f url.Values) {
			f.Set("subject_token", signedByA(func(c map[string]any) { c["aud"] = AgentClientID }))
		}, "", nil, 400, errInvalidGrant, DescIDJAGNotIssuedToClient},
		{"scope not allowed", func(f url.Values) { f.Set("scope", "read admin") }, "", func() { sb.A.SetIDJAGAllowedScopes("read") },
			400, errInvalidScope, DescIDJAGScopeNotAllowed + "admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() {
				sb.A.SetIDJAGIssuance(true)
				sb.A.AllowIDJAGAudience(sb.C.Issuer(), "")
				sb.A.SetIDJAGAllowedScopes()
			})
			if tt.set != nil {
				tt.set()
			}
			f := idjagForm(sb, alice)
			if tt.edit != nil {
				tt.edit(f)
			}
			var r reply
			if tt.user == "public" {
				f.Set("client_id", AgentClientID)
				r = post(t, sb.A.TokenEndpoint(), f, "", "")
			} else {
				r = idjagExchange(t, sb, f)
			}
			wantError(t, r, tt.status, tt.code, tt.desc)
		})
	}
	// The control: the same ID token, unchanged, gets an ID-JAG.
	if r := idjagExchange(t, sb, idjagForm(sb, alice)); r.status != 200 {
		t.Fatalf("control: %v", r)
	}
}

func TestDomainCGrant(t *testing.T) {
	sb := start(t)
	for _, tc := range []struct{ user, subC string }{{Alice, AliceSubC}, {Bob, BobSubC}} {
		t.Run(tc.user, func(t *testing.T) {
			f := idjagForm(sb, idToken(t, sb, tc.user))
			f.Set("scope", "read")
			jag := idjagExchange(t, sb, f).str("access_token")
			jti := parsed(t, jag).claims.JTI
			before := sb.C.AcceptedCount()
			r := cGrant(t, sb, jag, nil, nil)
			if r.status != 200 || r.str("token_type") != "Bearer" || r.str("scope") != "read profile email" {
				t.Fatalf("C: %v", r)
			}
			if !sb.C.Saw(jti) || sb.C.AcceptedCount()-before != 1 || sb.C.LastAccepted()["jti"] != jti {
				t.Errorf("Saw %v, accepted delta %d, last %v", sb.C.Saw(jti), sb.C.AcceptedCount()-before, sb.C.LastAccepted())
			}
			raw := r.str("access_token")
			tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: sb.C.JWKSURI()}, nil).Verify(t.Context(), raw)
			if err != nil {
				t.Fatalf("Verify with C's JWKS: %v", err)
			}
			if c := tok.Claims; c.Issuer != sb.C.Issuer() || c.Subject != tc.subC || c.AZP != BrokerClientID {
				t.Errorf("C token: %+v", c)
			}
			if _, ok := payload(t, raw)["cnf"]; ok {
				t.Error("a token issued without DPoP has cnf")
			}
			u := userinfo(t, sb.C.Realm, "Bearer "+raw, nil)
			if u.status != 200 || u.str("sub") != tc.subC || u.str("preferred_username") != tc.user {
				t.Errorf("userinfo: %v", u)
			}
			wantError(t, cGrant(t, sb, jag, nil, nil), 400, errInvalidGrant, DescTokenReuse)
		})
	}
	// The ID-JAG's scope is the default scope, and the bound of what may be
	// asked.
	f := idjagForm(sb, idToken(t, sb, Alice))
	f.Set("scope", "read")
	if r := cGrant(t, sb, idjagExchange(t, sb, f).str("access_token"), nil, url.Values{"scope": {"read write"}}); r.status != 400 ||
		r.str("error") != errInvalidScope || r.str("error_description") != DescInvalidScope+"write" {
		t.Errorf("scope beyond the grant's: %v", r)
	}
	// client_secret_post and aud = C's token endpoint.
	sb.A.SetMisbehaviour(Misbehaviour{ExtraClaims: map[string]any{"aud": sb.C.TokenEndpoint()}})
	jag := idjag(t, sb)
	sb.A.ResetMisbehaviour()
	if r := post(t, sb.C.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}, "assertion": {jag},
		"client_id": {BrokerClientID}, "client_secret": {BrokerSecretC}}, "", ""); r.status != 200 {
		t.Errorf("client_secret_post, aud token endpoint: %v", r)
	}
}

func TestDomainCRefusals(t *testing.T) {
	sb := start(t)
	now := time.Now()
	jagSignedBy := func(s func(map[string]any, string) (string, error), typ string, edit func(map[string]any)) string {
		c := map[string]any{"iss": sb.A.Issuer(), "sub": AliceSubA, "aud": sb.C.Issuer(), "client_id": BrokerClientID,
			"jti": newUUID(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
		if edit != nil {
			edit(c)
		}
		tok, err := s(c, typ)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name string
		// m makes A misbehave; jag, when set, is presented instead.
		m      Misbehaviour
		jag    func() string
		set    func(*testing.T)
		public bool
		status int
		code   string
		desc   string
	}{
		{name: "no assertion", jag: func() string { return "" }, status: 400, code: errInvalidGrant, desc: DescMissingAssertion},
		{name: "not a JWT", jag: func() string { return "not-a-jwt" }, status: 400, code: errInvalidGrant, desc: DescAssertionNotJWT},
		{name: "public client", public: true, status: 400, code: errInvalidGrant, desc: DescPublicClient},
		{name: "grant off", set: func(*testing.T) { sb.C.SetJWTAuthorizationGrant(false) }, status: 400, code: errInvalidGrant, desc: DescJWTGrantDisabled},
		{name: "typ JWT", m: Misbehaviour{Typ: token.TypeJWT}, status: 400, code: errInvalidGrant, desc: DescIDJAGOnly},
		{name: "typ at+jwt", jag: func() string {
			return jagSignedBy(sb.A.SignToken, TypeAccessTokenJWT, nil)
		}, status: 400, code: errInvalidGrant, desc: DescIDJAGOnly},
		{name: "typ in another case", jag: func() string {
			return jagSignedBy(sb.A.SignToken, "OAUTH-ID-JAG+JWT", nil)
		}, status: 400, code: errInvalidGrant, desc: DescIDJAGOnly},
		{name: "client_id mismatch", m: Misbehaviour{ExtraClaims: map[string]any{"client_id": "someone-else"}}, status: 400,
			code: errInvalidGrant, desc: fmt.Sprintf(DescIDJAGClientID, "someone-else", BrokerClientID)},
		{name: "client_id absent", m: Misbehaviour{ExtraClaims: map[string]any{"client_id": nil}}, status: 400,
			code: errInvalidGrant, desc: fmt.Sprintf(DescIDJAGClientID, "null", BrokerClientID)},
		{name: "iss absent", m: Misbehaviour{ExtraClaims: map[string]any{"iss": nil}}, status: 400, code: errInvalidGrant, desc: DescMissingIssuer},
		{name: "sub absent", m: Misbehaviour{OmitSub: true}, status: 400, code: errInvalidGrant, desc: DescMissingSubject},
		{name: "unknown issuer", m: Misbehaviour{Issuer: "https://idp.example"}, status: 400, code: errInvalidGrant, desc: DescUnknownIssuer},
		{name: "provider disabled", set: func(t *testing.T) { mustNil(t, sb.C.SetIdentityProviderEnabled(IdentityProviderAlias, false)) },
			status: 400, code: errInvalidGrant, desc: DescUnknownIssuer},
		{name: "provider not allowed", set: func(*testing.T) { sb.C.SetAllowedIdentityProviders() }, status: 400, code: errInvalidGrant, desc: DescIdPNotAllowed},
		{name: "iat absent", m: Misbehaviour{ExtraClaims: map[string]any{"iat": nil}}, status: 400, code: errInvalidGrant, desc: DescIssuedAtRequired},
		{name: "exp absent", m: Misbehaviour{OmitExp: true}, status: 400, code: errInvalidGrant, desc: DescExpRequired},
		{name: "expired", m: Misbehaviour{Expired: true}, status: 400, code: errInvalidGrant, desc: DescNotActive},
		{name: "not yet valid", m: Misbehaviour{NotBeforeFuture: true}, status: 400, code: errInvalidGrant, desc: DescNotActive},
		{name: "issued in the future", m: Misbehaviour{IssuedAtFuture: true}, status: 400, code: errInvalidGrant, desc: DescIssuedInFuture},
		{name: "issued too long ago", m: Misbehaviour{IssuedAtAge: 10 * time.Minute, Lifetime: 20 * time.Minute}, status: 400,
			code: errInvalidGrant, desc: DescIssuedTooLongAgo},
		{name: "lifetime too long", m: Misbehaviour{Lifetime: time.Hour}, status: 400, code: errInvalidGrant, desc: DescLifetimeTooLong},
		{name: "jti absent", m: Misbehaviour{OmitJTI: true}, status: 400, code: errInvalidGrant, desc: DescJTIRequired},
		{name: "jti absent, reuse allowed", m: Misbehaviour{OmitJTI: true},
			set:    func(t *testing.T) { mustNil(t, sb.C.SetTrust(IdentityProviderAlias, Trust{AllowReuse: true})) },
			status: 400, code: errInvalidGrant, desc: DescJTIRequired},
		{name: "alg HS256", m: Misbehaviour{Alg: "HS256"}, status: 400, code: errInvalidGrant, desc: DescInvalidSignatureAlg},
		{name: "alg not allowed by the provider", m: Misbehaviour{},
			set: func(t *testing.T) {
				mustNil(t, sb.C.SetTrust(IdentityProviderAlias, Trust{AllowedAlgs: []string{"ES256"}}))
			},
			status: 400, code: errInvalidGrant, desc: DescInvalidSignatureAlg},
		{name: "two audiences", m: Misbehaviour{ExtraAudience: "https://other.example"}, status: 400, code: errInvalidGrant, desc: DescMultipleAudiences},
		{name: "another audience", m: Misbehaviour{ExtraClaims: map[string]any{"aud": sb.B.Issuer()}}, status: 400,
			code: errInvalidGrant, desc: DescInvalidAudience},
		{name: "bad signature", m: Misbehaviour{BadSignature: true}, status: 400, code: errInvalidGrant, desc: DescInvalidSignature},
		{name: "unknown kid", m: Misbehaviour{UnknownKid: true}, status: 400, code: errInvalidGrant, desc: DescInvalidSignature},
		{name: "cnf.jkt without a proof", m: Misbehaviour{ExtraClaims: map[string]any{"cnf": map[string]any{"jkt": "abc"}}},
			status: 400, code: errInvalidGrant, desc: DescGrantKeyMismatch},
		{name: "jti seen before", m: Misbehaviour{FixedJTI: "used"},
			set:    func(*testing.T) { sb.C.RememberJTI(sb.A.Issuer(), "used", time.Now().Add(time.Hour)) },
			status: 400, code: errInvalidGrant, desc: DescTokenReuse},
		{name: "user not linked", set: func(*testing.T) { sb.C.UnlinkFor(IdentityProviderAlias, AliceSubA) }, status: 400,
			code: errInvalidGrant, desc: DescUserNotFound},
		{name: "user disabled", set: func(t *testing.T) { mustNil(t, sb.C.SetUserEnabled(Alice, false)) }, status: 400,
			code: errInvalidGrant, desc: DescUserDisabled},
		{name: "required action", set: func(t *testing.T) { mustNil(t, sb.C.SetRequiredActions(Alice, "VERIFY_EMAIL")) }, status: 400,
			code: errInvalidGrant, desc: DescAccountNotSetUp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() {
				sb.A.ResetMisbehaviour()
				sb.C.SetJWTAuthorizationGrant(true)
				mustNil(t, sb.C.SetIdentityProviderEnabled(IdentityProviderAlias, true))
				sb.C.SetAllowedIdentityProviders(IdentityProviderAlias)
				mustNil(t, sb.C.SetTrust(IdentityProviderAlias, DefaultTrust()))
				mustNil(t, sb.C.LinkFor(IdentityProviderAlias, AliceSubA, Alice))
				mustNil(t, sb.C.SetUserEnabled(Alice, true))
				mustNil(t, sb.C.SetRequiredActions(Alice))
			})
			if tt.set != nil {
				tt.set(t)
			}
			sb.A.SetMisbehaviour(tt.m)
			var jag string
			if tt.jag != nil {
				jag = tt.jag()
			} else {
				jag = idjag(t, sb)
			}
			var r reply
			switch {
			case tt.public:
				r = post(t, sb.C.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}, "assertion": {jag},
					"client_id": {AgentClientID}}, "", "")
			case tt.name == "no assertion":
				r = post(t, sb.C.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}}, BrokerClientID, BrokerSecretC)
			default:
				r = cGrant(t, sb, jag, nil, nil)
			}
			wantError(t, r, tt.status, tt.code, tt.desc)
		})
	}
	// Confidential client authentication comes first.
	if r := post(t, sb.C.TokenEndpoint(), url.Values{"grant_type": {grantJWTBearer}, "assertion": {idjag(t, sb)}},
		BrokerClientID, "wrong"); r.status != 401 || r.str("error") != errInvalidClient {
		t.Errorf("wrong secret: %v", r)
	}
	// The control: after every switch was reset, a fresh ID-JAG passes.
	if r := cGrant(t, sb, idjag(t, sb), nil, nil); r.status != 200 {
		t.Fatalf("control: %v", r)
	}
}

// Domain C trusts the broker's issuer: ID-JAGs signed with the keys at
// <issuer>/.well-known/jwks.json, for A's subjects.
func TestDomainCTrustBroker(t *testing.T) {
	sb := start(t)
	key, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	jwks := newJWKSServer(t, key) // serves its JWKS on every path
	if err := sb.C.TrustBroker(jwks.URL); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(sub string) string {
		tok, err := key.Sign(map[string]any{"iss": jwks.URL, "sub": sub, "aud": sb.C.Issuer(), "client_id": BrokerClientID,
			"jti": newUUID(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "act": map[string]any{"sub": "agent-7"}},
			token.SignOptions{Typ: token.TypeIDJAG})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for sub, want := range map[string]string{AliceSubA: AliceSubC, BobSubA: BobSubC} {
		r := cGrant(t, sb, sign(sub), nil, nil)
		if r.status != 200 || parsed(t, r.str("access_token")).claims.Sub != want {
			t.Errorf("%s: %v", sub, r)
		}
	}
	wantError(t, cGrant(t, sb, sign("mallory"), nil, nil), 400, errInvalidGrant, DescUserNotFound)
	if act, ok := sb.C.LastAccepted()["act"].(map[string]any); !ok || act["sub"] != "agent-7" {
		t.Errorf("LastAccepted act = %v", sb.C.LastAccepted()["act"])
	}
	// Domain A's ID-JAGs keep working beside it.
	if r := cGrant(t, sb, idjag(t, sb), nil, nil); r.status != 200 {
		t.Errorf("domain-a: %v", r)
	}
	if err := sb.C.TrustIdentityProvider("other", jwks.URL, jwks.URL+"/jwks", DefaultTrust()); err == nil {
		t.Error("a second provider took the broker's issuer")
	}
}

func TestDomainCDiscovery(t *testing.T) {
	sb := start(t)
	if _, port, _ := net.SplitHostPort(strings.TrimPrefix(strings.Split(sb.C.Issuer(), "/realms/")[0], "http://")); port == "8383" {
		t.Errorf("C took the default port in a test: %s", sb.C.Issuer())
	}
	if sb.C.Issuer() != strings.Split(sb.C.Issuer(), "/realms/")[0]+"/realms/"+DomainCName {
		t.Errorf("Issuer %q", sb.C.Issuer())
	}
	r := get(t, sb.C.DiscoveryURL())
	grants, _ := r.body["grant_types_supported"].([]any)
	algs, _ := r.body["dpop_signing_alg_values_supported"].([]any)
	if r.status != 200 || r.str("issuer") != sb.C.Issuer() || r.str("token_endpoint") != sb.C.TokenEndpoint() ||
		r.str("userinfo_endpoint") != sb.C.UserinfoEndpoint() || r.str("jwks_uri") != sb.C.JWKSURI() ||
		fmt.Sprint(grants) != "["+grantJWTBearer+"]" || len(algs) == 0 {
		t.Errorf("discovery: %v", r)
	}
	if sb.C.UserinfoEndpoint() != sb.C.Issuer()+"/protocol/openid-connect/userinfo" {
		t.Errorf("userinfo endpoint %q", sb.C.UserinfoEndpoint())
	}
}

// An explicit CAddr is used as given.
func TestDomainCAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sb, err := Start(t.Context(), Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0", CAddr: addr})
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer sb.Close()
	if want := "http://" + addr + "/realms/" + DomainCName; sb.C.Issuer() != want {
		t.Errorf("Issuer %q, want %q", sb.C.Issuer(), want)
	}
}
