package broker

import (
	"strings"

	"github.com/chainbroker/chainbroker/oauth"
)

// upstreamRule maps one known refusal of an authorization server to the
// reason the broker reports, so that the caller is told which setting is at
// fault instead of a generic *_REJECTED. Texts are Keycloak's own (26.5 to
// 26.7: services/.../JWTAuthorizationGrantType.java, AbstractBaseJWTValidator,
// StandardTokenExchangeProvider, AbstractTokenExchangeProvider), matched
// exactly (or as a prefix when the text ends with a value).
type upstreamRule struct {
	hop    string // HopTokenExchange or HopJWTBearer
	code   string // the OAuth error code; "" matches any code
	text   string // the error_description; "" matches any description
	prefix bool   // text is a prefix (Keycloak appends a value)
	reason Reason
	// cause names the misconfigured setting, for configuration refusals
	// that keep the *_REJECTED reason (ErrorInfo metadata upstream_cause).
	cause string
}

// Upstream causes: the setting of a realm that a refusal points at.
const (
	CauseSourceExchangeDisabled     = "source_client_exchange_disabled" // hop 1: Standard Token Exchange off on the broker's client
	CauseSourceAudienceNotAvailable = "source_audience_not_available"   // hop 1: the audience client's scope is not available to the broker's client
	CauseSourceAudienceMissing      = "source_audience_client_missing"  // hop 1: no client has the requested audience as its Client ID
	CauseSourceAudienceDisabled     = "source_audience_client_disabled" // hop 1: the audience client is disabled
	CauseSubjectTokenAudience       = "subject_token_audience"          // hop 1: the caller's token does not name the broker's client in aud
	CauseTargetGrantDisabled        = "target_client_grant_disabled"    // hop 2: JWT Authorization Grant off on the broker's client
	CauseTargetIdPNotAllowed        = "target_client_idp_not_allowed"   // hop 2: the provider is not among the client's allowed providers
	CauseTargetIdPIssuer            = "target_idp_issuer"               // hop 2: no enabled provider has the grant's iss as its issuer
	CauseTargetIdPAmbiguous         = "target_idp_ambiguous"            // hop 2: two providers share the issuer
	CauseTargetIdPDisabled          = "target_idp_disabled"             // hop 2: the provider is disabled
	CauseTargetUserUnlinked         = "target_user_unlinked"            // hop 2: no user is linked to the provider with the grant's sub
	CauseTargetUserDisabled         = "target_user_disabled"            // hop 2: the linked user is disabled
	CauseTargetUserRequiredAction   = "target_user_required_action"     // hop 2: the linked user has a pending required action
)

var upstreamRules = []upstreamRule{
	// Hop 1: realm A's standard token exchange.
	{HopTokenExchange, "invalid_request", "Standard token exchange is not enabled for the requested client", false, ReasonTokenExchangeRejected, CauseSourceExchangeDisabled},
	{HopTokenExchange, "invalid_request", "Requested audience not available: ", true, ReasonTokenExchangeRejected, CauseSourceAudienceNotAvailable},
	{HopTokenExchange, "invalid_client", "Audience not found", false, ReasonTokenExchangeRejected, CauseSourceAudienceMissing},
	{HopTokenExchange, "invalid_client", "Client disabled", false, ReasonTokenExchangeRejected, CauseSourceAudienceDisabled},
	{HopTokenExchange, "access_denied", "Client is not within the token audience", false, ReasonTokenExchangeRejected, CauseSubjectTokenAudience},

	// Hop 2: realm B's JWT Authorization Grant (every refusal invalid_grant).
	// Configuration of realm B:
	{HopJWTBearer, "invalid_grant", "JWT Authorization Grant is not supported for the requested client", false, ReasonJWTBearerRejected, CauseTargetGrantDisabled},
	{HopJWTBearer, "invalid_grant", "Identity Provider is not allowed for the client", false, ReasonJWTBearerRejected, CauseTargetIdPNotAllowed},
	{HopJWTBearer, "invalid_grant", "No Identity Provider for provided issuer", false, ReasonJWTBearerRejected, CauseTargetIdPIssuer},
	{HopJWTBearer, "invalid_grant", "Multiple IDPs match the same issuer", true, ReasonJWTBearerRejected, CauseTargetIdPAmbiguous},
	{HopJWTBearer, "invalid_grant", "Identity Provider is not enabled", false, ReasonJWTBearerRejected, CauseTargetIdPDisabled},
	{HopJWTBearer, "invalid_grant", "User not found", false, ReasonJWTBearerRejected, CauseTargetUserUnlinked},
	{HopJWTBearer, "invalid_grant", "User is not enabled", false, ReasonJWTBearerRejected, CauseTargetUserDisabled},
	{HopJWTBearer, "invalid_grant", "Account is not fully set up", false, ReasonJWTBearerRejected, CauseTargetUserRequiredAction},
	// The grant itself (what the broker's own check mirrors):
	{HopJWTBearer, "invalid_grant", "Token reuse detected", false, ReasonAssertionReplayed, ""},
	{HopJWTBearer, "jti_known", "", false, ReasonAssertionReplayed, ""}, // Ory Hydra
	{HopJWTBearer, "invalid_grant", "Invalid token audience", false, ReasonAssertionAudienceInvalid, ""},
	{HopJWTBearer, "invalid_grant", "Multiple audiences not allowed", false, ReasonAssertionAudienceMultiple, ""},
	{HopJWTBearer, "invalid_grant", "Token jti claim is required", false, ReasonAssertionJTIMissing, ""},
	{HopJWTBearer, "invalid_grant", "Token exp claim is required", false, ReasonAssertionExpirationMissing, ""},
	{HopJWTBearer, "invalid_grant", "Token is not active", false, ReasonAssertionExpired, ""},
	{HopJWTBearer, "invalid_grant", "Token was issued in the future", false, ReasonAssertionNotYetValid, ""},
	{HopJWTBearer, "invalid_grant", "Token was issued too far in the past to be used now", false, ReasonAssertionExpired, ""},
	{HopJWTBearer, "invalid_grant", "Token expiration is too far in the future and iat claim not present in token", false, ReasonAssertionLifetimeTooLong, ""},
	{HopJWTBearer, "invalid_grant", "Invalid signature", false, ReasonAssertionSignatureInvalid, ""},
	{HopJWTBearer, "invalid_grant", "Invalid signature algorithm", false, ReasonAssertionAlgNotAllowed, ""},
	{HopJWTBearer, "invalid_grant", "Missing claim: sub", false, ReasonAssertionSubjectMissing, ""},
}

// UpstreamReason is the reason (and, for a configuration refusal, the
// cause) the broker reports when an authorization server refuses the hop
// with oe. Unknown refusals are TOKEN_EXCHANGE_REJECTED (hop 1) or
// JWT_BEARER_REJECTED (hop 2) with no cause.
func UpstreamReason(hop string, oe *oauth.Error) (Reason, string) {
	if oe != nil {
		desc := strings.TrimSpace(oe.Description)
		for _, r := range upstreamRules {
			if r.hop != hop || (r.code != "" && r.code != oe.Code) {
				continue
			}
			if r.text == "" || desc == r.text || (r.prefix && strings.HasPrefix(desc, r.text)) {
				return r.reason, r.cause
			}
		}
	}
	if hop == HopJWTBearer {
		return ReasonJWTBearerRejected, ""
	}
	return ReasonTokenExchangeRejected, ""
}
