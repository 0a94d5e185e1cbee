package oauth

import (
	"fmt"
	"net/http"
	"net/url"
)

// authenticate adds client authentication for creds to the outgoing form
// and headers. Each method lives in its own auth_*.go file.
func (c *Client) authenticate(creds ClientCredentials, endpoint string, form url.Values, h http.Header) error {
	if creds.ClientID == "" {
		return fmt.Errorf("%w: no client_id", ErrConfig)
	}
	switch creds.Method {
	case AuthClientSecretBasic:
		return authClientSecretBasic(creds, h)
	case AuthClientSecretPost:
		return authClientSecretPost(creds, form)
	case AuthPrivateKeyJWT:
		return authPrivateKeyJWT(creds, endpoint, form, c.now())
	case AuthNone:
		return authNone(creds, form)
	default:
		return fmt.Errorf("%w: unknown client authentication method %q", ErrConfig, creds.Method)
	}
}
