// Package jsonobj walks the members of a JSON object already known to be
// valid (json.Valid), without reflection or allocation, for the decoders on
// the chain path (token responses, JWT headers and claims). It only finds
// where names and values are: the callers decode the common plain values
// themselves and leave everything else to encoding/json.
package jsonobj

// Span is where a name or value lies in the object: obj[Start:End].
type Span struct{ Start, End int }

// EachMember calls fn with where the name (between its quotes, undecoded)
// and the value (its JSON text) of each member of the JSON object obj lie,
// in order, until fn returns false. obj must be valid
// JSON whose first non-space byte is '{' (SpaceOnly). It reports false when
// fn did, or when a member name is not a Plain string (the caller then
// decodes obj with encoding/json).
func EachMember(obj []byte, fn func(name, value Span) bool) bool {
	i := skipSpace(obj, 0) + 1 // past '{'
	for {
		i = skipSpace(obj, i)
		if obj[i] == '}' {
			return true
		}
		end := skipValue(obj, i) // the name, a string
		if !Plain(obj[i:end]) {
			return false
		}
		name := Span{i + 1, end - 1}
		i = skipSpace(obj, end) + 1 // past ':'
		i = skipSpace(obj, i)
		end = skipValue(obj, i)
		if !fn(name, Span{i, end}) {
			return false
		}
		i = skipSpace(obj, end)
		if obj[i] == ',' {
			i++
		}
	}
}

// Plain reports whether the JSON string literal q (quotes included) holds
// printable ASCII only, without escapes: the bytes between its quotes are
// its value, as encoding/json decodes it.
func Plain(q []byte) bool {
	if len(q) < 2 || q[0] != '"' {
		return false
	}
	for _, c := range q[1 : len(q)-1] {
		if c < 0x20 || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}

// SpaceOnly reports whether the JSON object obj, valid once trimmed by
// bytes.TrimSpace, is surrounded by JSON whitespace only, as json.Unmarshal
// requires (not \v, \f, U+0085 or U+00A0, which bytes.TrimSpace also trims).
func SpaceOnly(obj []byte) bool {
	i, j := skipSpace(obj, 0), len(obj)
	for j > i && isSpace(obj[j-1]) {
		j--
	}
	return j > i && obj[i] == '{' && obj[j-1] == '}'
}

// EachString calls fn with where each element of the JSON array arr (valid
// JSON) lies in arr, quotes included, while they are Plain strings; it
// reports false if one is not (or fn returned false).
func EachString(arr []byte, fn func(q Span) bool) bool {
	i := skipSpace(arr, 0) + 1 // past '['
	for {
		i = skipSpace(arr, i)
		if arr[i] == ']' {
			return true
		}
		end := skipValue(arr, i)
		if !Plain(arr[i:end]) || !fn(Span{i, end}) {
			return false
		}
		i = skipSpace(arr, end)
		if arr[i] == ',' {
			i++
		}
	}
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
			if depth < 0 { // the end of the enclosing value: a scalar ended before it
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

// Flat reports whether obj is a JSON object that json.Valid accepts,
// surrounded by JSON whitespace only (SpaceOnly), whose member values are
// all strings, numbers, true, false or null: the shape of a token response,
// checked in one pass (json.Valid's scanner costs several times more per
// byte). False says nothing more: obj may still be valid, with a nested
// object or array, or other surrounding space; ask json.Valid.
func Flat(obj []byte) bool {
	i := skipSpace(obj, 0)
	if i == len(obj) || obj[i] != '{' {
		return false
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return skipSpace(obj, i+1) == len(obj)
	}
	for {
		if i == len(obj) || obj[i] != '"' {
			return false
		}
		if i = validString(obj, i); i < 0 {
			return false
		}
		if i = skipSpace(obj, i); i == len(obj) || obj[i] != ':' {
			return false
		}
		if i = validScalar(obj, skipSpace(obj, i+1)); i < 0 {
			return false
		}
		if i = skipSpace(obj, i); i == len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return skipSpace(obj, i+1) == len(obj)
		default:
			return false
		}
	}
}

// validScalar returns the end of the valid JSON string, number, true, false
// or null starting at b[i], or -1.
func validScalar(b []byte, i int) int {
	if i == len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return validString(b, i)
	case c == '-' || c >= '0' && c <= '9':
		return validNumber(b, i)
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			return i + len(lit)
		}
	}
	return -1
}

// validString returns the end of the valid JSON string starting at the
// quote b[i], or -1: no control character, escapes as RFC 8259 §7 has them.
// Other bytes pass as they do json.Valid (which does not check UTF-8).
func validString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			if i++; i == len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i <= 4 {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// validNumber returns the end of the valid JSON number starting at b[i], or
// -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i == len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
