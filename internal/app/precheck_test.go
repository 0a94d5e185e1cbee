package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
)

// Every static problem of a configuration (an unknown nested key, a wrong
// type, a missing secret, a missing TLS file) is reported in one error, by
// YAML path, before any network call: the discovery issuer, a loopback
// server that would fail discovery anyway, is never asked.
func TestStaticProblemsBeforeAnyNetworkCall(t *testing.T) {
	var requests atomic.Int64
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}))
	defer issuer.Close()
	missingCert := filepath.Join(t.TempDir(), "missing-cert.pem")
	missingKey := filepath.Join(t.TempDir(), "missing-key.pem")
	doc := func(mistakes string) string {
		return `listen: {grpc: 127.0.0.1:0, http: 127.0.0.1:0` + mistakes + `}
tls: {cert_file: ` + missingCert + `, key_file: ` + missingKey + `}
callers: {allow_anonymous: true}
policy: [{caller: anonymous, chains: [{source: a, target: b}]}]
domains:
  - {name: a, issuer: "` + issuer.URL + `/a", discovery: true, allow_insecure_http: true, client: {client_id: c, client_secret_env: CHAINBROKER_TEST_UNSET_A}}
  - {name: b, issuer: "` + issuer.URL + `/b", discovery: true, allow_insecure_http: true, client: {client_id: c, client_secret_env: CHAINBROKER_TEST_SET_B}}
chains: [{source: a, target: b}]
`
	}
	env := func(k string) (string, bool) { return "secret", k == "CHAINBROKER_TEST_SET_B" }
	static := []string{
		"tls.cert_file: open " + missingCert + ": no such file or directory",
		"tls.key_file: open " + missingKey + ": no such file or directory",
		"domains[0].client.client_secret_env: environment variable CHAINBROKER_TEST_UNSET_A is not set",
	}

	// From the file: decode problems with the static ones.
	_, err := config.ParseAndCheck([]byte(doc(", grcp: 127.0.0.1:9090, shutdown_timeout: [15s]")), env)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, w := range append([]string{
		"listen.grcp: unknown key (did you mean grpc?) (line 1)",
		"listen.shutdown_timeout: want a duration such as 300s or 5m (line 1)",
	}, static...) {
		if !strings.Contains(err.Error(), "\n  "+w) {
			t.Errorf("no line %q in:\n%v", w, err)
		}
	}

	// Build of a configuration that validates: every static problem at
	// once, before discovery.
	cfg, err := config.Parse([]byte(doc("")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.Build(context.Background(), cfg, app.Options{LookupEnv: env})
	if err == nil {
		t.Fatal("Build: want an error")
	}
	for _, w := range static {
		if !strings.Contains(err.Error(), "\n  "+w) {
			t.Errorf("Build: no line %q in:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), "discovery") {
		t.Errorf("Build tried discovery: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests reached the discovery issuer before the static problems were reported", n)
	}
}
