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
