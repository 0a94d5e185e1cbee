package oauth

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
)

// authClientSecretBasic: RFC 6749 §2.3.1. The client id and secret are
// form-urlencoded (url.QueryEscape: space becomes "+") before being joined
// with ":" and base64-encoded, so ids and secrets containing ':' survive.
func authClientSecretBasic(creds ClientCredentials, h http.Header) error {
	if creds.Secret == "" {
		return fmt.Errorf("%w: client_secret_basic needs a secret", ErrConfig)
	}
	pair := url.QueryEscape(creds.ClientID) + ":" + url.QueryEscape(creds.Secret)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(pair)))
	return nil
}
