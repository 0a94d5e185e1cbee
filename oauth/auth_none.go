package oauth

import "net/url"

// authNone: a public client only identifies itself (RFC 6749 §3.2.1).
func authNone(creds ClientCredentials, form url.Values) error {
	form.Set("client_id", creds.ClientID)
	return nil
}
