package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// DPoP (RFC 9449) as Keycloak's DPoPUtil applies it: every realm validates a
// DPoP header at its token endpoint when one is sent, and the grants that
// issue access tokens bind them to the proof's key (cnf.jkt, token_type
// DPoP); userinfo (userinfo.go) accepts a DPoP-bound token only with a proof
// of that key. Proofs live 10 s after iat with 15 s of clock skew, and a
// proof (jti and htu) is accepted once.

// DPoP error descriptions: Keycloak's texts. At the token endpoint they come
// with 400 invalid_request; at userinfo with 401 invalid_token.
const (
	DescDPoPMissing    = "DPoP proof is missing"
	DescDPoPMalformed  = "DPoP header verification failure"
	DescDPoPType       = "Invalid or missing type in DPoP header: " // + the typ
	DescDPoPAlg        = "Unsupported DPoP algorithm: "             // + the alg
	DescDPoPNoKey      = "No JWK in DPoP header"
	DescDPoPPrivateKey = "Private key is present in DPoP header"
	DescDPoPKeyType    = "Unsupported key type in DPoP header"
	DescDPoPSignature  = "DPoP verification failure: Invalid token signature"
	DescDPoPClaims     = "DPoP mandatory claims are missing"
	DescDPoPURL        = "DPoP HTTP URL mismatch"
	DescDPoPMethod     = "DPoP HTTP method mismatch"
	DescDPoPNotActive  = "DPoP proof is not active"
	DescDPoPReplayed   = "DPoP proof has already been used"
	DescDPoPNoATH      = "No access token hash in DPoP proof"
	DescDPoPATH        = "DPoP proof access token hash mismatch"
	// DescDPoPBinding: the proof's key is not the token's cnf.jkt.
	DescDPoPBinding = "DPoP confirmation doesn't match DPoP proof"
	// DescDPoPSchemeMissing and DescDPoPSchemeUnbound: userinfo, the
	// Authorization scheme does not fit the token.
	DescDPoPSchemeMissing = "The access token type is DPoP but Authorization Header is not DPoP"
	DescDPoPSchemeUnbound = "The access token type is not DPoP but Authorization Header is DPoP"
	// DescDPoPNonceRequired: 400 use_dpop_nonce with a DPoP-Nonce header,
	// RFC 9449 §8's challenge, when SetDPoPNonceRequired is on and the proof
	// lacks the current nonce (sandbox: Keycloak has no server nonce).
	DescDPoPNonceRequired = "Authorization server requires nonce in DPoP proof"
)

// Error codes of RFC 9449.
const (
	errUseDPoPNonce = "use_dpop_nonce"
	// HeaderDPoP carries a proof; HeaderDPoPNonce a server's nonce.
	HeaderDPoP      = "DPoP"
	HeaderDPoPNonce = "DPoP-Nonce"
)

// dpopState is a realm's DPoP memory.
type dpopState struct {
	proofs replayMemory // jti + htu of accepted proofs

	mu    sync.Mutex
	nonce string // "" unless SetDPoPNonceRequired(true)
}

// SetDPoPNonceRequired switches the RFC 9449 §8 nonce challenge on or off at
// the realm's token endpoint. On, a proof without the current nonce (a fresh
// random one each time the switch is turned on, see DPoPNonce) gets 400
// use_dpop_nonce with the nonce in a DPoP-Nonce header.
func (rl *Realm) SetDPoPNonceRequired(on bool) {
	rl.dpop.mu.Lock()
	defer rl.dpop.mu.Unlock()
	rl.dpop.nonce = ""
	if on {
		var b [16]byte
		_, _ = rand.Read(b[:])
		rl.dpop.nonce = base64.RawURLEncoding.EncodeToString(b[:])
	}
}

// DPoPNonce returns the nonce the token endpoint requires ("" when off).
func (rl *Realm) DPoPNonce() string {
	rl.dpop.mu.Lock()
	defer rl.dpop.mu.Unlock()
	return rl.dpop.nonce
}

// dpopCtxKey keys the accepted proof in a request's context.
type dpopCtxKey struct{}

// dpopProof returns the proof accepted with the request, or nil.
func dpopProof(r *http.Request) *token.DPoPProof {
	p, _ := r.Context().Value(dpopCtxKey{}).(*token.DPoPProof)
	return p
}

// acceptDPoP checks the token request's DPoP header, if any; with a valid
// proof it returns the request carrying it. false: it answered the refusal.
func (rl *Realm) acceptDPoP(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	vals := r.Header.Values(HeaderDPoP)
	if len(vals) == 0 {
		return r, true
	}
	proof, desc := rl.checkDPoP(vals, http.MethodPost, rl.TokenEndpoint(), "", true)
	if desc != "" {
		if desc == DescDPoPNonceRequired {
			w.Header().Set(HeaderDPoPNonce, rl.DPoPNonce())
			rl.writeError(w, newError(http.StatusBadRequest, errUseDPoPNonce, desc))
			return nil, false
		}
		rl.writeError(w, badRequest(desc))
		return nil, false
	}
	return r.WithContext(context.WithValue(r.Context(), dpopCtxKey{}, proof)), true
}

// checkDPoP validates the DPoP header values for a request (method, URL)
// and, when accessToken is set, its ath; then the nonce (token endpoint
// only) and the replay memory. It returns Keycloak's description of the
// first failure, or "".
func (rl *Realm) checkDPoP(vals []string, method, u, accessToken string, tokenEndpoint bool) (*token.DPoPProof, string) {
	if len(vals) == 0 || vals[0] == "" {
		return nil, DescDPoPMissing
	}
	if len(vals) > 1 {
		return nil, DescDPoPMalformed // Keycloak reads the values joined by ","
	}
	raw := vals[0]
	now := time.Now()
	p, err := token.VerifyDPoP(raw, token.DPoPCheck{Method: method, URL: u, Now: now})
	if err != nil {
		return nil, dpopDescription(raw, err)
	}
	if accessToken != "" {
		switch {
		case p.ATH == "":
			return nil, DescDPoPNoATH
		case p.ATH != token.AccessTokenHash(accessToken):
			return nil, DescDPoPATH
		}
	}
	if nonce := rl.DPoPNonce(); tokenEndpoint && nonce != "" && p.Nonce != nonce {
		return nil, DescDPoPNonceRequired
	}
	// Remembered until no clock could accept the proof any more.
	until := p.IssuedAt.Add(token.DefaultDPoPMaxAge + 2*token.DefaultDPoPClockSkew + time.Second)
	if !rl.dpop.proofs.mark(p.JTI+"\n"+p.URL, until, now) {
		return nil, DescDPoPReplayed
	}
	return p, ""
}

// dpopDescription names a refusal of token.VerifyDPoP as Keycloak does.
func dpopDescription(raw string, err error) string {
	var typ, alg string
	if t, perr := parseJWT(raw); perr == nil {
		typ, alg = t.typ, t.alg
	}
	switch {
	case errors.Is(err, token.ErrDPoPType):
		return DescDPoPType + truncate(typ)
	case errors.Is(err, token.ErrDPoPAlg):
		return DescDPoPAlg + truncate(alg)
	case errors.Is(err, token.ErrDPoPNoKey):
		return DescDPoPNoKey
	case errors.Is(err, token.ErrDPoPPrivateKey):
		return DescDPoPPrivateKey
	case errors.Is(err, token.ErrDPoPKey):
		return DescDPoPKeyType
	case errors.Is(err, token.ErrDPoPSignature):
		return DescDPoPSignature
	case errors.Is(err, token.ErrDPoPClaims):
		return DescDPoPClaims
	case errors.Is(err, token.ErrDPoPMethod):
		return DescDPoPMethod
	case errors.Is(err, token.ErrDPoPURL):
		return DescDPoPURL
	case errors.Is(err, token.ErrDPoPNotActive):
		return DescDPoPNotActive
	}
	return DescDPoPMalformed
}

// bindDPoP binds the access token being issued (its claims) to the
// request's DPoP proof, as Keycloak's DPoP protocol mapper does: cnf.jkt
// and the typ claim DPoP. It returns the token_type of the answer: "DPoP"
// when bound, else "Bearer". Misbehaviour.IgnoreDPoP issues an unbound
// Bearer token anyway; Misbehaviour.DPoPWithoutBinding says DPoP without
// binding.
func (rl *Realm) bindDPoP(r *http.Request, claims map[string]any) string {
	p := dpopProof(r)
	if p == nil {
		return "Bearer"
	}
	m := rl.misbehaviour()
	switch {
	case m.IgnoreDPoP:
		return "Bearer"
	case m.DPoPWithoutBinding:
		return "DPoP"
	}
	claims["cnf"] = map[string]any{"jkt": p.Thumbprint}
	claims["typ"] = "DPoP"
	return "DPoP"
}

// merge returns a with the members of b added (b wins).
func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}
