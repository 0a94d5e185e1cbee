package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// RestartRequired names, by YAML path, every restart-only key a new file
// changes, and nothing a reload may change.
func TestRestartRequired(t *testing.T) {
	tests := []struct {
		name string
		add  string // YAML appended to minimal
		want []string
	}{
		{"same file", "", nil},
		{"defaults written out", "listen: {grpc: 127.0.0.1:9090, max_connections: 1024}\nlog: {format: json}\nstore: {backend: memory}\n", nil},
		{"reloadable keys only", "log: {level: debug}\nrate_limit: {requests_per_second: 5, burst: 10}\nlimits: {max_scopes: 8}\n" +
			"cache: {keys: [{id: k1, secret_env: K}]}\n", nil},
		{"listen address and limit", "listen: {http: 127.0.0.1:8081, max_connections: 10, keepalive: {time: 2m}}\n",
			[]string{"listen.http", "listen.max_connections", "listen.keepalive.time"}},
		{"admin listener", "listen: {admin: 127.0.0.1:9999}\n", []string{"listen.admin"}},
		{"store backend", "store: {backend: redis, redis: {url: redis://127.0.0.1:6379/0}}\n",
			[]string{"store.backend", "store.redis.url"}},
		{"tls files", "tls: {cert_file: /c.pem, key_file: /k.pem}\n", []string{"tls.cert_file", "tls.key_file"}},
		{"log format", "log: {format: text, level: debug}\n", []string{"log.format"}},
		{"issuer url, not its keys", "issuer: {url: https://broker.example, keys: [{file: /k.pem, state: active}]}\n", []string{"issuer.url"}},
		{"audit export, with the defaults it brings", "audit_export: {sink: stdout}\n",
			[]string{"audit_export.sink", "audit_export.batch_size", "audit_export.consumer_group", "audit_export.claim_idle"}},
		{"list of addresses", "store: {redis: {addrs: [a:1, b:2]}}\n", []string{"store.redis.addrs"}},
	}
	running, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := decode([]byte(minimal + tt.add))
			if err != nil || len(d.problems) > 0 {
				t.Fatalf("decode: %v %v", err, d.problems)
			}
			next := d.file
			next.SetDefaults()
			if got := RestartRequired(running, next); !slices.Equal(got, tt.want) {
				t.Errorf("RestartRequired = %q, want %q", got, tt.want)
			}
		})
	}
}

// Every RestartOnly entry is a key of File (RestartRequired would panic),
// and docs/configuration.md's Reload section names each.
func TestRestartOnlyKeysDocumented(t *testing.T) {
	f, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	_ = RestartRequired(f, f)
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, reload, ok := strings.Cut(string(doc), "\n## Reload")
	if !ok {
		t.Fatal("docs/configuration.md has no Reload section")
	}
	reload, _, _ = strings.Cut(reload, "\n## ")
	for _, k := range RestartOnly {
		if !strings.Contains(reload, "`"+k+"`") {
			t.Errorf("the Reload section does not name the restart-only key `%s`", k)
		}
	}
	for _, m := range []string{"chainbroker_config_reloads_total", "SIGHUP"} {
		if !strings.Contains(reload, m) {
			t.Errorf("the Reload section does not mention %s", m)
		}
	}
}

func TestReadFileBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, make([]byte, MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadFile of a file over the bound: %v", err)
	}
	if _, err := LoadAndCheck(path, os.LookupEnv); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("LoadAndCheck of a file over the bound: %v", err)
	}
}
