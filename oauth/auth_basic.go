package oauth

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// authClientSecretBasic: RFC 6749 §2.3.1. The client id and secret are
// form-urlencoded (url.QueryEscape: space becomes "+") before being joined
// with ":" and base64-encoded, so ids and secrets containing ':' survive.
// The header value is its one allocation: the pair and its encoding are
// built on the stack when they are short.
func authClientSecretBasic(creds ClientCredentials, h http.Header) error {
	if creds.Secret == "" {
		return fmt.Errorf("%w: client_secret_basic needs a secret", ErrConfig)
	}
	var pairBuf [128]byte
	pair := appendQueryEscape(pairBuf[:0], creds.ClientID)
	pair = append(pair, ':')
	pair = appendQueryEscape(pair, creds.Secret)
	var encBuf [256]byte
	enc := base64.StdEncoding.AppendEncode(encBuf[:0], pair)
	var v strings.Builder // the header value, its only allocation
	v.Grow(len("Basic ") + len(enc))
	v.WriteString("Basic ")
	v.Write(enc)
	h["Authorization"] = []string{v.String()}
	return nil
}
