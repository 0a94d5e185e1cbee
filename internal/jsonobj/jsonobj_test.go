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
