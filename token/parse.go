package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// rawHeader is the part of the protected JOSE header this package reads.
// Headers that could redirect key selection (jku, x5u, jwk, x5c) are
// deliberately not decoded: keys only ever come from the Verifier's
// configuration.
type rawHeader struct {
	Alg  *string         `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
	B64  json.RawMessage `json:"b64"`
}

// rawClaims is the JSON shape of the claims this package reports.
type rawClaims struct {
	Iss      string      `json:"iss"`
	Sub      string      `json:"sub"`
	Aud      audience    `json:"aud"`
	Exp      numericDate `json:"exp"`
	Nbf      numericDate `json:"nbf"`
	Iat      numericDate `json:"iat"`
	Jti      string      `json:"jti"`
	ClientID string      `json:"client_id"`
	Azp      string      `json:"azp"`
	Scope    scopeClaim  `json:"scope"`
}

// audience accepts a single string or an array of strings (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*a = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	default:
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("aud is neither a string nor an array of strings")
		}
		*a = l
		return nil
	}
}

// scopeClaim accepts the usual space-separated string and, leniently, an
// array of strings (some servers emit one), normalised to a string.
type scopeClaim string

func (s *scopeClaim) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = ""
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var l []string
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("scope is neither a string nor an array of strings")
		}
		*s = scopeClaim(strings.Join(l, " "))
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("scope is not a string")
	}
	*s = scopeClaim(str)
	return nil
}

// numericDate is an RFC 7519 NumericDate: a JSON number of seconds since the
// epoch, integer or fractional. Absent or null gives the zero time. A JSON
// string is refused, even one holding digits ("exp": "1764000000"):
// RFC 7519 §2 defines a NumericDate as a JSON numeric value, and
// encoding/json would otherwise accept a quoted number into json.Number.
type numericDate time.Time

// maxNumericDate keeps conversions exact and far from int64 overflow.
const maxNumericDate = 1 << 53

func (d *numericDate) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*d = numericDate{}
		return nil
	}
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return fmt.Errorf("numeric date is not a JSON number")
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("numeric date is not a number")
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.Abs(f) > maxNumericDate {
		return fmt.Errorf("numeric date out of range")
	}
	if i, err := n.Int64(); err == nil {
		*d = numericDate(time.Unix(i, 0))
		return nil
	}
	sec, frac := math.Modf(f)
	*d = numericDate(time.Unix(int64(sec), int64(frac*1e9)))
	return nil
}

// parsed is a token split into its parts, with decoded header and claims.
type parsed struct {
	tok          *Token
	hasCrit      bool
	hasB64       bool
	signingInput []byte // header.payload, as signed
	signature    []byte // decoded
}

var b64 = base64.RawURLEncoding.Strict()

// ParseUnverified parses a compact JWS without checking its signature. Use it
// only for routing (which configured issuer?) and for audit of failures.
// Errors: ErrTooLarge, ErrMalformed.
func ParseUnverified(compact string) (*Token, error) {
	p, err := parseCompact(compact)
	if err != nil {
		return nil, err
	}
	return p.tok, nil
}

func parseCompact(compact string) (parsed, error) {
	if len(compact) > MaxTokenBytes {
		return parsed{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(compact), MaxTokenBytes)
	}
	h64, rest, ok := strings.Cut(compact, ".")
	if !ok {
		return parsed{}, fmt.Errorf("%w: expected 3 dot-separated parts", ErrMalformed)
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s64, ".") {
		return parsed{}, fmt.Errorf("%w: expected 3 dot-separated parts", ErrMalformed)
	}
	if h64 == "" || p64 == "" {
		return parsed{}, fmt.Errorf("%w: empty header or payload", ErrMalformed)
	}
	// The three parts decoded into one buffer.
	buf := make([]byte, b64.DecodedLen(len(h64))+b64.DecodedLen(len(p64))+b64.DecodedLen(len(s64)))
	hb, buf, err := decodePart(buf, h64)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: header is not base64url", ErrMalformed)
	}
	pb, buf, err := decodePart(buf, p64)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	sig, _, err := decodePart(buf, s64)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: signature is not base64url", ErrMalformed)
	}
	if !isJSONObject(hb) {
		return parsed{}, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	var h rawHeader
	if err := decodeHeader(hb, &h); err != nil {
		return parsed{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if h.Alg == nil || *h.Alg == "" {
		return parsed{}, fmt.Errorf("%w: header has no alg", ErrMalformed)
	}
	if !isJSONObject(pb) {
		return parsed{}, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	var c rawClaims
	members, err := decodeClaims(pb, &c)
	if err != nil {
		return parsed{}, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	tok := &Token{
		members: members,
		Header:  Header{Alg: *h.Alg, Kid: h.Kid, Typ: h.Typ},
		Claims: Claims{
			Issuer:    c.Iss,
			Subject:   c.Sub,
			Audience:  []string(c.Aud),
			Expiry:    time.Time(c.Exp),
			NotBefore: time.Time(c.Nbf),
			IssuedAt:  time.Time(c.Iat),
			JTI:       c.Jti,
			ClientID:  c.ClientID,
			AZP:       c.Azp,
			Scope:     string(c.Scope),
		},
	}
	if tok.Claims.Audience == nil {
		tok.Claims.Audience = []string{}
	}
	return parsed{tok: tok, hasCrit: h.Crit != nil, hasB64: h.B64 != nil,
		signingInput: []byte(compact[:len(h64)+1+len(p64)]), signature: sig}, nil
}

// decodePart decodes the base64url s into the start of buf, as
// b64.DecodeString would; it returns the decoded bytes (capped: an append
// copies them) and the rest of buf.
func decodePart(buf []byte, s string) (part, rest []byte, err error) {
	n, err := b64.Decode(buf, []byte(s))
	return buf[:n:n], buf[n:], err
}

// unmarshalExact decodes the JSON object b into the struct v like
// json.Unmarshal, except that member names match the json tags exactly:
// JOSE header and JWT claim names are case-sensitive (RFC 7515 §4, RFC 7519
// §4), so "ISS" or "ALG" are other, unknown members, as they are for every
// other implementation, and never override "iss" or "alg".
func unmarshalExact(b []byte, v any) error {
	_, err := unmarshalExactMembers(b, v)
	return err
}

// unmarshalExactMembers is unmarshalExact that also returns every member.
func unmarshalExactMembers(b []byte, v any) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if raw, ok := m[name]; ok {
			if err := json.Unmarshal(raw, rv.Field(i).Addr().Interface()); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return m, nil
}

// isJSONObject reports whether b starts like a JSON object; its syntax is
// checked by the decoding that follows (no second validation pass).
func isJSONObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

// quote renders an attacker-controlled string for an error message, bounded.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}
