package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// ClientAssertionType is the RFC 7523 §2.2 client_assertion_type.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientAssertionLifetime is the validity of a private_key_jwt assertion.
const ClientAssertionLifetime = 60 * time.Second

// authPrivateKeyJWT: RFC 7523 §2.2 / OIDC Core §9 private_key_jwt. Every
// request gets a fresh assertion with its own 128-bit jti.
func authPrivateKeyJWT(creds ClientCredentials, endpoint string, form url.Values, now time.Time) error {
	if creds.Signer == nil {
		return fmt.Errorf("%w: private_key_jwt needs a signer", ErrConfig)
	}
	aud := creds.AssertionAudience
	if aud == "" {
		aud = endpoint
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return fmt.Errorf("oauth: client assertion jti: %w", err)
	}
	assertion, err := creds.Signer.Sign(map[string]any{
		"iss": creds.ClientID,
		"sub": creds.ClientID,
		"aud": aud,
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"exp": now.Add(ClientAssertionLifetime).Unix(),
	}, token.SignOptions{})
	if err != nil {
		return fmt.Errorf("%w: sign client assertion: %w", ErrConfig, err)
	}
	form.Set("client_id", creds.ClientID)
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", assertion)
	return nil
}
