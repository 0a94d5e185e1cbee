package config

import (
	"errors"
	"strings"
	"testing"
)

// policy[].chains[].when is compiled at validation: its CEL errors are
// problems named by YAML path, next to the others.
func TestPolicyWhen(t *testing.T) {
	verified := strings.Replace(minimal, "jwks_uri: https://a.example/k,", "jwks_uri: https://a.example/k, verify_subject_token: true,", 1)
	when := func(doc, expr string) string {
		return strings.Replace(doc, `scopes: ["*"]}`, `scopes: ["*"], when: '`+expr+`'}`, 1)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string // "" valid
	}{
		{"tenant", when(verified, `subject.tenant == "acme"`), nil},
		{"group", when(verified, `"admins" in subject.groups`), nil},
		{"acr", when(verified, `has(subject.acr) && int(subject.acr) >= 2`), nil},
		{"payments", when(minimal, `!("payments:write" in request.scopes) || caller.name == "payments-agent"`), nil},
		{"undeclared variable", when(verified, `subjct.tenant == "acme"`),
			[]string{"policy[0].chains[0].when: ERROR: <input>:1:1: undeclared reference to 'subjct'"}},
		{"not bool", when(verified, `size(subject.groups)`), []string{"policy[0].chains[0].when: must be a bool expression, not int"}},
		{"subject on an unverified source", when(minimal, `subject.tenant == "acme"`),
			[]string{"policy[0].chains[0].when: ERROR: <input>:1:1: undeclared reference to 'subject'"}},
		{"with the other problems", strings.Replace(when(verified, `request.scope == []`), "client_secret_env: X", "", 1),
			[]string{"policy[0].chains[0].when: ERROR: <input>:1:1: undeclared reference to 'request'", "domains[0].client"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var p Problems
			if !errors.As(err, &p) {
				t.Fatalf("err = %v, want Problems", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("no %q in:\n%v", w, err)
				}
			}
		})
	}
}
