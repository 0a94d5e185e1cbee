package app_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// End-to-end tests of the ID-JAG profile and DPoP (docs/id-jag.md): the
// sandbox's domain A issues ID-JAGs, its domain C (Keycloak 26.7's receiver)
// takes them, both over real HTTP, through the broker's gRPC and REST APIs.

const tokenTypeIDToken = "urn:ietf:params:oauth:token-type:id_token"

// idToken is alice's (or bob's) ID token from domain A.
func idToken(t *testing.T, e *apptest.Env, user string) string {
	t.Helper()
	tok, err := e.Sandbox.A.IDToken(ctxT(t), user, user)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkCToken verifies an access token with domain C's JWKS.
func checkCToken(t *testing.T, e *apptest.Env, access string) *token.Token {
	t.Helper()
	tok, err := token.NewRemoteVerifier(token.RemoteKeys{URL: e.Sandbox.C.JWKSURI()}, nil).Verify(ctxT(t), access)
	if err != nil {
		t.Fatalf("C's access token does not verify with C's JWKS: %v", err)
	}
	if tok.Claims.Issuer != e.Sandbox.C.Issuer() {
		t.Errorf("access token iss = %q, want domain C %q", tok.Claims.Issuer, e.Sandbox.C.Issuer())
	}
	return tok
}

func dpopKey(t *testing.T) *token.Signer {
	t.Helper()
	k, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func proof(t *testing.T, key *token.Signer, method, u string, opts token.DPoPOptions) string {
	t.Helper()
	p, err := key.DPoPProof(method, u, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// userinfo calls domain C's userinfo endpoint with a DPoP-bound token and a
// proof of key.
func userinfo(t *testing.T, e *apptest.Env, access string, key *token.Signer) (int, map[string]any) {
	t.Helper()
	u := e.Sandbox.C.UserinfoEndpoint()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "DPoP "+access)
	req.Header.Set("DPoP", proof(t, key, http.MethodGet, u, token.DPoPOptions{AccessToken: access}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// Alice's ID token -> ID-JAG at domain A -> domain C's access token, over
// gRPC and REST, plain and DPoP-bound; the bound token works at C's
// userinfo with the caller's key and not with another.
func TestIDJAGChain(t *testing.T) {
	e := apptest.Start(t, nil)
	key := dpopKey(t)
	thumb, err := key.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("grpc", func(t *testing.T) {
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice),
			SubjectTokenType: tokenTypeIDToken, TargetDomain: sandbox.DomainCName})
		if err != nil {
			t.Fatal(err)
		}
		if c := checkCToken(t, e, resp.AccessToken).Claims; c.Subject != sandbox.AliceSubC {
			t.Errorf("sub %q, want alice's user in C %q", c.Subject, sandbox.AliceSubC)
		}
		if resp.Profile != "id_jag" || !strings.EqualFold(resp.TokenType, "Bearer") || len(resp.Hops) != 2 ||
			resp.Hops[1].Domain != sandbox.DomainCName || resp.Hops[0].AssertionJtiHash == "" {
			t.Errorf("response %v", resp)
		}
		jag := e.Sandbox.C.LastAccepted()
		if jag["client_id"] != sandbox.BrokerClientID || jag["aud"] != e.Sandbox.C.Issuer() || jag["iss"] != e.Sandbox.A.Issuer() || jag["sub"] != sandbox.AliceSubA {
			t.Errorf("the ID-JAG C accepted: %v", jag)
		}
		ev := e.LastEvent(t)
		if ev.Profile != "id_jag" || ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || ev.TargetDomain != sandbox.DomainCName || ev.DpopJkt != "" {
			t.Errorf("audit event %v", ev)
		}
	})

	t.Run("grpc with DPoP", func(t *testing.T) {
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice),
			SubjectTokenType: tokenTypeIDToken, TargetDomain: sandbox.DomainCName,
			DpopProof: proof(t, key, http.MethodPost, e.Sandbox.C.TokenEndpoint(), token.DPoPOptions{})})
		if err != nil {
			t.Fatal(err)
		}
		at := checkCToken(t, e, resp.AccessToken)
		if cnf, _ := at.Claim("cnf"); resp.TokenType != "DPoP" || string(cnf) != `{"jkt":"`+thumb+`"}` {
			t.Fatalf("token_type %q, cnf %s; want DPoP bound to %s", resp.TokenType, cnf, thumb)
		}
		if ev := e.LastEvent(t); ev.DpopJkt != thumb {
			t.Errorf("audit dpop_jkt %q", ev.DpopJkt)
		}
		if status, body := userinfo(t, e, resp.AccessToken, key); status != 200 || body["sub"] != sandbox.AliceSubC {
			t.Errorf("userinfo with the key: %d %v", status, body)
		}
		if status, body := userinfo(t, e, resp.AccessToken, dpopKey(t)); status != 401 || body["error_description"] != sandbox.DescDPoPBinding {
			t.Errorf("userinfo with another key: %d %v", status, body)
		}
	})

	t.Run("grpc with DPoP, the ID-JAG bound too", func(t *testing.T) {
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice),
			SubjectTokenType: tokenTypeIDToken, TargetDomain: sandbox.DomainCName,
			DpopProof:       proof(t, key, http.MethodPost, e.Sandbox.C.TokenEndpoint(), token.DPoPOptions{}),
			SourceDpopProof: proof(t, key, http.MethodPost, e.Sandbox.A.TokenEndpoint(), token.DPoPOptions{})})
		if err != nil {
			t.Fatal(err)
		}
		cnf, _ := e.Sandbox.C.LastAccepted()["cnf"].(map[string]any)
		if resp.TokenType != "DPoP" || cnf["jkt"] != thumb {
			t.Errorf("token_type %q, the ID-JAG's cnf %v", resp.TokenType, cnf)
		}
		// A source proof of another key is refused before any call.
		_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice),
			SubjectTokenType: tokenTypeIDToken, TargetDomain: sandbox.DomainCName,
			DpopProof:       proof(t, key, http.MethodPost, e.Sandbox.C.TokenEndpoint(), token.DPoPOptions{}),
			SourceDpopProof: proof(t, dpopKey(t), http.MethodPost, e.Sandbox.A.TokenEndpoint(), token.DPoPOptions{})})
		if code, info := errorInfo(t, err); code != codes.InvalidArgument || info.Reason != "DPOP_PROOF_INVALID" || info.Metadata["field"] != "source_dpop_proof" {
			t.Errorf("%v %v", code, info)
		}
	})

	t.Run("rest with DPoP", func(t *testing.T) {
		status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": idToken(t, e, sandbox.Bob),
			"subject_token_type": tokenTypeIDToken, "target_domain": "domain-c",
			"dpop_proof": proof(t, key, http.MethodPost, e.Sandbox.C.TokenEndpoint(), token.DPoPOptions{})})
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var resp struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			Profile     string `json:"profile"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.TokenType != "DPoP" || resp.Profile != "id_jag" || checkCToken(t, e, resp.AccessToken).Claims.Subject != sandbox.BobSubC {
			t.Errorf("response %s", body)
		}
		if status, info := userinfo(t, e, resp.AccessToken, key); status != 200 || info["sub"] != sandbox.BobSubC {
			t.Errorf("userinfo: %d %v", status, info)
		}
	})

	t.Run("ListDomains", func(t *testing.T) {
		resp, err := e.Chain.ListDomains(ctxT(t), &pb.ListDomainsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range resp.Chains {
			switch c.TargetDomain {
			case sandbox.DomainCName:
				found = c.Profile == "id_jag"
			case sandbox.DomainBName:
				if c.Profile != "jwt_grant" {
					t.Errorf("A -> B profile %q", c.Profile)
				}
			}
		}
		if !found {
			t.Errorf("no id_jag chain to domain-c: %v", resp.Chains)
		}
		for _, d := range resp.Domains {
			if d.Name == sandbox.DomainCName && d.TokenEndpoint != e.Sandbox.C.TokenEndpoint() {
				t.Errorf("domain-c token endpoint %q (a proof's htu)", d.TokenEndpoint)
			}
		}
	})
}

// Each check of the ID-JAG and of the caller's DPoP proof has its reason;
// refused grants never reach domain C.
func TestIDJAGRefusals(t *testing.T) {
	e := apptest.Start(t, nil)
	key := dpopKey(t)
	te := func() string { return e.Sandbox.C.TokenEndpoint() }
	okProof := func(t *testing.T) string { return proof(t, key, http.MethodPost, te(), token.DPoPOptions{}) }
	replayed := ""
	tests := []struct {
		name   string
		a, c   sandbox.Misbehaviour
		req    func(t *testing.T, r *pb.ChainRequest)
		code   codes.Code
		reason string
		sentC  bool // the grant reached domain C (req's own earlier chains aside)
	}{
		{name: "typ JWT", a: sandbox.Misbehaviour{Typ: token.TypeJWT}, code: codes.FailedPrecondition, reason: "ASSERTION_TYPE_INVALID"},
		{name: "two audiences", a: sandbox.Misbehaviour{ExtraAudience: "https://other.example"}, code: codes.FailedPrecondition, reason: "ASSERTION_AUDIENCE_MULTIPLE"},
		{name: "client_id mismatch", a: sandbox.Misbehaviour{ExtraClaims: map[string]any{"client_id": "someone-else"}},
			code: codes.FailedPrecondition, reason: "ASSERTION_CLIENT_ID_MISMATCH"},
		{name: "no jti", a: sandbox.Misbehaviour{OmitJTI: true}, code: codes.FailedPrecondition, reason: "ASSERTION_JTI_MISSING"},
		{name: "no iat", a: sandbox.Misbehaviour{ExtraClaims: map[string]any{"iat": nil}}, code: codes.FailedPrecondition, reason: "ASSERTION_IAT_MISSING"},
		{name: "lifetime too long", a: sandbox.Misbehaviour{Lifetime: time.Hour}, code: codes.FailedPrecondition, reason: "ASSERTION_LIFETIME_TOO_LONG"},
		{name: "bad signature", a: sandbox.Misbehaviour{BadSignature: true}, code: codes.FailedPrecondition, reason: "ASSERTION_SIGNATURE_INVALID"},
		{name: "not an ID-JAG answer", a: sandbox.Misbehaviour{IssuedTokenType: "urn:ietf:params:oauth:token-type:access_token"},
			code: codes.FailedPrecondition, reason: "ASSERTION_ISSUED_TOKEN_TYPE_INVALID"},
		{name: "scope wider than asked", a: sandbox.Misbehaviour{ExtraClaims: map[string]any{"scope": "admin"}},
			code: codes.FailedPrecondition, reason: "ASSERTION_SCOPE_WIDER"},
		{name: "replayed jti", a: sandbox.Misbehaviour{FixedJTI: "always-the-same"}, req: func(t *testing.T, _ *pb.ChainRequest) {
			if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice), TargetDomain: "domain-c"}); err != nil {
				t.Fatalf("first use: %v", err)
			}
		}, code: codes.PermissionDenied, reason: "ASSERTION_REPLAYED"},
		{name: "stale proof", req: func(t *testing.T, r *pb.ChainRequest) {
			r.DpopProof = proof(t, key, http.MethodPost, te(), token.DPoPOptions{IssuedAt: time.Now().Add(-time.Minute)})
		}, code: codes.InvalidArgument, reason: "DPOP_PROOF_INVALID"},
		{name: "proof for another endpoint (htu)", req: func(t *testing.T, r *pb.ChainRequest) {
			r.DpopProof = proof(t, key, http.MethodPost, e.Sandbox.B.TokenEndpoint(), token.DPoPOptions{})
		}, code: codes.InvalidArgument, reason: "DPOP_PROOF_INVALID"},
		{name: "proof for GET (htm)", req: func(t *testing.T, r *pb.ChainRequest) {
			r.DpopProof = proof(t, key, http.MethodGet, te(), token.DPoPOptions{})
		}, code: codes.InvalidArgument, reason: "DPOP_PROOF_INVALID"},
		{name: "not a proof", req: func(_ *testing.T, r *pb.ChainRequest) { r.DpopProof = "garbage" },
			code: codes.InvalidArgument, reason: "DPOP_PROOF_INVALID"},
		{name: "replayed proof", req: func(t *testing.T, r *pb.ChainRequest) {
			replayed = okProof(t)
			first := &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice), TargetDomain: "domain-c", DpopProof: replayed}
			if _, err := e.Chain.Chain(ctxT(t), first); err != nil {
				t.Fatalf("first use: %v", err)
			}
			r.DpopProof = replayed
		}, code: codes.InvalidArgument, reason: "DPOP_PROOF_REPLAYED"},
		{name: "target ignores the binding", c: sandbox.Misbehaviour{IgnoreDPoP: true},
			req:  func(t *testing.T, r *pb.ChainRequest) { r.DpopProof = okProof(t) },
			code: codes.FailedPrecondition, reason: "DPOP_BINDING_MISSING", sentC: true},
		{name: "target says DPoP without binding", c: sandbox.Misbehaviour{DPoPWithoutBinding: true},
			req:  func(t *testing.T, r *pb.ChainRequest) { r.DpopProof = okProof(t) },
			code: codes.FailedPrecondition, reason: "DPOP_BINDING_MISSING", sentC: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(func() {
				e.Sandbox.A.ResetMisbehaviour()
				e.Sandbox.C.ResetMisbehaviour()
			})
			e.Sandbox.A.SetMisbehaviour(tt.a)
			e.Sandbox.C.SetMisbehaviour(tt.c)
			r := &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice), SubjectTokenType: tokenTypeIDToken, TargetDomain: "domain-c"}
			if tt.req != nil {
				tt.req(t, r)
			}
			before := e.Sandbox.C.JWTBearerCount()
			_, err := e.Chain.Chain(ctxT(t), r)
			code, info := errorInfo(t, err)
			if code != tt.code || info.Reason != tt.reason {
				t.Fatalf("%v %s, want %v %s (%v)", code, info.Reason, tt.code, tt.reason, err)
			}
			if sent := e.Sandbox.C.JWTBearerCount() > before; sent != tt.sentC {
				t.Errorf("grant sent to C: %v", sent)
			}
			if ev := e.LastEvent(t); ev.Reason != tt.reason || ev.Profile != "id_jag" {
				t.Errorf("audit event reason %q, profile %q", ev.Reason, ev.Profile)
			}
		})
	}

	t.Run("nonce challenge", func(t *testing.T) {
		e.Sandbox.C.SetDPoPNonceRequired(true)
		t.Cleanup(func() { e.Sandbox.C.SetDPoPNonceRequired(false) })
		r := &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice), TargetDomain: "domain-c", DpopProof: okProof(t)}
		_, err := e.Chain.Chain(ctxT(t), r)
		code, info := errorInfo(t, err)
		if code != codes.FailedPrecondition || info.Reason != "DPOP_NONCE_REQUIRED" || info.Metadata["dpop_nonce"] != e.Sandbox.C.DPoPNonce() ||
			info.Metadata["error"] != "use_dpop_nonce" {
			t.Fatalf("%v %v", code, info)
		}
		r.DpopProof = proof(t, key, http.MethodPost, te(), token.DPoPOptions{Nonce: info.Metadata["dpop_nonce"]})
		r.SubjectToken = idToken(t, e, sandbox.Alice)
		resp, err := e.Chain.Chain(ctxT(t), r)
		if err != nil || resp.TokenType != "DPoP" {
			t.Fatalf("with the nonce: %v %v", resp, err)
		}
	})

	t.Run("rest: a bad proof", func(t *testing.T) {
		status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": idToken(t, e, sandbox.Alice), "target_domain": "domain-c",
			"dpop_proof": proof(t, key, http.MethodPost, e.Sandbox.B.TokenEndpoint(), token.DPoPOptions{})})
		if status != http.StatusBadRequest || !strings.Contains(string(body), "DPOP_PROOF_INVALID") || !strings.Contains(string(body), `"field":"dpop_proof"`) {
			t.Errorf("%d %s", status, body)
		}
	})
}

// Issue mode with profile id_jag: the broker verifies alice's access token
// and signs the ID-JAG itself; domain C trusts the broker's JWKS.
func TestIDJAGIssueMode(t *testing.T) {
	dir := t.TempDir()
	k, _ := writeKey(t, dir, "k.pem")
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		f.Issuer = config.Issuer{URL: "http://" + f.Listen.HTTP, Keys: []config.IssuerKey{{File: k, State: "active"}}}
		c := &f.Chains[1]
		c.Mode, c.SubjectAudience, c.Resource = "issue", []string{sandbox.BrokerClientID}, []string{"https://mcp.example/api"}
	}})
	if err := e.Sandbox.C.TrustBroker(e.App.Config.Issuer.URL); err != nil {
		t.Fatal(err)
	}
	key := dpopKey(t)
	thumb, _ := key.Thumbprint()
	exchanges := e.Sandbox.A.ExchangeCount()
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice),
		TargetDomain: "domain-c", Scope: []string{"read"},
		DpopProof: proof(t, key, http.MethodPost, e.Sandbox.C.TokenEndpoint(), token.DPoPOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	if e.Sandbox.A.ExchangeCount() != exchanges || checkCToken(t, e, resp.AccessToken).Claims.Subject != sandbox.AliceSubC || resp.TokenType != "DPoP" {
		t.Errorf("response %v (exchanges at A +%d)", resp, e.Sandbox.A.ExchangeCount()-exchanges)
	}
	jag := e.Sandbox.C.LastAccepted()
	act, _ := jag["act"].(map[string]any)
	cnf, _ := jag["cnf"].(map[string]any)
	if jag["iss"] != e.App.Config.Issuer.URL || jag["sub"] != sandbox.AliceSubA || jag["aud"] != e.Sandbox.C.Issuer() ||
		jag["client_id"] != sandbox.BrokerClientID || jag["scope"] != "read" || jag["resource"] != "https://mcp.example/api" ||
		act["sub"] != "anonymous" || cnf["jkt"] != thumb {
		t.Errorf("the ID-JAG the broker signed: %v", jag)
	}
}

// A target that skips grant signatures (verify_signature: false): the
// broker does not have the keys the source signs ID-JAGs with, and the
// chain still works; the claims are still checked.
func TestIDJAGWithoutSignatureCheck(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		off := false
		f.Domains[2].Assertion.VerifySignature = &off
		f.Domains[0].VerifySubjectToken = false
		f.Domains[0].JWKSURI = f.Domains[1].JWKSURI // not A's keys
	}})
	r := &pb.ChainRequest{SubjectToken: idToken(t, e, sandbox.Alice), TargetDomain: "domain-c"}
	if _, err := e.Chain.Chain(ctxT(t), r); err != nil {
		t.Fatal(err)
	}
	if ev := e.LastEvent(t); ev.SubjectVerified || ev.UnverifiedSubject != sandbox.AliceSubA {
		t.Errorf("audit event %v", ev)
	}
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraClaims: map[string]any{"client_id": "someone-else"}})
	r.SubjectToken = idToken(t, e, sandbox.Alice)
	if _, info := errorInfo(t, func() error { _, err := e.Chain.Chain(ctxT(t), r); return err }()); info.Reason != "ASSERTION_CLIENT_ID_MISMATCH" {
		t.Errorf("reason %s", info.Reason)
	}
}

// SandboxIssuer: a fixed REST port, a key file only its owner reads, and
// domain C trusting the issuer.
func TestSandboxIssuer(t *testing.T) {
	sb, err := sandbox.Start(ctxT(t), sandbox.Options{AAddr: "127.0.0.1:0", BAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	dir := t.TempDir()
	cfg := app.SandboxConfig(sb, "127.0.0.1:0", "127.0.0.1:0", "")
	if err := app.SandboxIssuer(sb, cfg, dir); err == nil {
		t.Error("an issuer on port 0")
	}
	cfg = app.SandboxConfig(sb, "127.0.0.1:19091", "127.0.0.1:18091", "")
	if err := app.SandboxIssuer(sb, cfg, dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "sandbox-issuer-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if cfg.Issuer.URL != "http://127.0.0.1:18091" || len(cfg.Issuer.Keys) != 1 || cfg.Issuer.Keys[0].State != "active" {
		t.Errorf("issuer %+v", cfg.Issuer)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// C trusts that issuer now: a second provider may not take it.
	if err := sb.C.TrustIdentityProvider("other", cfg.Issuer.URL, cfg.Issuer.URL+"/jwks", sandbox.DefaultTrust()); err == nil {
		t.Error("domain C does not know the broker's issuer")
	}
}
