package store

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the JSON encoding of e to dst and returns the result:
// byte for byte what json.Marshal(e) gives (for times in years 0 to 9999,
// which json.Marshal refuses otherwise), without reflection. An audit event
// is encoded on every chain, and encoding/json's reflection was the largest
// single cost of a cache hit.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"time":"`...)
	dst = e.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	dst = appendField(dst, "caller", e.Caller)
	dst = appendField(dst, "subject", e.Subject)
	dst = appendField(dst, "source_domain", e.SourceDomain)
	dst = appendField(dst, "target_domain", e.TargetDomain)
	dst = appendList(dst, "scopes", e.Scopes)
	dst = append(dst, `,"outcome":`...)
	dst = strconv.AppendInt(dst, int64(e.Outcome), 10)
	dst = appendField(dst, "reason", e.Reason)
	dst = appendField(dst, "upstream_error", e.UpstreamError)
	dst = appendField(dst, "upstream_error_description", e.UpstreamErrorDescription)
	dst = appendField(dst, "message", e.Message)
	if len(e.Hops) > 0 {
		dst = append(dst, `,"hops":[`...)
		for i := range e.Hops {
			h := &e.Hops[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"domain":`...)
			dst = appendString(dst, h.Domain)
			dst = append(dst, `,"endpoint":`...)
			dst = appendString(dst, h.Endpoint)
			dst = append(dst, `,"grant_type":`...)
			dst = appendString(dst, h.GrantType)
			dst = append(dst, `,"duration":`...)
			dst = strconv.AppendInt(dst, int64(h.Duration), 10)
			dst = appendField(dst, "assertion_jti_hash", h.AssertionJTIHash)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = appendField(dst, "subject_token_hash", e.SubjectTokenHash)
	dst = appendField(dst, "assertion_jti_hash", e.AssertionJTIHash)
	dst = appendField(dst, "assertion_issuer", e.AssertionIssuer)
	dst = appendList(dst, "assertion_audience", e.AssertionAudience)
	dst = appendField(dst, "mode", e.Mode)
	dst = appendField(dst, "mapped_subject", e.MappedSubject)
	dst = appendList(dst, "transcribed_claims", e.TranscribedClaims)
	if e.SubjectVerified {
		dst = append(dst, `,"subject_verified":true`...)
	}
	dst = appendField(dst, "unverified_subject", e.UnverifiedSubject)
	dst = appendField(dst, "actor", e.Actor)
	dst = appendField(dst, "actor_token_hash", e.ActorTokenHash)
	dst = appendField(dst, "profile", e.Profile)
	dst = appendField(dst, "dpop_jkt", e.DPoPJKT)
	dst = appendField(dst, "aws_access_key_id_hash", e.AWSAccessKeyIDHash)
	return append(dst, '}')
}

// appendField appends ,"name":"v", or nothing when v is empty (omitempty).
func appendField(dst []byte, name, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, v)
}

// appendList appends ,"name":[...], or nothing when vs is empty (omitempty).
func appendList(dst []byte, name string, vs []string) []byte {
	if len(vs) == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':', '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, v)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does by
// default: '<', '>' and '&' escaped for HTML, control characters, U+2028
// and U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
