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
			n += escapedLen(k) + 1 + escapedLen(v) + 1 // '=' and '&'
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

// unreservedByte reports whether url.QueryEscape leaves c as it is (RFC
// 3986 §2.3 unreserved characters).
func unreservedByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

func escapedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; !unreservedByte(c) && c != ' ' {
			n += 2
		}
	}
	return n
}

// appendQueryEscape appends url.QueryEscape(s) to b.
func appendQueryEscape(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case unreservedByte(c):
			b = append(b, c)
		case c == ' ':
			b = append(b, '+')
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return b
}
