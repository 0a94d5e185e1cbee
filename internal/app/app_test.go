package app_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/oauth"
)

// Outbound https is verified: with the system roots a private CA's server
// is refused; with the domain's ca_file it is trusted.
func TestOutboundTLSTrust(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"issuer": srv.URL, "token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/certs",
		})
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(ca string) *config.File {
		return &config.File{Domains: []config.Domain{{
			Name: "d", Issuer: srv.URL, Discovery: true, CAFile: ca, Timeout: config.Duration(5e9),
			Client: config.Client{ClientID: "c", AuthMethod: "none"},
		}}}
	}
	client := oauth.NewClient(oauth.ClientOptions{})

	_, err := app.BuildDomains(context.Background(), cfg(""), client, nil, os.LookupEnv, false)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots trusted a private CA: %v", err)
	}
	domains, err := app.BuildDomains(context.Background(), cfg(caFile), client, nil, os.LookupEnv, false)
	if err != nil {
		t.Fatal(err)
	}
	if d := domains[0]; d.TokenEndpoint != srv.URL+"/token" || d.JWKSURI != srv.URL+"/certs" || d.Endpoint == nil {
		t.Errorf("domain = %+v", d)
	}
}
