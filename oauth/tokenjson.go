package oauth

import "strings"

// The success answer of a token endpoint is parsed twice per chain on the
// broker's hot path. decodeTokenFast decodes the common shape of that answer
// (an object whose member names and string values are plain printable
// ASCII) without reflection and with one string allocation for all the
// values. Anything else (an escape, a non-ASCII byte, a value of the wrong
// JSON type) is left to the reflection-based decoding of tokenJSON, which
// defines the behaviour: the fast path gives the same result or declines.

// tokenMember indexes the members of tokenJSON.
type tokenMember int

const (
	memAccessToken tokenMember = iota
	memTokenType
	memIssuedTokenType
	memExpiresIn
	memScope
	memRefreshToken
	memCount
	memUnknown tokenMember = -1
)

// tokenMemberNames are tokenJSON's json tags, by tokenMember.
var tokenMemberNames = [memCount]string{"access_token", "token_type", "issued_token_type", "expires_in", "scope", "refresh_token"}

// tokenMemberOf is the member a name decodes into, as encoding/json matches
// names: exactly, else without regard to case (strings.EqualFold folds as
// encoding/json does; the names here differ in more than case).
func tokenMemberOf(name []byte) tokenMember {
	for i, n := range tokenMemberNames {
		if len(n) == len(name) && strings.EqualFold(n, string(name)) {
			return tokenMember(i)
		}
	}
	return memUnknown
}

// tokenFields is a decoded tokenJSON: str holds the string members, has
// whether access_token and token_type are present and not null, expiresIn
// the raw expires_in (nil when absent).
type tokenFields struct {
	str       [memCount]string
	has       [memCount]bool
	expiresIn []byte
}

// fields returns what tj decoded.
func (tj *tokenJSON) fields() tokenFields {
	var tf tokenFields
	if tj.AccessToken != nil {
		tf.str[memAccessToken], tf.has[memAccessToken] = *tj.AccessToken, true
	}
	if tj.TokenType != nil {
		tf.str[memTokenType], tf.has[memTokenType] = *tj.TokenType, true
	}
	tf.str[memIssuedTokenType] = tj.IssuedTokenType
	tf.str[memScope] = tj.Scope
	tf.str[memRefreshToken] = tj.RefreshToken
	tf.expiresIn = tj.ExpiresIn
	return tf
}

// decodeTokenFast decodes body, which must be a valid JSON object
// (isJSONObject), into tf as json.Unmarshal into a tokenJSON would. ok
// false: the body needs the general decoding (tf is then undefined).
func decodeTokenFast(body []byte, tf *tokenFields) (ok bool) {
	// Spans of the string values in body, decoded at the end with one
	// allocation for all of them.
	if !jsonSpaceOnly(body) {
		return false
	}
	var spans [memCount][2]int
	var present [memCount]bool
	ok = eachMember(body, func(name, value []byte, valueStart int) bool {
		m := tokenMemberOf(name)
		switch {
		case m == memUnknown:
			return true
		case m == memExpiresIn:
			tf.expiresIn = value // aliases body: parseExpiresIn only reads it
			return true
		case value[0] == 'n': // null: a pointer becomes nil, a string keeps its value
			if m == memAccessToken || m == memTokenType {
				present[m] = false
			}
			return true
		case value[0] != '"' || !plainString(value):
			return false // wrong type, or escapes: the general decoding says what it is
		}
		spans[m] = [2]int{valueStart + 1, valueStart + len(value) - 1}
		present[m] = true
		return true
	})
	if !ok {
		return false
	}
	// One allocation for all the values; each is a substring of it.
	n := 0
	for m := range memCount {
		if present[m] {
			n += spans[m][1] - spans[m][0]
		}
	}
	var sb strings.Builder
	sb.Grow(n)
	var at [memCount][2]int
	for m := range memCount {
		if present[m] {
			at[m][0] = sb.Len()
			sb.Write(body[spans[m][0]:spans[m][1]])
			at[m][1] = sb.Len()
		}
	}
	all := sb.String()
	for m := range memCount {
		if !present[m] {
			continue
		}
		tf.str[m] = all[at[m][0]:at[m][1]]
	}
	tf.has[memAccessToken], tf.has[memTokenType] = present[memAccessToken], present[memTokenType]
	return true
}

// plainString reports whether the JSON string literal q (quotes included)
// holds printable ASCII only, without escapes: its bytes are its value.
func plainString(q []byte) bool {
	for _, c := range q[1 : len(q)-1] {
		if c < 0x20 || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}

// eachMember calls fn with the name (between its quotes, undecoded), the
// value (its JSON text) and the value's offset in obj, for each member of
// the JSON object obj in order, until fn returns false. obj must be valid
// JSON (json.Valid) whose first non-space byte is '{'. It reports false
// when fn did, or when a member name holds an escape or a non-ASCII byte
// (the caller then decodes obj in full).
func eachMember(obj []byte, fn func(name, value []byte, valueStart int) bool) bool {
	i := skipSpace(obj, 0) + 1 // past '{'
	for {
		i = skipSpace(obj, i)
		if obj[i] == '}' {
			return true
		}
		end := skipValue(obj, i) // the name, a string
		if !plainString(obj[i:end]) {
			return false
		}
		name := obj[i+1 : end-1]
		i = skipSpace(obj, end) + 1 // past ':'
		i = skipSpace(obj, i)
		end = skipValue(obj, i)
		if !fn(name, obj[i:end], i) {
			return false
		}
		i = skipSpace(obj, end)
		if obj[i] == ',' {
			i++
		}
	}
}

// jsonSpaceOnly reports whether the object obj, valid once trimmed by
// bytes.TrimSpace (isJSONObject), is surrounded by JSON whitespace only, as
// json.Unmarshal requires (not \v, \f, U+0085 or U+00A0).
func jsonSpaceOnly(obj []byte) bool {
	i, j := skipSpace(obj, 0), len(obj)
	for j > i && isSpace(obj[j-1]) {
		j--
	}
	return j > i && obj[i] == '{' && obj[j-1] == '}'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 { // the end of the enclosing object: a scalar ended before it
				return i
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}
