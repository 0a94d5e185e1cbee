package config

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store/memory"
	jwt "github.com/chainbroker/chainbroker/token"
)

// processDefaults are the only values config itself owns: the process-level
// defaults no other package applies. Every other default in SetDefaults and
// in the Default* constants must name its owner's exported constant.
var processDefaults = map[string]bool{
	`"127.0.0.1:9090"`: true, `"127.0.0.1:8080"`: true, // listen addresses
	`"info"`: true, `"json"`: true, // log
	`"memory"`:              true, // store backend
	`"chainbroker-export"`:  true, // audit_export.consumer_group
	`"client_secret_basic"`: true, // domains[].client.auth_method
}

// Each default is defined once: SetDefaults and the Default* constants of
// config.go hold no number or value of their own beyond processDefaults; the
// rest are the exported constants of broker, server, token, oauth, store/redis
// and internal/export.
func TestDefaultsHaveOneOwner(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	literals := func(where string, n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || processDefaults[lit.Value] || lit.Value == "0" || lit.Value == `""` { // zero: the "unset" checks
				return true
			}
			t.Errorf("%s: %s: literal %s: name the owner's exported default instead", fset.Position(lit.Pos()), where, lit.Value)
			return true
		})
	}
	var sawSetDefaults, sawConsts bool
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Name.Name == "SetDefaults" {
				sawSetDefaults = true
				literals("SetDefaults", d.Body)
			}
		case *ast.GenDecl:
			if d.Tok != token.CONST && d.Tok != token.VAR {
				continue
			}
			for _, s := range d.Specs {
				vs := s.(*ast.ValueSpec)
				for i, name := range vs.Names {
					n := name.Name
					if len(n) > 7 && n[:7] == "Default" || n == "TokenTypeAccessToken" || n == "verifyAlgs" {
						sawConsts = true
						if i < len(vs.Values) {
							literals(n, vs.Values[i])
						}
					}
				}
			}
		}
	}
	if !sawSetDefaults || !sawConsts {
		t.Fatalf("SetDefaults found: %v, Default* constants found: %v", sawSetDefaults, sawConsts)
	}
	// The algorithm allow-list is token's very slice, not a copy.
	if len(verifyAlgs) == 0 || &verifyAlgs[0] != &jwt.DefaultAllowedAlgs[0] {
		t.Errorf("verifyAlgs = %v is not token.DefaultAllowedAlgs", verifyAlgs)
	}
}

type noKeys struct{}

func (noKeys) Verify(context.Context, string) (*jwt.Token, error) { return nil, jwt.ErrKeyUnknown }

// A configuration built from a minimal file and a broker built from zero
// values agree on every default both see: what config writes in (and what
// docs/configuration.md shows) is what the broker would use anyway.
func TestDefaultsMatchTheBrokers(t *testing.T) {
	cfg, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New(memory.Options{})
	bcfg := broker.Config{Endpoint: oauth.NewClient(oauth.ClientOptions{}), Replay: st, Audit: st}
	for _, d := range cfg.Domains {
		bcfg.Domains = append(bcfg.Domains, broker.Domain{Name: d.Name, Issuer: d.Issuer, TokenEndpoint: d.TokenEndpoint, Keys: noKeys{}})
	}
	for _, c := range cfg.Chains {
		bcfg.Chains = append(bcfg.Chains, broker.Chain{Source: c.Source, Target: c.Target})
	}
	b, err := broker.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range b.Domains() {
		d := cfg.Domains[i]
		for _, tc := range []struct {
			name       string
			cfg, owner any
		}{
			{"timeout", d.Timeout.D(), got.Timeout},
			{"token_exchange.subject_token_type", d.TokenExchange.SubjectTokenType, got.SubjectTokenType},
			{"token_exchange.requested_token_type", d.TokenExchange.RequestedTokenType, got.RequestedTokenType},
			{"assertion.max_lifetime", d.Assertion.MaxLifetime.D(), got.Assertion.MaxLifetime},
			{"assertion.audience", d.Assertion.Audience[0] + "/" + strconv.Itoa(len(d.Assertion.Audience)), got.Assertion.Audience[0] + "/" + strconv.Itoa(len(got.Assertion.Audience))},
			{"assertion.allowed_algs (the allow-list)", slices.Clone(verifyAlgs), slices.Clone(got.Assertion.AllowedAlgs)},
		} {
			if s1, ok := tc.cfg.([]string); ok {
				if !slices.Equal(s1, tc.owner.([]string)) {
					t.Errorf("domains[%d].%s: config %v, broker %v", i, tc.name, tc.cfg, tc.owner)
				}
				continue
			}
			if tc.cfg != tc.owner {
				t.Errorf("domains[%d].%s: config %v, broker %v", i, tc.name, tc.cfg, tc.owner)
			}
		}
	}
	for i, got := range b.Chains() {
		if c := cfg.Chains[i]; c.Audience != got.Audience {
			t.Errorf("chains[%d].audience: config %q, broker %q", i, c.Audience, got.Audience)
		}
	}
	if l := cfg.Limits; l.MaxTokenBytes != jwt.MaxTokenBytes || l.MaxScopes != broker.DefaultMaxScopes || l.MaxResources != broker.DefaultMaxResources {
		t.Errorf("limits = %+v, want the broker's defaults", l)
	}
}
