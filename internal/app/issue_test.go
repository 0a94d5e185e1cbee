package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/keyset"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// writeKey generates an ES256 key into dir and returns its file and kid.
func writeKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	pemBytes, kid, err := keyset.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, kid
}

// issueEnv: domain A without token exchange; the broker issues the grants
// itself (mode issue) and domain B trusts it as an identity provider through
// its JWKS URL. alice is mapped by preferred_username; bob is not mapped.
func issueEnv(t *testing.T) (*apptest.Env, []string) {
	dir := t.TempDir()
	k1, kid1 := writeKey(t, dir, "k1.pem")
	k2, kid2 := writeKey(t, dir, "k2.pem")
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		f.Issuer = config.Issuer{URL: "http://" + f.Listen.HTTP, Keys: []config.IssuerKey{
			{File: k1, State: "active"}, {File: k2, State: "published"},
		}}
		c := &f.Chains[0]
		c.Mode = "issue"
		c.SubjectAudience = []string{"chainbroker"}
		c.Transcription = config.Transcription{
			SubjectClaim: "preferred_username",
			SubjectMap:   map[string]string{"alice": "alice@example.com"},
			Claims:       []string{"azp"},
			Act:          true,
		}
	}})
	e.Sandbox.A.SetTokenExchange(false)
	issuer := e.App.Config.Issuer.URL
	if err := e.Sandbox.B.TrustIdentityProvider("chainbroker", issuer, issuer+"/.well-known/jwks.json", sandbox.DefaultTrust()); err != nil {
		t.Fatal(err)
	}
	if err := e.Sandbox.B.LinkFor("chainbroker", "alice@example.com", sandbox.Alice); err != nil {
		t.Fatal(err)
	}
	return e, []string{kid1, kid2}
}

func TestIssueMode(t *testing.T) {
	e, kids := issueEnv(t)
	subject := e.SubjectToken(t, sandbox.Alice) // aud: [chainbroker account]: two audiences
	bCalls := e.Sandbox.B.JWTBearerCount()
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: []string{"profile"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := e.CheckBToken(t, resp.AccessToken); c.Subject != sandbox.AliceSubB {
		t.Errorf("B token sub %q, want alice's user %q", c.Subject, sandbox.AliceSubB)
	}
	if e.Sandbox.A.ExchangeCount() != 0 || e.Sandbox.B.JWTBearerCount() != bCalls+1 {
		t.Errorf("exchanges at A: %d (want 0); jwt-bearer at B: +%d", e.Sandbox.A.ExchangeCount(), e.Sandbox.B.JWTBearerCount()-bCalls)
	}
	got := e.Sandbox.B.LastAccepted()
	act, _ := got["act"].(map[string]any)
	if got["iss"] != e.App.Config.Issuer.URL || got["sub"] != "alice@example.com" || got["aud"] != e.Sandbox.B.Issuer() ||
		act["sub"] != "anonymous" || got["azp"] != sandbox.AgentClientID || got["scope"] != "profile" || got["jti"] == "" {
		t.Errorf("assertion B accepted: %v", got)
	}
	if iat, exp := got["iat"].(float64), got["exp"].(float64); exp-iat != 60 {
		t.Errorf("assertion lifetime %vs, want the default 60s", exp-iat)
	}
	ev, err := e.Audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: resp.AuditId})
	if err != nil {
		t.Fatal(err)
	}
	if x := ev.Event; x.Mode != "issue" || x.MappedSubject != "alice@example.com" || !slices.Equal(x.TranscribedClaims, []string{"azp", "act"}) ||
		x.AssertionJtiHash == "" || x.AssertionIssuer != e.App.Config.Issuer.URL || len(x.AssertionAudience) != 1 {
		t.Errorf("audit event: %v", x)
	}

	t.Run("well-known documents", func(t *testing.T) {
		status, body := e.Get(t, "/.well-known/openid-configuration")
		var md map[string]any
		if status != 200 || json.Unmarshal(body, &md) != nil || md["issuer"] != e.App.Config.Issuer.URL ||
			md["jwks_uri"] != e.App.Config.Issuer.URL+"/.well-known/jwks.json" {
			t.Errorf("metadata: %d %s", status, body)
		}
		status, body = e.Get(t, "/.well-known/jwks.json")
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		if status != 200 || json.Unmarshal(body, &set) != nil || len(set.Keys) != 2 {
			t.Fatalf("jwks: %d %s", status, body)
		}
		for i, k := range set.Keys {
			if k["kid"] != kids[0] && k["kid"] != kids[1] || k["d"] != nil {
				t.Errorf("key %d: %v", i, k)
			}
		}
	})
}

// The subject token is checked before anything is signed; each refusal has
// its reason, is audited, and domain B is never called.
func TestIssueModeRejections(t *testing.T) {
	e, _ := issueEnv(t)
	now := time.Now().Unix()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": e.Sandbox.A.Issuer(), "sub": sandbox.AliceSubA, "preferred_username": "alice",
			"aud": []string{"chainbroker", "account"}, "iat": now, "exp": now + 300, "jti": "x"}
		mod(c)
		return c
	}
	sign := func(mod func(map[string]any)) string {
		tok, err := e.Sandbox.A.SignToken(claims(mod), "JWT")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	other, _ := token.GenerateSigner("RS256")
	forged, _ := other.Sign(claims(func(map[string]any) {}), token.SignOptions{Kid: e.Sandbox.A.KeyID()})
	tests := []struct {
		name, token, source, reason string
		code                        codes.Code
	}{
		{"bad signature", forged, "", "SUBJECT_TOKEN_INVALID", codes.InvalidArgument},
		{"wrong issuer", sign(func(c map[string]any) { c["iss"] = "https://elsewhere.example" }), "domain-a", "SUBJECT_TOKEN_INVALID", codes.InvalidArgument},
		{"expired", sign(func(c map[string]any) { c["exp"] = now - 1 }), "", "SUBJECT_TOKEN_EXPIRED", codes.InvalidArgument},
		{"not for the broker", sign(func(c map[string]any) { c["aud"] = "account" }), "", "SUBJECT_TOKEN_AUDIENCE_INVALID", codes.InvalidArgument},
		{"unmapped user", sign(func(c map[string]any) { c["preferred_username"] = "bob" }), "", "SUBJECT_UNMAPPED", codes.PermissionDenied},
		{"no claim to map", sign(func(c map[string]any) { delete(c, "preferred_username") }), "", "SUBJECT_UNMAPPED", codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Sandbox.B.JWTBearerCount()
			_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: tt.token, SourceDomain: tt.source, TargetDomain: "domain-b"})
			if status.Code(err) != tt.code || reason(err) != tt.reason {
				t.Fatalf("got %v %q (%v), want %v %s", status.Code(err), reason(err), err, tt.code, tt.reason)
			}
			if e.Sandbox.B.JWTBearerCount() != before {
				t.Error("domain B was called")
			}
			if ev := e.LastEvent(t); ev.Reason != tt.reason || ev.Mode != "issue" || ev.AssertionJtiHash != "" {
				t.Errorf("audit event: %v", ev)
			}
		})
	}
}

// Rotation: a published key becomes active, then the old one retires;
// domain B (which refetches the JWKS on an unknown kid) accepts every chain
// across the switch.
func TestIssuerKeyRotation(t *testing.T) {
	e, kids := issueEnv(t)
	k := e.App.Config.Issuer.Keys
	steps := [][]keyset.KeyConfig{
		{{File: k[0].File, State: keyset.Active}, {File: k[1].File, State: keyset.Published}},
		{{File: k[0].File, State: keyset.Published}, {File: k[1].File, State: keyset.Active}},
		{{File: k[0].File, State: keyset.Retired}, {File: k[1].File, State: keyset.Active}},
	}
	wantKid := []string{kids[0], kids[1], kids[1]}
	for i, step := range steps {
		if err := e.App.IssuerKeys.Replace(step); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			subject := e.SubjectToken(t, sandbox.Alice)
			if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"}); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if got := e.App.IssuerKeys.Signer().KeyID(); got != wantKid[i] {
			t.Errorf("step %d: signing kid %s, want %s", i, got, wantKid[i])
		}
	}
	_, body := e.Get(t, "/.well-known/jwks.json")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	json.Unmarshal(body, &set)
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != kids[1] {
		t.Errorf("after retirement the JWKS lists %v", set.Keys)
	}
}

// In token exchange mode, `act` transcription sends domain A a broker-signed
// actor_token naming the caller (RFC 8693 §2.1).
func TestActorTokenInExchangeMode(t *testing.T) {
	key, _ := writeKey(t, t.TempDir(), "k.pem")
	p := apptest.NewProxy(t, "")
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		p.Front(0, nil)(f)
		f.Issuer = config.Issuer{URL: "http://" + f.Listen.HTTP, Keys: []config.IssuerKey{{File: key, State: "active"}}}
		f.Chains[0].Transcription.Act = true
	}})
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, "alice"), TargetDomain: "domain-b"}); err != nil {
		t.Fatal(err)
	}
	form := p.Requests()[0].Form
	if form.Get("actor_token_type") != "urn:ietf:params:oauth:token-type:jwt" {
		t.Fatalf("actor_token_type %q", form.Get("actor_token_type"))
	}
	v, err := token.NewStaticVerifier(e.App.IssuerKeys.JWKS(), nil)
	if err != nil {
		t.Fatal(err)
	}
	actor, err := v.Verify(ctxT(t), form.Get("actor_token"))
	if err != nil {
		t.Fatalf("actor token does not verify with the broker's JWKS: %v", err)
	}
	if c := actor.Claims; c.Subject != "anonymous" || c.Issuer != e.App.Config.Issuer.URL || len(c.Audience) != 1 || c.Audience[0] != e.Sandbox.A.Issuer() {
		t.Errorf("actor token claims %+v", c)
	}
}
