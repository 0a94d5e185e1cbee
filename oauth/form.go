package oauth

import (
	"net/url"
	"slices"
)

// encodeForm renders form and extra as application/x-www-form-urlencoded,
// as url.Values.Encode renders a copy of form with extra's keys set in it
// (extra wins for a key both hold): keys sorted, each value escaped as
// url.QueryEscape does. It makes one allocation for the body (plus one for
// the key list past 16 keys) instead of a copy of the form and a builder.
func encodeForm(form, extra url.Values) []byte {
	var keyBuf [16]string
	keys := keyBuf[:0]
	for k := range form {
		if _, ok := extra[k]; !ok {
			keys = append(keys, k)
		}
	}
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	values := func(k string) []string {
		if v, ok := extra[k]; ok {
			return v
		}
		return form[k]
	}
	n := 0
	for _, k := range keys {
		for _, v := range values(k) {
			n += sizeHint(k) + 1 + sizeHint(v) + 1 // '=' and '&'
		}
	}
	buf := make([]byte, 0, n)
	for _, k := range keys {
		for _, v := range values(k) {
			if len(buf) > 0 {
				buf = append(buf, '&')
			}
			buf = appendQueryEscape(buf, k)
			buf = append(buf, '=')
			buf = appendQueryEscape(buf, v)
		}
	}
	return buf
}

// queryByte is how url.QueryEscape writes each byte: left as it is (the
// RFC 3986 §2.3 unreserved characters), '+' (a space), or %XX (the rest).
type queryByte uint8

const (
	queryKeep queryByte = iota
	queryPlus
	queryPercent
)

// queryBytes is queryByte for every byte value, a constant table: a form's
// values are mostly JWTs, whose bytes are all unreserved, so the escaping
// below is a table lookup per byte and one copy per run of kept bytes.
var queryBytes = func() (t [256]queryByte) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			t[c] = queryKeep
		case c == ' ':
			t[c] = queryPlus
		default:
			t[c] = queryPercent
		}
	}
	return t
}()

// escapedLen is len(url.QueryEscape(s)).
func escapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if queryBytes[s[i]] == queryPercent {
			n += 2
		}
	}
	return n
}

// sizeHint is the room for url.QueryEscape(s) encodeForm reserves: exact
// for short values, len(s) for long ones (tokens and assertions, whose bytes
// need no escaping), so that the long ones are read once, by
// appendQueryEscape; a long value that does need escapes only makes the
// buffer grow.
func sizeHint(s string) int {
	if len(s) > 256 {
		return len(s)
	}
	return escapedLen(s)
}

// appendQueryEscape appends url.QueryEscape(s) to b.
func appendQueryEscape(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	kept := 0 // s[kept:i] is a run of bytes written as they are
	for i := 0; i < len(s); i++ {
		// Eight kept bytes at a time (queryKeep is 0): one branch for
		// eight table lookups on a token's long runs.
		for i+8 <= len(s) && queryBytes[s[i]]|queryBytes[s[i+1]]|queryBytes[s[i+2]]|queryBytes[s[i+3]]|
			queryBytes[s[i+4]]|queryBytes[s[i+5]]|queryBytes[s[i+6]]|queryBytes[s[i+7]] == queryKeep {
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		switch queryBytes[c] {
		case queryKeep:
			continue
		case queryPlus:
			b = append(append(b, s[kept:i]...), '+')
		default:
			b = append(append(b, s[kept:i]...), '%', hex[c>>4], hex[c&15])
		}
		kept = i + 1
	}
	return append(b, s[kept:]...)
}
