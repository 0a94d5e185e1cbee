package token

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/chainbroker/chainbroker/internal/jsonobj"
)

// Every grant is parsed on the chain path. decodeHeader and decodeClaims
// decode the usual JOSE header and claims (member names and string values
// of printable ASCII, integer dates) without reflection: the values are
// substrings of one copy of the JSON, the members map aliases it. They
// behave as unmarshalExact and unmarshalExactMembers do (same members, the
// last of duplicates, same results and errors): a value they do not decode
// themselves goes through the same json.Unmarshal call as there, and an
// object they cannot walk (an escaped or non-ASCII member name, invalid
// JSON, bytes around it that encoding/json refuses) goes to those functions.

var headerNames = [...]string{"alg", "kid", "typ", "crit", "b64"}

// decodeHeader is unmarshalExact(hb, h).
func decodeHeader(hb []byte, h *rawHeader) error {
	var vals [len(headerNames)]jsonobj.Span
	var seen [len(headerNames)]bool
	if !walkable(hb) || !jsonobj.EachMember(hb, func(name, value jsonobj.Span) bool {
		if i := indexOf(headerNames[:], hb[name.Start:name.End]); i >= 0 {
			vals[i], seen[i] = value, true
		}
		return true
	}) {
		var all rawHeader
		err := unmarshalExact(hb, &all)
		*h = all
		return err
	}
	var s string // hb as a string, made when a value needs it
	for i, name := range headerNames {
		if !seen[i] {
			continue
		}
		raw := hb[vals[i].Start:vals[i].End]
		var err error
		switch i {
		case 0:
			switch {
			case raw[0] == 'n':
				h.Alg = nil
			case jsonobj.Plain(raw):
				s = orString(s, hb)
				v := s[vals[i].Start+1 : vals[i].End-1]
				h.Alg = &v
			default:
				err = unmarshalNew(raw, &h.Alg)
			}
		case 1:
			err = decodeString(raw, &h.Kid, &s, hb, vals[i])
		case 2:
			err = decodeString(raw, &h.Typ, &s, hb, vals[i])
		case 3:
			h.Crit = json.RawMessage(raw)
		case 4:
			h.B64 = json.RawMessage(raw)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

var claimNames = [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "azp", "scope"}

// decodeClaims is unmarshalExactMembers(pb, c). The members map aliases pb,
// which the caller must not modify afterwards.
func decodeClaims(pb []byte, c *rawClaims) (map[string]json.RawMessage, error) {
	n := 0
	if !walkable(pb) || !jsonobj.EachMember(pb, func(_, _ jsonobj.Span) bool { n++; return true }) {
		var all rawClaims
		m, err := unmarshalExactMembers(pb, &all)
		*c = all
		return m, err
	}
	s := string(pb) // the names and the string values are substrings of it
	members := make(map[string]json.RawMessage, n)
	var vals [len(claimNames)]jsonobj.Span
	var seen [len(claimNames)]bool
	jsonobj.EachMember(pb, func(name, value jsonobj.Span) bool {
		members[s[name.Start:name.End]] = pb[value.Start:value.End:value.End]
		if i := indexOf(claimNames[:], pb[name.Start:name.End]); i >= 0 {
			vals[i], seen[i] = value, true
		}
		return true
	})
	for i, name := range claimNames {
		if !seen[i] {
			continue
		}
		raw := pb[vals[i].Start:vals[i].End]
		var err error
		switch name {
		case "iss":
			err = decodeString(raw, &c.Iss, &s, pb, vals[i])
		case "sub":
			err = decodeString(raw, &c.Sub, &s, pb, vals[i])
		case "jti":
			err = decodeString(raw, &c.Jti, &s, pb, vals[i])
		case "client_id":
			err = decodeString(raw, &c.ClientID, &s, pb, vals[i])
		case "azp":
			err = decodeString(raw, &c.Azp, &s, pb, vals[i])
		case "scope":
			if jsonobj.Plain(raw) {
				c.Scope = scopeClaim(s[vals[i].Start+1 : vals[i].End-1])
			} else {
				err = unmarshalNew(raw, &c.Scope)
			}
		case "aud":
			err = decodeAudience(raw, &c.Aud, s, vals[i].Start)
		case "exp":
			err = decodeDate(raw, &c.Exp)
		case "nbf":
			err = decodeDate(raw, &c.Nbf)
		case "iat":
			err = decodeDate(raw, &c.Iat)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return members, nil
}

// walkable reports whether b is valid JSON that json.Unmarshal takes as it
// is (an object surrounded by JSON whitespace only); a flat one (a JOSE
// header) is checked in one pass.
func walkable(b []byte) bool {
	return jsonobj.Flat(b) || jsonobj.SpaceOnly(b) && json.Valid(b)
}

func indexOf(names []string, name []byte) int {
	for i, n := range names {
		if n == string(name) {
			return i
		}
	}
	return -1
}

func orString(s string, b []byte) string {
	if s == "" {
		return string(b)
	}
	return s
}

// decodeString is json.Unmarshal(raw, dst) for a string member at at in
// obj; *s is obj as a string, made on first use.
func decodeString(raw []byte, dst *string, s *string, obj []byte, at jsonobj.Span) error {
	switch {
	case raw[0] == 'n': // null leaves a string as it is
		return nil
	case jsonobj.Plain(raw):
		*s = orString(*s, obj)
		*dst = (*s)[at.Start+1 : at.End-1]
		return nil
	}
	return unmarshalNew(raw, dst)
}

// decodeAudience is json.Unmarshal(raw, a); raw is at start in s.
func decodeAudience(raw []byte, a *audience, s string, start int) error {
	switch {
	case jsonobj.Plain(raw):
		*a = audience{s[start+1 : start+len(raw)-1]}
		return nil
	case raw[0] == '[':
		n := 0
		if jsonobj.EachString(raw, func(jsonobj.Span) bool { n++; return true }) {
			l := make([]string, 0, n)
			jsonobj.EachString(raw, func(q jsonobj.Span) bool {
				l = append(l, s[start+q.Start+1:start+q.End-1])
				return true
			})
			*a = l
			return nil
		}
	}
	return unmarshalNew(raw, a)
}

// decodeDate is json.Unmarshal(raw, d) for the usual positive integer date.
func decodeDate(raw []byte, d *numericDate) error {
	if len(raw) > 0 && len(raw) <= 15 { // below 1e15 < maxNumericDate
		var n int64
		for _, c := range raw {
			if c < '0' || c > '9' {
				return unmarshalNew(raw, d)
			}
			n = n*10 + int64(c-'0')
		}
		*d = numericDate(time.Unix(n, 0))
		return nil
	}
	return unmarshalNew(raw, d)
}

// unmarshalNew is json.Unmarshal(raw, dst) for a dst that holds its zero
// value (each field is decoded once), through a variable of its own so that
// dst does not escape to the heap on the usual path.
func unmarshalNew[T any](raw []byte, dst *T) error {
	var v T
	err := json.Unmarshal(raw, &v)
	*dst = v
	return err
}
