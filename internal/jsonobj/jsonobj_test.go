package jsonobj

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzEachMember checks EachMember against json.Unmarshal into a map of raw
// members: for a valid object whose names it accepts, it finds the same
// members with the same values (the last of duplicates wins in both), and
// EachString finds an array's plain strings as json.Unmarshal does.
func FuzzEachMember(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { "a" : 1 , "b":"x\"}" ,"c":[1,{"d":[]}],"e":null,"a":true} `,
		`{"aud":["x","y"],"exp":1.5e3,"s":"\u00e9"}`, `{"\u0061":1}`, "{}\v", `{"a":-0}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		if !json.Valid(obj) || !SpaceOnly(obj) {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(obj, &want); err != nil {
			t.Fatalf("SpaceOnly accepted %q: %v", obj, err)
		}
		got := map[string]json.RawMessage{}
		if !EachMember(obj, func(name, value Span) bool {
			got[string(obj[name.Start:name.End])] = obj[value.Start:value.End]
			return true
		}) {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%q: EachMember found %d members, json.Unmarshal %d", obj, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%q: member %q is %q, want %q", obj, k, got[k], v)
			}
			var l []string
			if len(v) > 0 && v[0] == '[' {
				var found []string
				if EachString(v, func(q Span) bool { found = append(found, string(v[q.Start+1:q.End-1])); return true }) {
					if json.Unmarshal(v, &l) != nil || len(l) != len(found) {
						t.Fatalf("%q: EachString found %q", v, found)
					}
					for i := range l {
						if l[i] != found[i] {
							t.Fatalf("%q: EachString found %q, want %q", v, found, l)
						}
					}
				}
			}
		}
	})
}

func TestFlat(t *testing.T) {
	for _, tc := range []struct {
		obj  string
		want bool
	}{
		{`{}`, true},
		{" \t\r\n{ } \n", true},
		{`{"access_token":"eyJ.x.y","token_type":"Bearer","expires_in":300,"scope":"a b"}`, true},
		{`{"a":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00","b":-0.5e+10,"c":true,"d":false,"e":null,"f":0,"g":1E3}`, true},
		{"{\"a\":\"é ☃ \xff\"}", true}, // json.Valid does not check UTF-8 either
		{`{"a":1,"a":2}`, true},
		{`{"a":{"b":1}}`, false}, // valid, but nested: json.Valid decides
		{`{"a":[1]}`, false},
		{`[]`, false},
		{`"a"`, false},
		{``, false},
		{`{`, false},
		{`{"a"}`, false},
		{`{"a":}`, false},
		{`{"a":1,}`, false},
		{`{,}`, false},
		{`{"a":1 "b":2}`, false},
		{`{"a":1}x`, false},
		{`{"a":1}{}`, false},
		{"{}\v", false},
		{`{"a":01}`, false},
		{`{"a":1.}`, false},
		{`{"a":.5}`, false},
		{`{"a":1e}`, false},
		{`{"a":1e+}`, false},
		{`{"a":-}`, false},
		{`{"a":+1}`, false},
		{`{"a":tru}`, false},
		{`{"a":truex}`, false},
		{`{"a":nul`, false},
		{`{"a":"\x}`, false},
		{`{"a":"\u12G4"}`, false},
		{`{"a":"\u12"}`, false},
		{"{\"a\":\"\x01\"}", false},
		{`{"a":"unterminated}`, false},
		{`{"a":"\`, false},
		{`{a:1}`, false},
	} {
		if got := Flat([]byte(tc.obj)); got != tc.want {
			t.Errorf("Flat(%q) = %v, want %v", tc.obj, got, tc.want)
		}
		if tc.want && !json.Valid([]byte(tc.obj)) {
			t.Errorf("%q: the table says flat, json.Valid refuses it", tc.obj)
		}
	}
}

// FuzzFlat holds Flat to json.Valid: what it accepts is a valid object with
// JSON space around it and scalar members only, and it accepts every such
// object.
func FuzzFlat(f *testing.F) {
	for _, s := range []string{
		`{}`, ` {"a":"x\"}","b":-1.5e3,"c":null,"d":true} `, `{"a":{"b":1}}`, `{"a":"\u00e9"}`,
		"{}\v", `{"a":01}`, `{"a":1,}`, `{"a":"\q"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		flat := json.Valid(obj) && SpaceOnly(obj)
		if flat {
			var members map[string]json.RawMessage
			if err := json.Unmarshal(obj, &members); err != nil {
				t.Fatalf("%q: %v", obj, err)
			}
			for _, v := range members {
				if v[0] == '{' || v[0] == '[' {
					flat = false
				}
			}
		}
		if got := Flat(obj); got != flat {
			t.Fatalf("Flat(%q) = %v; valid, space-only and scalar members: %v", obj, got, flat)
		}
	})
}
