package oauth

import (
	"fmt"
	"net/url"
)

// authClientSecretPost: RFC 6749 §2.3.1, credentials in the request body.
func authClientSecretPost(creds ClientCredentials, form url.Values) error {
	if creds.Secret == "" {
		return fmt.Errorf("%w: client_secret_post needs a secret", ErrConfig)
	}
	form.Set("client_id", creds.ClientID)
	form.Set("client_secret", creds.Secret)
	return nil
}
