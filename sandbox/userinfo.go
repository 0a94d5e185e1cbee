package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// Userinfo endpoint descriptions. Keycloak answers every token failure with
// 401 invalid_token "Token verification failed" and records the precise
// reason in its event; the sandbox answers with that reason where Keycloak
// has one (the Desc DPoP* texts), so that a test can tell the failures
// apart.
const (
	// DescTokenNotProvided: 400 invalid_request, no access token.
	DescTokenNotProvided = "Token not provided"
	// DescTokenVerificationFailed: 401 invalid_token, a token that is not
	// the realm's, unexpired, Bearer or DPoP.
	DescTokenVerificationFailed = "Token verification failed"
	errInvalidToken             = "invalid_token"
)

// UserinfoEndpoint returns Issuer() + "/protocol/openid-connect/userinfo".
func (rl *Realm) UserinfoEndpoint() string { return rl.issuer + "/protocol/openid-connect/userinfo" }

// serveUserinfo adds the OpenID Connect userinfo endpoint (GET and POST),
// answering with the claims of the access token's user, found by lookup
// from the token's sub. Called before serving.
func (rl *Realm) serveUserinfo(lookup func(sub string) *user) error {
	self, err := token.NewStaticVerifier(rl.jwks, []string{rl.signer.Alg()})
	if err != nil {
		return fmt.Errorf("sandbox: %s: userinfo: %w", rl.name, err)
	}
	h := func(w http.ResponseWriter, r *http.Request) { rl.handleUserinfo(w, r, self, lookup) }
	prefix := "/realms/" + rl.name + "/protocol/openid-connect/userinfo"
	rl.mux.HandleFunc("GET "+prefix, h)
	rl.mux.HandleFunc("POST "+prefix, h)
	if rl.discoExtra == nil {
		rl.discoExtra = map[string]any{}
	}
	rl.discoExtra["userinfo_endpoint"] = rl.UserinfoEndpoint()
	return nil
}

// handleUserinfo checks the access token (RFC 6750: Authorization header, or
// access_token in a POST form), and for a DPoP-bound token the DPoP scheme
// and a proof of the token's key for this request with ath (RFC 9449 §7),
// in Keycloak's order.
func (rl *Realm) handleUserinfo(w http.ResponseWriter, r *http.Request, self *token.Verifier, lookup func(string) *user) {
	scheme, tok := "", ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ = strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
	} else if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err == nil {
			scheme, tok = "Bearer", r.PostForm.Get("access_token")
		}
	}
	if tok == "" {
		rl.writeError(w, badRequest(DescTokenNotProvided))
		return
	}
	dpopScheme := strings.EqualFold(scheme, "DPoP")
	refuse := func(desc string, dpop bool) {
		s := "Bearer"
		if dpop {
			s = "DPoP"
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s realm=%q, error=%q, error_description=%q`, s, rl.name, errInvalidToken, desc))
		rl.writeError(w, newError(http.StatusUnauthorized, errInvalidToken, desc))
	}
	if !dpopScheme && !strings.EqualFold(scheme, "Bearer") {
		refuse(DescTokenVerificationFailed, false)
		return
	}
	t, jkt, ok := rl.ownAccessToken(r, self, tok)
	if !ok {
		refuse(DescTokenVerificationFailed, dpopScheme)
		return
	}
	bound := t.claims.Typ == "DPoP"
	switch {
	case bound && !dpopScheme:
		refuse(DescDPoPSchemeMissing, true)
		return
	case !bound && dpopScheme:
		refuse(DescDPoPSchemeUnbound, true)
		return
	}
	if dpopScheme {
		p, desc := rl.checkDPoP(r.Header.Values(HeaderDPoP), r.Method, rl.UserinfoEndpoint(), tok, false)
		if desc != "" {
			refuse(desc, true)
			return
		}
		if jkt == "" || jkt != p.Thumbprint {
			refuse(DescDPoPBinding, true)
			return
		}
	}
	u := lookup(t.claims.Sub)
	if u == nil {
		rl.writeError(w, badRequest(DescUserNotFound))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sub":                u.sub,
		"preferred_username": u.username,
		"email_verified":     false,
	})
}

// ownAccessToken accepts an unexpired access token (typ Bearer or DPoP)
// signed by the realm's key with its issuer; it also returns its cnf.jkt.
func (rl *Realm) ownAccessToken(r *http.Request, self *token.Verifier, raw string) (*jwt, string, bool) {
	if _, err := self.Verify(r.Context(), raw); err != nil {
		return nil, "", false
	}
	t, err := parseJWT(raw)
	if err != nil {
		return nil, "", false
	}
	c := &t.claims
	if c.Iss != rl.issuer || c.Exp == nil || time.Now().Unix() > *c.Exp || (c.Typ != "Bearer" && c.Typ != "DPoP") {
		return nil, "", false
	}
	jkt, err := cnfJKT(raw)
	if err != nil {
		return nil, "", false
	}
	return t, jkt, true
}

// cnfJKT returns the cnf.jkt claim of a JWT ("" when absent).
func cnfJKT(raw string) (string, error) {
	parts := strings.SplitN(raw, ".", 3)
	if len(parts) < 2 {
		return "", errors.New("not a JWT")
	}
	b, err := b64url.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", err
	}
	var c struct {
		Cnf *struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", err
	}
	if c.Cnf == nil {
		return "", nil
	}
	return c.Cnf.JKT, nil
}
