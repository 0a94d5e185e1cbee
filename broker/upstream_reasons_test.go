package broker

import (
	"slices"
	"testing"

	"github.com/chainbroker/chainbroker/oauth"
)

func TestUpstreamReason(t *testing.T) {
	tests := []struct {
		hop, code, desc string
		want            Reason
		cause           string
	}{
		{HopTokenExchange, "invalid_request", "Standard token exchange is not enabled for the requested client", ReasonTokenExchangeRejected, CauseSourceExchangeDisabled},
		{HopTokenExchange, "invalid_request", "Requested audience not available: https://b.example/realms/b", ReasonTokenExchangeRejected, CauseSourceAudienceNotAvailable},
		{HopTokenExchange, "invalid_client", "Audience not found", ReasonTokenExchangeRejected, CauseSourceAudienceMissing},
		{HopTokenExchange, "invalid_client", "Client disabled", ReasonTokenExchangeRejected, CauseSourceAudienceDisabled},
		{HopTokenExchange, "access_denied", "Client is not within the token audience", ReasonTokenExchangeRejected, CauseSubjectTokenAudience},
		{HopJWTBearer, "invalid_grant", "JWT Authorization Grant is not supported for the requested client", ReasonJWTBearerRejected, CauseTargetGrantDisabled},
		{HopJWTBearer, "invalid_grant", "Identity Provider is not allowed for the client", ReasonJWTBearerRejected, CauseTargetIdPNotAllowed},
		{HopJWTBearer, "invalid_grant", "No Identity Provider for provided issuer", ReasonJWTBearerRejected, CauseTargetIdPIssuer},
		{HopJWTBearer, "invalid_grant", "Multiple IDPs match the same issuer: [domain-a, domain-a-copy]", ReasonJWTBearerRejected, CauseTargetIdPAmbiguous},
		{HopJWTBearer, "invalid_grant", "User not found", ReasonJWTBearerRejected, CauseTargetUserUnlinked},
		{HopJWTBearer, "invalid_grant", "User is not enabled", ReasonJWTBearerRejected, CauseTargetUserDisabled},
		{HopJWTBearer, "invalid_grant", "Account is not fully set up", ReasonJWTBearerRejected, CauseTargetUserRequiredAction},
		{HopJWTBearer, "invalid_grant", "Token reuse detected", ReasonAssertionReplayed, ""},
		{HopJWTBearer, "jti_known", "The jti was already used.", ReasonAssertionReplayed, ""},
		{HopJWTBearer, "invalid_grant", "Invalid token audience", ReasonAssertionAudienceInvalid, ""},
		{HopJWTBearer, "invalid_grant", "Multiple audiences not allowed", ReasonAssertionAudienceMultiple, ""},
		{HopJWTBearer, "invalid_grant", "Token jti claim is required", ReasonAssertionJTIMissing, ""},
		{HopJWTBearer, "invalid_grant", "Token is not active", ReasonAssertionExpired, ""},
		{HopJWTBearer, "invalid_grant", "Token was issued in the future", ReasonAssertionNotYetValid, ""},
		{HopJWTBearer, "invalid_grant", "Token was issued too far in the past to be used now", ReasonAssertionExpired, ""},
		{HopJWTBearer, "invalid_grant", "Token expiration is too far in the future and iat claim not present in token", ReasonAssertionLifetimeTooLong, ""},
		{HopJWTBearer, "invalid_grant", "Invalid signature", ReasonAssertionSignatureInvalid, ""},
		{HopJWTBearer, "invalid_grant", "Invalid signature algorithm", ReasonAssertionAlgNotAllowed, ""},
		// Negative: unknown texts, another hop or another code keep the
		// generic reason and blame no setting.
		{HopTokenExchange, "invalid_client", "Invalid client or Invalid client credentials", ReasonTokenExchangeRejected, ""},
		{HopJWTBearer, "invalid_grant", "Token reuse detected!", ReasonJWTBearerRejected, ""},
		{HopJWTBearer, "invalid_grant", "Invalid signatures", ReasonJWTBearerRejected, ""},
		{HopTokenExchange, "invalid_grant", "Token reuse detected", ReasonTokenExchangeRejected, ""},
		{HopTokenExchange, "jti_known", "", ReasonTokenExchangeRejected, ""},
		{HopJWTBearer, "invalid_client", "Audience not found", ReasonJWTBearerRejected, ""},
		{HopJWTBearer, "invalid_request", "User not found", ReasonJWTBearerRejected, ""},
		{HopJWTBearer, "invalid_grant", "", ReasonJWTBearerRejected, ""},
	}
	for _, tt := range tests {
		t.Run(tt.hop+"/"+tt.code+"/"+tt.desc, func(t *testing.T) {
			got, cause := UpstreamReason(tt.hop, &oauth.Error{Code: tt.code, Description: tt.desc})
			if got != tt.want || cause != tt.cause {
				t.Fatalf("UpstreamReason = %s, %q; want %s, %q", got, cause, tt.want, tt.cause)
			}
		})
	}
	if r, c := UpstreamReason(HopJWTBearer, nil); r != ReasonJWTBearerRejected || c != "" {
		t.Fatalf("nil error: %s %q", r, c)
	}
}

// Every rule names a real reason, and a configuration refusal (a *_REJECTED
// reason) always names its cause.
func TestUpstreamRulesWellFormed(t *testing.T) {
	seen := map[[3]string]bool{}
	for _, r := range upstreamRules {
		if !slices.Contains(Reasons(), r.reason) {
			t.Errorf("rule %q: unknown reason %s", r.text, r.reason)
		}
		generic := r.reason == ReasonTokenExchangeRejected || r.reason == ReasonJWTBearerRejected
		if generic != (r.cause != "") {
			t.Errorf("rule %q: reason %s with cause %q", r.text, r.reason, r.cause)
		}
		k := [3]string{r.hop, r.code, r.text}
		if seen[k] {
			t.Errorf("rule %q listed twice", r.text)
		}
		seen[k] = true
	}
}
