package oauth

import (
	"encoding/base64"
	"fmt"
	"net/http"
)

// authClientSecretBasic: RFC 6749 §2.3.1. The client id and secret are
// form-urlencoded (url.QueryEscape: space becomes "+") before being joined
// with ":" and base64-encoded, so ids and secrets containing ':' survive.
// The header value is built in one buffer (the pair on the stack when it
// is short), not through intermediate strings.
func authClientSecretBasic(creds ClientCredentials, h http.Header) error {
	if creds.Secret == "" {
		return fmt.Errorf("%w: client_secret_basic needs a secret", ErrConfig)
	}
	var pairBuf [128]byte
	pair := appendQueryEscape(pairBuf[:0], creds.ClientID)
	pair = append(pair, ':')
	pair = appendQueryEscape(pair, creds.Secret)
	const prefix = "Basic "
	v := make([]byte, len(prefix)+base64.StdEncoding.EncodedLen(len(pair)))
	copy(v, prefix)
	base64.StdEncoding.Encode(v[len(prefix):], pair)
	h["Authorization"] = []string{string(v)}
	return nil
}
