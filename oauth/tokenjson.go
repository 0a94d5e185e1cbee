package oauth

import (
	"strings"

	"github.com/chainbroker/chainbroker/internal/jsonobj"
)

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
	if !jsonobj.SpaceOnly(body) {
		return false
	}
	var spans [memCount][2]int
	var present [memCount]bool
	ok = jsonobj.EachMember(body, func(ns, vs jsonobj.Span) bool {
		m, value := tokenMemberOf(body[ns.Start:ns.End]), body[vs.Start:vs.End]
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
		case value[0] != '"' || !jsonobj.Plain(value):
			return false // wrong type, or escapes: the general decoding says what it is
		}
		spans[m] = [2]int{vs.Start + 1, vs.End - 1}
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
