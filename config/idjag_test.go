package config

import (
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
)

// idJAGYAML is two domains and one chain between them; the markers are
// replaced per case.
const idJAGYAML = `callers:
  api_keys:
    - name: agent
      sha256: "0000000000000000000000000000000000000000000000000000000000000000"
domains:
  - name: idp
    issuer: https://idp.example
    token_endpoint: https://idp.example/token
    jwks_uri: https://idp.example/jwks
    client: {client_id: chainbroker, auth_method: SRC_AUTH, client_secret_env: S}
  - name: mcp
    issuer: https://mcp.example
    token_endpoint: https://mcp.example/token
    client: {client_id: chainbroker, auth_method: TGT_AUTH, client_secret_env: S}
    assertion: {verify_signature: VERIFY}
chains:
  - source: idp
    target: mcp
    profile: PROFILE
`

func idJAGConfig(profile, srcAuth, tgtAuth, verify string) string {
	return strings.NewReplacer("PROFILE", profile, "SRC_AUTH", srcAuth, "TGT_AUTH", tgtAuth, "VERIFY", verify).Replace(idJAGYAML)
}

// chains[].profile and domains[].assertion.verify_signature: parsed,
// checked, and refused with a path where they cannot work.
func TestProfileAndVerifySignature(t *testing.T) {
	tests := []struct {
		name                            string
		profile, srcAuth, tgtAuth, vrfy string
		want                            string // a problem's text; "" valid
	}{
		{"id_jag", "id_jag", "client_secret_basic", "client_secret_basic", "true", ""},
		{"jwt_grant", "jwt_grant", "client_secret_basic", "none", "true", ""},
		{"unknown profile", "id-jag", "client_secret_basic", "client_secret_basic", "true", `chains[0].profile: must be jwt_grant or id_jag; got "id-jag"`},
		{"id_jag to a public client", "id_jag", "client_secret_basic", "none", "true", "chains[0].profile: id_jag presents the grant with client authentication"},
		{"unverified grants over an authenticated call", "id_jag", "client_secret_basic", "client_secret_basic", "false", ""},
		{"unverified grants from a public client", "id_jag", "none", "client_secret_basic", "false", "assertion.verify_signature: false, which needs grants received over an authenticated call"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(idJAGConfig(tt.profile, tt.srcAuth, tt.tgtAuth, tt.vrfy)))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if f.Chains[0].Profile != broker.Profile(tt.profile) {
					t.Errorf("profile %q", f.Chains[0].Profile)
				}
				if v := f.Domains[1].Assertion.VerifySignature; v == nil || (*v) != (tt.vrfy == "true") {
					t.Errorf("verify_signature %v", v)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v, want a problem %q", err, tt.want)
			}
		})
	}
	// Absent, verify_signature is nil: the default (true).
	f, err := Parse([]byte(strings.Replace(idJAGConfig("id_jag", "client_secret_basic", "client_secret_basic", "true"),
		"    assertion: {verify_signature: true}\n", "", 1)))
	if err != nil || f.Domains[1].Assertion.VerifySignature != nil || f.Chains[0].Profile != broker.ProfileIDJAG {
		t.Fatalf("defaults: %v", err)
	}
}
