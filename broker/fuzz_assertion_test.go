package broker

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// Presence bits of FuzzCheckClaims's flags argument.
const (
	fuzzHasExp = 1 << iota
	fuzzHasNbf
	fuzzHasIat
	fuzzHasAud // aud present: split on "\n"; absent: no aud claim
	fuzzAllowReuse
)

// fuzzNow is the fixed "now" of FuzzCheckClaims; the fuzzed times are
// offsets from it, in seconds.
var fuzzNow = time.Unix(1_800_000_000, 0)

// maxNumericDate is the largest |NumericDate| token.ParseUnverified
// returns (2^53 s, plus one for float rounding): checkClaims never sees a
// time outside it.
const maxNumericDate = 1<<53 + 1

// FuzzCheckClaims runs the target's assertion policy (checkClaims) on
// tokens built from fuzzed claims and policy knobs. It never panics, and it
// accepts a token exactly when every rule of docs/design.md §2 holds: alg allowed,
// typ one of allowed_typ (absent, JWT, at+jwt, ID-JAG here), iss the source's issuer, a single aud the
// target accepts, exp present and (within the skew) in the future, nbf and
// iat not in the future, exp - iat (or exp - now) within MaxLifetime + skew,
// jti unless reuse is allowed (never for an ID-JAG), sub, and for an ID-JAG
// iat and the broker's client_id. A refusal names one of the violated rules.
func FuzzCheckClaims(f *testing.F) {
	src := &Domain{Name: "domain-a", Issuer: "http://127.0.0.1:8181/realms/domain-a"}
	base := Domain{Name: "domain-b", Issuer: "http://127.0.0.1:8282/realms/domain-b",
		Creds: oauth.ClientCredentials{ClientID: "chainbroker"},
		Assertion: AssertionPolicy{
			Audience:    []string{"http://127.0.0.1:8282/realms/domain-b", "http://127.0.0.1:8282/realms/domain-b/protocol/openid-connect/token"},
			AllowedAlgs: token.DefaultAllowedAlgs,
			AllowedTyp:  idJAGTyp,
		}}
	all := fuzzHasExp | fuzzHasIat | fuzzHasAud
	// iss, aud, exp, nbf, iat (offsets from now), flags, jti, sub, typ, alg, client_id, skew s, max lifetime s
	f.Add(src.Issuer, base.Issuer, int64(299), int64(0), int64(-1), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Assertion.Audience[1], int64(300), int64(0), int64(0), uint8(all), "j1", "alice", "", "ES256", "", uint16(0), uint32(300))
	f.Add(src.Issuer, base.Issuer, int64(301), int64(0), int64(0), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(300))                 // lifetime 301
	f.Add(src.Issuer, base.Issuer, int64(0), int64(0), int64(-300), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0))                  // exp == now
	f.Add(src.Issuer, base.Issuer, int64(-5), int64(0), int64(-10), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(5), uint32(0))                  // expired within skew
	f.Add(src.Issuer, base.Issuer, int64(100), int64(6), int64(0), uint8(all|fuzzHasNbf), "j1", "bob", "JWT", "PS256", "", uint16(5), uint32(0))          // nbf in the future
	f.Add(src.Issuer, base.Issuer, int64(301), int64(0), int64(0), uint8(fuzzHasExp|fuzzHasAud), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0)) // no iat
	f.Add(src.Issuer, base.Issuer+"\naccount", int64(60), int64(0), int64(0), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0))
	f.Add(src.Issuer, "", int64(60), int64(0), int64(0), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0)) // aud [""]
	f.Add(src.Issuer, "", int64(60), int64(0), int64(0), uint8(fuzzHasExp|fuzzHasIat), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0))
	f.Add(src.Issuer+"/", base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j1", "alice", "JWT", "RS256", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all|fuzzAllowReuse), "", "alice", "JWT", "EdDSA", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all|fuzzAllowReuse), "", "alice", "oauth-id-jag+jwt", "ES256", "chainbroker", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j", "alice", "OAUTH-ID-JAG+JWT", "ES256", "chainbroker", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(fuzzHasExp|fuzzHasAud), "j", "alice", "oauth-id-jag+jwt", "ES256", "chainbroker", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j", "alice", "at+jwt", "ES256", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j", "alice", "JWT", "none", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j", "alice", "JWT", "HS256", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j", "", "JWT", "RS256", "", uint16(0), uint32(0))
	f.Add(src.Issuer, base.Issuer, int64(math.MaxInt64), int64(math.MinInt64), int64(math.MinInt64), uint8(0xff), "j", "s", "JWT", "RS256", "", uint16(math.MaxUint16), uint32(math.MaxUint32))
	f.Add(src.Issuer, base.Issuer, int64(1<<53), int64(-(1 << 53)), int64(-(1 << 53)), uint8(all|fuzzHasNbf), "j", "s", "JWT", "RS256", "", uint16(300), uint32(math.MaxUint32))
	f.Add(strings.Repeat("é", 200), base.Issuer, int64(60), int64(0), int64(0), uint8(all), "j", "alice", "JWT", "RS256", "", uint16(0), uint32(0))

	f.Fuzz(func(t *testing.T, iss, aud string, expOff, nbfOff, iatOff int64, flags uint8,
		jti, sub, typ, alg, clientID string, skewSec uint16, maxLifeSec uint32) {
		tgt := base
		p := &tgt.Assertion
		// The ranges config.Validate and broker.New leave: skew 0..5m,
		// max lifetime positive (0 means the 300s default).
		p.ClockSkew = time.Duration(skewSec%301) * time.Second
		p.MaxLifetime = time.Duration(maxLifeSec) * time.Second
		if p.MaxLifetime == 0 {
			p.MaxLifetime = 300 * time.Second
		}
		p.AllowReuse = flags&fuzzAllowReuse != 0

		tok := &token.Token{
			Header: token.Header{Alg: alg, Kid: "k1", Typ: typ},
			Claims: token.Claims{Issuer: iss, Subject: sub, JTI: jti, ClientID: clientID, Audience: []string{}},
			// checkClaims runs on verified tokens only.
			Verified: true,
		}
		if flags&fuzzHasAud != 0 {
			tok.Claims.Audience = strings.Split(aud, "\n")
		}
		at := func(bit uint8, off int64) time.Time {
			if flags&bit == 0 {
				return time.Time{}
			}
			return time.Unix(fuzzNow.Unix()+clampNumericDate(off), 0)
		}
		tok.Claims.Expiry = at(fuzzHasExp, expOff)
		tok.Claims.NotBefore = at(fuzzHasNbf, nbfOff)
		tok.Claims.IssuedAt = at(fuzzHasIat, iatOff)

		// Times outside the parser's range: no reference, but no panic.
		raw := *tok
		raw.Claims.Expiry, raw.Claims.NotBefore, raw.Claims.IssuedAt = time.Unix(expOff, 0), time.Unix(nbfOff, 0), time.Unix(iatOff, 0)
		_ = checkClaims(&raw, src, &tgt, fuzzNow)

		err := checkClaims(tok, src, &tgt, fuzzNow)
		broken := violations(tok, src, &tgt, fuzzNow)
		if err == nil {
			if len(broken) > 0 {
				t.Fatalf("accepted a grant that breaks %v: %+v, policy %+v", broken, tok, *p)
			}
			return
		}
		if len(broken) == 0 {
			t.Fatalf("refused a valid grant with %s (%s): %+v, policy %+v", err.Reason, err.Message, tok, *p)
		}
		if !slices.Contains(broken, err.Reason) {
			t.Fatalf("refused with %s (%s), but the broken rules are %v", err.Reason, err.Message, broken)
		}
		if err.Hop != HopTokenExchange || err.Message == "" {
			t.Fatalf("error without hop or message: %+v", err)
		}
		// Messages go to the caller and the audit trail: attacker strings
		// are truncated (alg is not, but only allow-listed algs get past
		// Verify), and a valid UTF-8 input gives a valid UTF-8 message
		// (it becomes a proto string).
		if n := len(err.Message) - len(alg); n > 1024 {
			t.Fatalf("%d-byte message echoes the grant: %.300s...", len(err.Message), err.Message)
		}
		if allValidUTF8(iss, aud, jti, sub, typ, alg, clientID) && !utf8.ValidString(err.Message) {
			t.Fatalf("message is not valid UTF-8: %q", err.Message)
		}
	})
}

func clampNumericDate(off int64) int64 {
	return max(-maxNumericDate, min(maxNumericDate, off))
}

// violations is the reference for checkClaims: every rule tok breaks,
// evaluated independently of the others and in whole seconds (the fuzzed
// times have no fraction).
func violations(tok *token.Token, src, tgt *Domain, now time.Time) []Reason {
	c, p := &tok.Claims, &tgt.Assertion
	var out []Reason
	add := func(bad bool, r Reason) {
		if bad {
			out = append(out, r)
		}
	}
	idJAG := strings.EqualFold(tok.Header.Typ, token.TypeIDJAG)
	skew := int64(p.ClockSkew / time.Second)
	n := now.Unix()

	add(!slices.Contains(p.AllowedAlgs, tok.Header.Alg), ReasonAssertionAlgNotAllowed)
	add(!slices.ContainsFunc(p.AllowedTyp, func(a string) bool { return strings.EqualFold(a, tok.Header.Typ) }), ReasonAssertionTypeInvalid)
	add(c.Issuer != src.Issuer, ReasonAssertionIssuerUntrusted)
	add(len(c.Audience) > 1, ReasonAssertionAudienceMultiple)
	add(len(c.Audience) == 0 || len(c.Audience) == 1 && !slices.Contains(p.Audience, c.Audience[0]), ReasonAssertionAudienceInvalid)
	add(c.Expiry.IsZero(), ReasonAssertionExpirationMissing)
	add(!c.Expiry.IsZero() && c.Expiry.Unix()+skew <= n, ReasonAssertionExpired)
	add(!c.NotBefore.IsZero() && c.NotBefore.Unix() > n+skew, ReasonAssertionNotYetValid)
	add(!c.IssuedAt.IsZero() && c.IssuedAt.Unix() > n+skew, ReasonAssertionNotYetValid)
	issued := n
	if !c.IssuedAt.IsZero() {
		issued = c.IssuedAt.Unix()
	}
	// |times| <= 2^53+1, so the difference cannot overflow.
	add(!c.Expiry.IsZero() && c.Expiry.Unix()-issued > int64((p.MaxLifetime+p.ClockSkew)/time.Second), ReasonAssertionLifetimeTooLong)
	add(c.JTI == "" && (!p.AllowReuse || idJAG), ReasonAssertionJTIMissing)
	add(c.Subject == "", ReasonAssertionSubjectMissing)
	add(idJAG && c.IssuedAt.IsZero(), ReasonAssertionIssuedAtMissing)
	add(idJAG && c.ClientID != tgt.Creds.ClientID, ReasonAssertionClientIDMismatch)
	return out
}

func allValidUTF8(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}
