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

// chains[].transcription.compute: checked at validation, by YAML path.
func TestTranscriptionCompute(t *testing.T) {
	issue := `
callers:
  api_keys: [{name: agent, sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}]
policy:
  - {caller: agent, chains: [{source: a, target: b}]}
issuer: {url: https://broker.example, keys: [{id: k1, file: /k, state: active}]}
domains:
  - {name: a, issuer: https://a.example/realms/a, token_endpoint: https://a.example/t, jwks_uri: https://a.example/k, client: {client_id: c, client_secret_env: X}}
  - {name: b, issuer: https://b.example/realms/b, token_endpoint: https://b.example/t, client: {client_id: c, client_secret_file: /s}}
chains: [{source: a, target: b, mode: issue, subject_audience: [chainbroker], transcription: {compute: COMPUTE}}]
`
	for _, tc := range []struct {
		name, compute string
		want          []string
	}{
		{"valid", `{tenant: 'subject.email.split("@")[1]', roles: '["a"]'}`, nil},
		{"reserved", `{sub: '"x"'}`, []string{`chains[0].transcription.compute.sub: "sub" is set by the broker, not computed`}},
		{"not JSON", `{t: 'now'}`, []string{"chains[0].transcription.compute.t: must have a JSON type"}},
		{"undeclared", `{t: 'subjct.a'}`, []string{"chains[0].transcription.compute.t: ERROR: <input>:1:1: undeclared reference to 'subjct'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(issue, "COMPUTE", tc.compute, 1)))
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("no %q in:\n%v", w, err)
				}
			}
			if len(tc.want) == 0 && err != nil && strings.Contains(err.Error(), "compute") {
				t.Errorf("compute problems in:\n%v", err)
			}
		})
	}
	doc := strings.Replace(minimal, "chains: [{source: a, target: b}]", `chains: [{source: a, target: b, transcription: {compute: {t: '"x"'}}}]`, 1)
	if _, err := Parse([]byte(doc)); err == nil || !strings.Contains(err.Error(), "chains[0].transcription.compute: only in issue mode") {
		t.Errorf("token exchange mode: %v", err)
	}
}
