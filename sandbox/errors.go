package sandbox

import (
	"encoding/json"
	"net/http"
)

// OAuth error descriptions (RFC 6749 §5.2 "error_description") the sandbox
// answers with. They are Keycloak 26.5's own wording, including its quirks
// (no space in "Missing parameter:assertion"), except where marked
// "sandbox": those checks are stricter than Keycloak's or name a choice
// Keycloak does not have, and their wording is the sandbox's.
//
// Token endpoint and client authentication (both domains):
const (
	// DescMissingGrantType: 400 invalid_request.
	DescMissingGrantType = "Missing form parameter: grant_type"
	// DescUnsupportedGrantType: 400 unsupported_grant_type.
	DescUnsupportedGrantType = "Unsupported grant_type"
	// DescDuplicatedParameter: 400 invalid_request, a parameter sent twice
	// (RFC 6749 §3.2; audience and resource may repeat, RFC 8693).
	DescDuplicatedParameter = "duplicated parameter"
	// DescBodyTooLarge: 413 invalid_request (sandbox: body above 64 KiB).
	DescBodyTooLarge = "Request body too large"
	// DescMultipleClientAuth: 400 invalid_request, more than one client
	// authentication method in one request (RFC 6749 §2.3).
	DescMultipleClientAuth = "Multiple client authentication methods"
	// DescInvalidClient: 401 invalid_client, unknown client or wrong
	// secret. Keycloak answers a wrong secret with unauthorized_client;
	// the sandbox uses RFC 6749's invalid_client for every client
	// authentication failure.
	DescInvalidClient = "Invalid client or Invalid client credentials"
	// DescInvalidScope prefixes the refused scopes: 400 invalid_scope. The
	// sandbox has no scope registry: it refuses only scopes that are not
	// RFC 6749 §3.3 scope tokens.
	DescInvalidScope = "Invalid scopes: "
)

// Domain A, password grant (client sandbox-agent):
const (
	// DescDirectGrantNotAllowed: 400 unauthorized_client, a client other
	// than sandbox-agent asked for the password grant.
	DescDirectGrantNotAllowed = "Client not allowed for direct access grants"
	// DescInvalidUserCredentials: 401 invalid_grant.
	DescInvalidUserCredentials = "Invalid user credentials"
	// DescTooManyAudiences (sandbox): 400 invalid_request, more than 8
	// audience parameters.
	DescTooManyAudiences = "Too many audience parameters"
	// DescInvalidAudienceParam (sandbox): 400 invalid_request, an empty
	// audience parameter or one above 256 bytes.
	DescInvalidAudienceParam = "Invalid audience parameter"
)

// Domain A, token exchange (client chainbroker). All 400 invalid_request
// unless noted, in Keycloak's order.
const (
	DescExchangeNotEnabled            = "Standard token exchange is not enabled for the requested client"
	DescSubjectTokenRequired          = "Parameter 'subject_token' required for standard token exchange"
	DescSubjectTokenTypeRequired      = "Parameter 'subject_token_type' required for standard token exchange"
	DescAccessTokensOnly              = "Parameter 'subject_token' supports access tokens only"
	DescRequestedTokenTypeUnsupported = "requested_token_type unsupported"
	// DescInvalidToken: the subject token is not a valid, unexpired access
	// token issued by domain A to a known user.
	DescInvalidToken = "Invalid token"
	// DescClientNotInAudience: 403 access_denied, the requesting client is
	// not in the subject token's aud (Keycloak's standard token exchange
	// requires it; sandbox-agent's tokens carry aud chainbroker).
	DescClientNotInAudience = "Client is not within the token audience"
	// DescAudienceRequired (sandbox): no audience parameter. The chaining
	// draft requires the target to be named; `resource` is ignored, as
	// Keycloak does.
	DescAudienceRequired = "Parameter 'audience' required"
	// DescAudienceNotFound: 400 invalid_client, no client of realm A has
	// the requested audience as its Client ID.
	DescAudienceNotFound = "Audience not found"
	// DescClientDisabled: 400 invalid_client, the audience client is
	// disabled.
	DescClientDisabled = "Client disabled"
	// DescAudienceNotAvailable prefixes the refused audiences (those not
	// allowed for the client: by default only domain B's issuer).
	DescAudienceNotAvailable = "Requested audience not available: "
)

// Domain B, JWT authorization grant: every refusal is 400 invalid_grant, in
// Keycloak's order: parameter, parse, client, iss and sub, identity
// provider, times and jti presence, algorithm, typ, audience, signature,
// ID-JAG claims, replay, user.
const (
	DescMissingAssertion    = "Missing parameter:assertion"
	DescAssertionNotJWT     = "The provided assertion is not a valid JWT"
	DescPublicClient        = "Public client not allowed to use authorization grant"
	DescJWTGrantDisabled    = "JWT Authorization Grant is not supported for the requested client"
	DescMissingIssuer       = "Missing claim: iss"
	DescMissingSubject      = "Missing claim: sub"
	DescUnknownIssuer       = "No Identity Provider for provided issuer"
	DescIdPNotAllowed       = "Identity Provider is not allowed for the client"
	DescExpRequired         = "Token exp claim is required"
	DescNotActive           = "Token is not active"
	DescNoIssuedAtTooLong   = "Token expiration is too far in the future and iat claim not present in token"
	DescIssuedInFuture      = "Token was issued in the future"
	DescIssuedTooLongAgo    = "Token was issued too far in the past to be used now"
	DescJTIRequired         = "Token jti claim is required"
	DescInvalidSignatureAlg = "Invalid signature algorithm"
	DescInvalidAudience     = "Invalid token audience"
	DescMultipleAudiences   = "Multiple audiences not allowed"
	DescInvalidSignature    = "Invalid signature"
	DescTokenReuse          = "Token reuse detected"
	DescUserNotFound        = "User not found"
	DescUserDisabled        = "User is not enabled"
	DescAccountNotSetUp     = "Account is not fully set up"
	// DescMultipleIdPs prefixes the aliases of the enabled identity
	// providers sharing the assertion's issuer, e.g. "[domain-a, copy]".
	DescMultipleIdPs = "Multiple IDPs match the same issuer: "

	// DescLifetimeTooLong (sandbox): exp - iat above the maximum assertion
	// age (docs/design.md §2). Keycloak only bounds the age after iat.
	DescLifetimeTooLong = "Token lifetime exceeds the maximum allowed assertion expiration"
	// DescInvalidTokenType (sandbox): a JOSE typ other than JWT, at+jwt
	// or oauth-id-jag+jwt (docs/design.md §2). Keycloak's default validator takes
	// any typ.
	DescInvalidTokenType = "Invalid token type"
	// DescIssuedAtRequired (sandbox): an ID-JAG without iat.
	DescIssuedAtRequired = "Token iat claim is required"
	// DescClientIDMismatch (sandbox): an ID-JAG whose client_id is not the
	// authenticated client.
	DescClientIDMismatch = "Token client_id claim does not match the client"
)

// TypeAccessTokenJWT is the JOSE typ of RFC 9068 access tokens (a Keycloak
// client with "Use at+jwt"): domain B accepts grants with it.
const TypeAccessTokenJWT = "at+jwt"

// OAuth error codes (RFC 6749 §5.2, RFC 6750).
const (
	errInvalidRequest       = "invalid_request"
	errInvalidClient        = "invalid_client"
	errInvalidGrant         = "invalid_grant"
	errUnauthorizedClient   = "unauthorized_client"
	errUnsupportedGrantType = "unsupported_grant_type"
	errInvalidScope         = "invalid_scope"
	errAccessDenied         = "access_denied"
	errServerError          = "server_error"
	errTemporarilyUnavail   = "temporarily_unavailable"
)

// oauthError is one error answer.
type oauthError struct {
	status int
	code   string
	desc   string
}

func newError(status int, code, desc string) *oauthError {
	return &oauthError{status: status, code: code, desc: desc}
}

func badRequest(desc string) *oauthError {
	return newError(http.StatusBadRequest, errInvalidRequest, desc)
}
func badGrant(desc string) *oauthError { return newError(http.StatusBadRequest, errInvalidGrant, desc) }
func badClient(desc string) *oauthError {
	return newError(http.StatusUnauthorized, errInvalidClient, desc)
}

// writeError answers with a JSON OAuth error. A 401 gets a Basic challenge
// (RFC 6749 §5.2).
func (rl *Realm) writeError(w http.ResponseWriter, e *oauthError) {
	if e.status == http.StatusUnauthorized && e.code == errInvalidClient {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+rl.name+`"`)
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.oauthError = e.code
	}
	writeJSON(w, e.status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.desc})
}

// writeJSON answers with v as JSON, uncached (RFC 6749 §5.1).
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
