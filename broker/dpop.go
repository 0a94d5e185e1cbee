package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// Sender-constrained results (DPoP, RFC 9449). The caller makes a proof with
// its own key for the target's token endpoint (Request.DPoPProof); the
// broker checks it before hop 1 (checkDPoP: RFC 9449 §4.3, its jti in the
// replay store), forwards it as the DPoP header of hop 2, and hands out the
// target's token only when it is bound to that key (checkBinding). A target
// asking for a server nonce (use_dpop_nonce) is answered to the caller with
// the nonce (dpopNonceError), for a new proof. Optionally a second proof of
// the same key for the source's token endpoint (Request.SourceDPoPProof)
// goes with hop 1, so that the grant itself carries cnf.jkt
// (checkGrantBinding).

// dpopHeader is the DPoP header carrying proof (an HTTP header, in its
// canonical form), or nil without one.
func dpopHeader(proof string) map[string][]string {
	if proof == "" {
		return nil
	}
	return map[string][]string{"Dpop": {proof}}
}

// methodPOST is htm for token endpoints.
const methodPOST = "POST"

// checkDPoP verifies the caller's proofs and marks their jti, before hop 1.
func (r *chainRun) checkDPoP(ctx context.Context, src, tgt *Domain, chain *Chain) error {
	if r.req.DPoPProof == "" {
		return nil
	}
	now := r.b.now()
	p, err := token.VerifyDPoP(r.req.DPoPProof, token.DPoPCheck{Method: methodPOST, URL: tgt.TokenEndpoint, Now: now})
	if err != nil {
		return dpopInvalid("dpop_proof", tgt, err)
	}
	r.ev.DPoPJKT = p.Thumbprint
	var sp *token.DPoPProof
	if r.req.SourceDPoPProof != "" {
		if chain.Mode == ModeIssue {
			return invalidDPoP("source_dpop_proof", "this chain makes no call to "+src.Name+" (issue mode): the broker binds the grant itself")
		}
		if sp, err = token.VerifyDPoP(r.req.SourceDPoPProof, token.DPoPCheck{Method: methodPOST, URL: src.TokenEndpoint, Now: now}); err != nil {
			return dpopInvalid("source_dpop_proof", src, err)
		}
		if sp.Thumbprint != p.Thumbprint {
			return invalidDPoP("source_dpop_proof", "signed with another key than dpop_proof: the grant and the token must be bound to one key")
		}
	}
	for _, m := range []struct {
		proof *token.DPoPProof
		d     *Domain
		field string
	}{{p, tgt, "dpop_proof"}, {sp, src, "source_dpop_proof"}} {
		if m.proof == nil {
			continue
		}
		// Remembered as long as any clock could accept it (RFC 9449 §11.1).
		until := m.proof.IssuedAt.Add(token.DefaultDPoPMaxAge + 2*token.DefaultDPoPClockSkew + time.Second)
		key := store.ReplayKey{Target: m.d.Name, Issuer: "dpop:" + m.proof.Thumbprint, JTI: m.proof.JTI}
		switch err := r.b.replay.Mark(ctx, key, until); {
		case errors.Is(err, store.ErrReplayed):
			return &Error{Reason: ReasonDPoPProofReplayed, Field: m.field,
				Message: m.field + ": this proof (its jti) was presented before; make a fresh proof for each call"}
		case err != nil:
			return &Error{Reason: ReasonStoreUnavailable, Message: "the replay store is unavailable; chains fail closed", Err: err}
		}
	}
	r.dpop = p
	return nil
}

func invalidDPoP(field, msg string) *Error {
	return &Error{Reason: ReasonDPoPProofInvalid, Field: field, Message: field + ": " + msg}
}

// dpopInvalid names the rule a proof for d's token endpoint broke.
func dpopInvalid(field string, d *Domain, err error) *Error {
	var msg string
	switch {
	case errors.Is(err, token.ErrDPoPType):
		msg = "typ is not " + token.TypeDPoP
	case errors.Is(err, token.ErrDPoPAlg):
		msg = "alg is not an allowed asymmetric algorithm"
	case errors.Is(err, token.ErrDPoPKey):
		msg = "the jwk header is not a public key fitting alg (no private members, RSA of 2048 bits or more)"
	case errors.Is(err, token.ErrDPoPSignature):
		msg = "the signature does not verify with the jwk header"
	case errors.Is(err, token.ErrDPoPClaims):
		msg = "jti, htm, htu or iat is missing or malformed"
	case errors.Is(err, token.ErrDPoPMethod):
		msg = "htm must be POST"
	case errors.Is(err, token.ErrDPoPURL):
		msg = "htu must be " + d.Name + "'s token endpoint " + d.TokenEndpoint + " (as ListDomains shows it)"
	case errors.Is(err, token.ErrDPoPNotActive):
		msg = "iat is not within " + (token.DefaultDPoPMaxAge + token.DefaultDPoPClockSkew).String() + " before now (nor " +
			token.DefaultDPoPClockSkew.String() + " after): make the proof just before the call"
	default:
		msg = "not a compact JWS with JSON header and claims"
	}
	return &Error{Reason: ReasonDPoPProofInvalid, Field: field, Message: field + ": " + msg, Err: err}
}

// checkGrantBinding: a grant bound to a key (cnf.jkt) is presented only with
// a proof of that key, and with a source proof the source must have bound
// the grant.
func (r *chainRun) checkGrantBinding(tok *token.Token, src *Domain) *Error {
	jkt := cnfJKT(tok)
	bad := func(msg string) *Error {
		return &Error{Reason: ReasonAssertionCnfMismatch, Hop: HopTokenExchange, Message: msg}
	}
	switch {
	case jkt != "" && r.dpop == nil:
		return bad("the grant from " + src.Name + " is bound to a key (cnf.jkt), and the request has no dpop_proof to present with it")
	case jkt != "" && jkt != r.dpop.Thumbprint:
		return bad("the grant from " + src.Name + " is bound (cnf.jkt) to another key than dpop_proof's")
	case jkt == "" && r.req.SourceDPoPProof != "":
		return bad(src.Name + " ignored source_dpop_proof: the grant carries no cnf.jkt")
	}
	return nil
}

// cnfJKT is the cnf.jkt claim of a token, "" when absent.
func cnfJKT(tok *token.Token) string {
	raw, ok := tok.Claim("cnf")
	if !ok {
		return ""
	}
	var cnf struct {
		JKT string `json:"jkt"`
	}
	if json.Unmarshal(raw, &cnf) != nil {
		return ""
	}
	return cnf.JKT
}

// checkBinding: with a proof, the target's answer must be a DPoP token
// (token_type DPoP) and, when the access token is a JWT, bound to the
// proof's key (cnf.jkt, RFC 9449 §6.1). An unbound token is not handed out:
// the caller asked for a sender-constrained one.
func (r *chainRun) checkBinding(tgt *Domain, resp *oauth.TokenResponse) *Error {
	if r.dpop == nil {
		return nil
	}
	bad := func(msg string) *Error {
		return &Error{Reason: ReasonDPoPBindingMissing, Hop: HopJWTBearer, Message: msg}
	}
	if !strings.EqualFold(resp.TokenType, "DPoP") {
		return bad(tgt.Name + " answered token_type " + quote(resp.TokenType) + ", not DPoP: it ignored dpop_proof; the unbound token is not handed out")
	}
	if strings.Count(resp.AccessToken, ".") != 2 {
		return nil // opaque: the token_type is all the answer says
	}
	at, err := token.ParseUnverified(resp.AccessToken)
	if err != nil {
		return nil // not a JWT after all
	}
	if jkt := cnfJKT(at); jkt != r.dpop.Thumbprint {
		return bad(tgt.Name + "'s access token is not bound to dpop_proof's key (cnf.jkt " + quote(jkt) + "); it is not handed out")
	}
	return nil
}

// dpopNonceError is a target's (or source's) use_dpop_nonce answer (RFC 9449
// §8) as the caller sees it: make a new proof with the nonce.
func dpopNonceError(d *Domain, hop string, oe *oauth.Error, err error) *Error {
	nonce := oe.DPoPNonce
	if len(nonce) > oauth.MaxDPoPNonceBytes {
		nonce = ""
	}
	msg := d.Name + " wants a server nonce in the DPoP proof: make a new proof with nonce " + quote(nonce) + " (ErrorInfo metadata dpop_nonce)"
	if nonce == "" {
		msg = d.Name + " wants a server nonce in the DPoP proof but sent none (no usable DPoP-Nonce header)"
	}
	return &Error{Reason: ReasonDPoPNonceRequired, Hop: hop, Upstream: boundedUpstream(oe), DPoPNonce: nonce, Message: msg, Err: err}
}
