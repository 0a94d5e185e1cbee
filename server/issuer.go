package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// IssuerInfo publishes the broker's own issuer metadata and keys (issue
// mode), so that a target such as Keycloak's JWT Authorization Grant
// identity provider can fetch them by URL.
type IssuerInfo struct {
	URL  string
	JWKS func() []byte // current public JWKS (active and published keys)
}

// registerIssuer serves, under the issuer URL's path on the REST listener,
// /.well-known/openid-configuration and /.well-known/jwks.json, and the
// RFC 8414 form /.well-known/oauth-authorization-server{path}.
func registerIssuer(mux *http.ServeMux, info *IssuerInfo) error {
	u, err := url.Parse(info.URL)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(u.Path, "/")
	jwksURI := strings.TrimSuffix(info.URL, "/") + "/.well-known/jwks.json"
	metadata, err := json.Marshal(map[string]any{
		"issuer":                   info.URL,
		"jwks_uri":                 jwksURI,
		"response_types_supported": []string{"none"},
		"subject_types_supported":  []string{"public"},
	})
	if err != nil {
		return err
	}
	serveMetadata := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(metadata)
	}
	mux.HandleFunc("GET "+base+"/.well-known/openid-configuration", serveMetadata)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server"+base, serveMetadata)
	mux.HandleFunc("GET "+base+"/.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		// Short: a rotated-in key must reach verifiers that cache the JWKS.
		w.Header().Set("Cache-Control", "public, max-age=60")
		_, _ = w.Write(info.JWKS())
	})
	return nil
}
