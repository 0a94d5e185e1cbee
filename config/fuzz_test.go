package config

import (
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds Parse with YAML: the shipped examples, broken variants of
// them and whatever the fuzzer makes. Parse never panics; it returns a
// configuration or an error, never both. A configuration it returns is one
// the rest of chainbroker may rely on: Validate accepts it again (Parse is
// deterministic), every domain has a unique name and issuer and https URLs
// (http only where allowed), every chain joins two distinct configured
// domains, assertion policies allow only asymmetric algorithms with a
// positive lifetime and a bounded skew, anonymous callers only on loopback
// listeners, and the policy names only configured chains.
func FuzzParse(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil || len(examples) == 0 {
		f.Fatalf("examples: %v %v", examples, err)
	}
	for _, name := range examples {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		doc := string(b)
		// Broken variants of each example.
		f.Add([]byte(strings.Replace(doc, "allow_insecure_http: true", "allow_insecure_http: false", 1)))
		f.Add([]byte(strings.Replace(doc, "source: domain-a", "source: domain-b", 1)))
		f.Add([]byte(strings.Replace(doc, "max_lifetime: 300s", "max_lifetime: -1ns", 1)))
		f.Add([]byte(strings.Replace(doc, "clock_skew: 0s", "clock_skew: 9223372036854775807ns", 1)))
		f.Add([]byte(strings.Replace(doc, "domains:", "domains: &d", 1) + "\nextra: *d\n"))
		f.Add([]byte(strings.ReplaceAll(doc, "\n  ", "\n\t")))
		f.Add([]byte(doc[:len(doc)/2]))
		f.Add([]byte(doc + "\n---\n" + doc))
	}
	for _, doc := range []string{
		minimal,
		"allow_anonymous_callers: true\n" + minimal,
		"callers: {allow_anonymous: true}\n" + minimal,
		"callers: {allow_anonymous: true}\nlisten: {http: '[::1]:8080', grpc: 'localhost:0'}\n" + minimal,
		"callers: {allow_anonymous: true}\nlisten: {http: ':8080'}\n" + minimal,
		"callers: {api_keys: [{name: k, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}]}\n" + minimal,
		"callers: {allow_anonymous: true}\npolicy: [{caller: anonymous, roles: [audit], chains: [{source: a, target: b, scopes: ['*']}]}]\n" + minimal,
		"",
		"~",
		"[]",
		"domains: 5",
		"domains: [{name: &n a, issuer: *n}]",
		"a: &a [*a, *a]",
		"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n",
		"listen: {shutdown_timeout: 1e9}",
		"listen: {shutdown_timeout: [1s]}",
		"limits: {max_token_bytes: 99999999999999999999}",
		"rate_limit: {requests_per_second: .nan, burst: -1}",
		"domains: [{name: a, issuer: 'https://a.example', token_endpoint: '//a.example/t', jwks_uri: 'https://a.example:99999/k'}]",
		"!!binary aGVsbG8=",
		"? [a, b]\n: c\n",
		"%YAML 1.1\n---\nlisten: {http: 127.0.0.1:8080}\n",
		"domains:\n- name: a\n  name: b\n",
		strings.Repeat("[", 200) + strings.Repeat("]", 200),
	} {
		f.Add([]byte(doc))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned %v and %v", cfg, err)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error without the config: prefix: %v", err)
			}
			return
		}
		again, err := Parse(data)
		if err != nil || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("second Parse differs: %v", err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate refuses what Parse returned: %v", err)
		}
		checkValidConfig(t, cfg)
	})
}

// checkValidConfig checks, independently of Validate, what the rest of
// chainbroker relies on in a parsed configuration.
func checkValidConfig(t *testing.T, cfg *File) {
	t.Helper()
	if len(cfg.Domains) == 0 || len(cfg.Chains) == 0 {
		t.Fatalf("%d domains and %d chains", len(cfg.Domains), len(cfg.Chains))
	}
	names, issuers := map[string]bool{}, map[string]bool{}
	for i, d := range cfg.Domains {
		if d.Name == "" || d.Issuer == "" || names[d.Name] || issuers[d.Issuer] {
			t.Fatalf("domains[%d]: name %q, issuer %q: empty or duplicate", i, d.Name, d.Issuer)
		}
		names[d.Name], issuers[d.Issuer] = true, true
		if d.TokenEndpoint == "" && !d.Discovery {
			t.Fatalf("domains[%d]: no token endpoint and no discovery", i)
		}
		for _, u := range []string{d.Issuer, d.TokenEndpoint, d.JWKSURI} {
			if u != "" && !fetchableURL(u, d.AllowInsecureHTTP) {
				t.Fatalf("domains[%d]: URL %q accepted (allow_insecure_http %v)", i, u, d.AllowInsecureHTTP)
			}
		}
		if d.Client.ClientID == "" || !slices.Contains(authMethods, d.Client.AuthMethod) {
			t.Fatalf("domains[%d].client = %+v", i, d.Client)
		}
		a := d.Assertion
		if len(a.Audience) == 0 || a.MaxLifetime <= 0 || a.ClockSkew < 0 || a.ClockSkew.D() > 5*time.Minute || d.Timeout < 0 {
			t.Fatalf("domains[%d]: assertion policy %+v, timeout %v", i, a, d.Timeout)
		}
		for _, alg := range a.AllowedAlgs {
			if alg == "none" || strings.HasPrefix(alg, "HS") || !slices.Contains(verifyAlgs, alg) {
				t.Fatalf("domains[%d]: allowed alg %q", i, alg)
			}
		}
	}
	routes := map[[2]string]bool{}
	for i, c := range cfg.Chains {
		if cfg.Domain(c.Source) == nil || cfg.Domain(c.Target) == nil || c.Source == c.Target || routes[[2]string{c.Source, c.Target}] {
			t.Fatalf("chains[%d]: %q -> %q", i, c.Source, c.Target)
		}
		routes[[2]string{c.Source, c.Target}] = true
		if c.Audience == "" {
			t.Fatalf("chains[%d]: no audience", i)
		}
	}
	cl := cfg.Callers
	if !cl.AllowAnonymous && !cl.MTLS && len(cl.APIKeys) == 0 && cl.JWT == nil {
		t.Fatal("no way to authenticate callers")
	}
	if cl.AllowAnonymous && (!loopbackOnly(cfg.Listen.GRPC) || !loopbackOnly(cfg.Listen.HTTP)) {
		t.Fatalf("anonymous callers on %q and %q", cfg.Listen.GRPC, cfg.Listen.HTTP)
	}
	for i, k := range cl.APIKeys {
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != 32 || k.Name == "" {
			t.Fatalf("callers.api_keys[%d] = %+v", i, k)
		}
	}
	for i, e := range cfg.Policy {
		if e.Caller == "" || e.Caller == "anonymous" && !cl.AllowAnonymous {
			t.Fatalf("policy[%d].caller = %q", i, e.Caller)
		}
		for _, pc := range e.Chains {
			if !routes[[2]string{pc.Source, pc.Target}] {
				t.Fatalf("policy[%d] grants unconfigured chain %q -> %q", i, pc.Source, pc.Target)
			}
		}
	}
}

// fetchableURL reports whether raw is an absolute https URL, or http when
// allowed.
func fetchableURL(raw string, allowHTTP bool) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Host != "" && (u.Scheme == "https" || u.Scheme == "http" && allowHTTP)
}

// loopbackOnly reports whether a listen address binds a loopback address
// (or localhost) only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}
