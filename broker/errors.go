package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
)

// Reason is a stable, machine-readable failure code. It is returned to the
// caller (gRPC ErrorInfo.reason) and recorded in the audit event.
type Reason string

// Request problems.
const (
	ReasonRequestInvalid     Reason = "REQUEST_INVALID"     // a field is missing, malformed or too large; Error.Field names it
	ReasonDomainUnknown      Reason = "DOMAIN_UNKNOWN"      // source_domain or target_domain is not configured
	ReasonSourceUndetermined Reason = "SOURCE_UNDETERMINED" // no source_domain given and the token's iss names none (or several)
	ReasonChainNotAllowed    Reason = "CHAIN_NOT_ALLOWED"   // no such chain, or the caller may not use it
	ReasonPolicyDenied       Reason = "POLICY_DENIED"       // the caller's grants of the chain have `when` conditions and none holds
	ReasonScopeNotAllowed    Reason = "SCOPE_NOT_ALLOWED"   // the caller may not request a scope in the target
	// The caller may not name that resource or audience in hop 1, or send its
	// own actor token where the broker names the caller.
	ReasonResourceNotAllowed   Reason = "RESOURCE_NOT_ALLOWED"
	ReasonAudienceNotAllowed   Reason = "AUDIENCE_NOT_ALLOWED"
	ReasonActorTokenNotAllowed Reason = "ACTOR_TOKEN_NOT_ALLOWED"

	ReasonSubjectNotAllowed    Reason = "SUBJECT_NOT_ALLOWED"            // the subject token fails the caller's conditions (azp)
	ReasonSubjectTokenInvalid  Reason = "SUBJECT_TOKEN_INVALID"          // checked before hop 1: signature, issuer, shape
	ReasonSubjectTokenExpired  Reason = "SUBJECT_TOKEN_EXPIRED"          // checked before hop 1: exp missing or past
	ReasonSubjectTokenAudience Reason = "SUBJECT_TOKEN_AUDIENCE_INVALID" // issue mode: the subject token is not meant for the broker
	ReasonSubjectUnmapped      Reason = "SUBJECT_UNMAPPED"               // issue mode: the subject maps to no user of the target

	ReasonRequestDeadlineExceeded Reason = "REQUEST_DEADLINE_EXCEEDED" // the caller's deadline ran out before the chain finished
	ReasonRequestCancelled        Reason = "REQUEST_CANCELLED"         // the caller cancelled the call (or went away)
)

// Hop 1 and hop 2 upstream failures.
const (
	ReasonTokenExchangeRejected Reason = "TOKEN_EXCHANGE_REJECTED" // domain A answered an OAuth error
	ReasonJWTBearerRejected     Reason = "JWT_BEARER_REJECTED"     // domain B answered an OAuth error
	ReasonUpstreamUnavailable   Reason = "UPSTREAM_UNAVAILABLE"    // connection failed, timed out, 5xx or 429
	ReasonUpstreamBadResponse   Reason = "UPSTREAM_BAD_RESPONSE"   // not a valid token response
	ReasonKeysUnavailable       Reason = "SOURCE_KEYS_UNAVAILABLE" // the source domain's JWKS could not be fetched
	ReasonKeysRefreshing        Reason = "SOURCE_KEYS_REFRESHING"  // the grant's kid is not in the source's cached JWKS, refetched too recently to refetch now: retry after Error.RetryAfter
	ReasonUpstreamCircuitOpen   Reason = "UPSTREAM_CIRCUIT_OPEN"   // the domain failed repeatedly: calls are suspended for a cooldown
)

// Assertion validation failures (docs/design.md §2): what the target domain would refuse.
const (
	ReasonAssertionMalformed         Reason = "ASSERTION_MALFORMED"
	ReasonAssertionAlgNotAllowed     Reason = "ASSERTION_ALG_NOT_ALLOWED"
	ReasonAssertionTypeInvalid       Reason = "ASSERTION_TYPE_INVALID"
	ReasonAssertionKeyUnknown        Reason = "ASSERTION_KEY_UNKNOWN"
	ReasonAssertionSignatureInvalid  Reason = "ASSERTION_SIGNATURE_INVALID"
	ReasonAssertionIssuerUntrusted   Reason = "ASSERTION_ISSUER_UNTRUSTED"
	ReasonAssertionAudienceMultiple  Reason = "ASSERTION_AUDIENCE_MULTIPLE"
	ReasonAssertionAudienceInvalid   Reason = "ASSERTION_AUDIENCE_INVALID"
	ReasonAssertionExpirationMissing Reason = "ASSERTION_EXPIRATION_MISSING"
	ReasonAssertionExpired           Reason = "ASSERTION_EXPIRED"
	ReasonAssertionNotYetValid       Reason = "ASSERTION_NOT_YET_VALID"
	ReasonAssertionLifetimeTooLong   Reason = "ASSERTION_LIFETIME_TOO_LONG"
	ReasonAssertionJTIMissing        Reason = "ASSERTION_JTI_MISSING"
	ReasonAssertionSubjectMissing    Reason = "ASSERTION_SUBJECT_MISSING"
	ReasonAssertionIssuedAtMissing   Reason = "ASSERTION_IAT_MISSING"
	ReasonAssertionClientIDMismatch  Reason = "ASSERTION_CLIENT_ID_MISMATCH"
	ReasonAssertionReplayed          Reason = "ASSERTION_REPLAYED"
	// ID-JAG (profile id_jag) and sender-constrained grants.
	ReasonAssertionIssuedTokenType Reason = "ASSERTION_ISSUED_TOKEN_TYPE_INVALID" // hop 1 answered another issued_token_type than id-jag
	ReasonAssertionScopeWider      Reason = "ASSERTION_SCOPE_WIDER"               // the grant's scope holds a scope not asked for
	ReasonAssertionResourceWider   Reason = "ASSERTION_RESOURCE_WIDER"            // the grant's resource names a resource not asked for
	ReasonAssertionCnfMismatch     Reason = "ASSERTION_CNF_MISMATCH"              // the grant's cnf.jkt is not the key of the caller's DPoP proof
)

// DPoP (RFC 9449): the caller's proof and the target's binding.
const (
	ReasonDPoPProofInvalid   Reason = "DPOP_PROOF_INVALID"   // dpop_proof (or source_dpop_proof) fails a check; Error.Field names it
	ReasonDPoPProofReplayed  Reason = "DPOP_PROOF_REPLAYED"  // the proof's jti was seen before
	ReasonDPoPNonceRequired  Reason = "DPOP_NONCE_REQUIRED"  // the target wants a server nonce in the proof: Error.DPoPNonce
	ReasonDPoPBindingMissing Reason = "DPOP_BINDING_MISSING" // the target answered a token not bound to the proof's key
)

// Broker-side failures.
const (
	ReasonStoreUnavailable Reason = "STORE_UNAVAILABLE" // replay guard or audit log unreachable: fail closed
	ReasonInternal         Reason = "INTERNAL"
)

// Hop names, as reported in errors and audit events.
const (
	HopTokenExchange = "token_exchange"
	HopJWTBearer     = "jwt_bearer"
)

// Error is every failure Chain returns. Message is safe to show to the
// caller; Err (the cause) may hold internal detail and is only logged.
type Error struct {
	Reason   Reason
	Message  string
	Field    string       // request field at fault (ReasonRequestInvalid, ReasonDomainUnknown)
	Hop      string       // HopTokenExchange or HopJWTBearer when an upstream call was involved
	Upstream *oauth.Error // the authorization server's OAuth error, if it answered one
	// UpstreamCause names the target's setting a known upstream refusal
	// points at (UpstreamReason), e.g. "target_user_disabled"; "" if none.
	UpstreamCause string
	// RetryAfter, when > 0, is when a retry may succeed (ReasonKeysRefreshing).
	RetryAfter time.Duration
	// DPoPNonce is the nonce the target asked for (ReasonDPoPNonceRequired):
	// the caller makes a new proof carrying it.
	DPoPNonce string
	Err       error
}

func (e *Error) Error() string {
	s := string(e.Reason) + ": " + e.Message
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns err's *Error, if it has one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

func fail(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Reason: ReasonRequestInvalid, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// Reasons lists every reason code, for documentation and exhaustive tests.
func Reasons() []Reason {
	return []Reason{
		ReasonRequestInvalid, ReasonDomainUnknown, ReasonSourceUndetermined, ReasonChainNotAllowed, ReasonPolicyDenied, ReasonScopeNotAllowed,
		ReasonResourceNotAllowed, ReasonAudienceNotAllowed, ReasonActorTokenNotAllowed,
		ReasonSubjectNotAllowed, ReasonSubjectTokenInvalid, ReasonSubjectTokenExpired, ReasonSubjectTokenAudience, ReasonSubjectUnmapped,
		ReasonTokenExchangeRejected, ReasonJWTBearerRejected, ReasonUpstreamUnavailable, ReasonUpstreamBadResponse, ReasonKeysUnavailable, ReasonKeysRefreshing, ReasonUpstreamCircuitOpen,
		ReasonAssertionMalformed, ReasonAssertionAlgNotAllowed, ReasonAssertionTypeInvalid, ReasonAssertionKeyUnknown,
		ReasonAssertionSignatureInvalid, ReasonAssertionIssuerUntrusted, ReasonAssertionAudienceMultiple, ReasonAssertionAudienceInvalid,
		ReasonAssertionExpirationMissing, ReasonAssertionExpired, ReasonAssertionNotYetValid, ReasonAssertionLifetimeTooLong,
		ReasonAssertionJTIMissing, ReasonAssertionSubjectMissing, ReasonAssertionIssuedAtMissing, ReasonAssertionClientIDMismatch,
		ReasonAssertionReplayed, ReasonAssertionIssuedTokenType, ReasonAssertionScopeWider, ReasonAssertionResourceWider, ReasonAssertionCnfMismatch,
		ReasonDPoPProofInvalid, ReasonDPoPProofReplayed, ReasonDPoPNonceRequired, ReasonDPoPBindingMissing,
		ReasonStoreUnavailable, ReasonInternal,
		ReasonRequestDeadlineExceeded, ReasonRequestCancelled,
		ReasonAWSProviderMismatch, ReasonAWSAudienceInvalid, ReasonAWSSubjectMissing, ReasonAWSRejected,
		ReasonAzureIssuerMismatch, ReasonAzureSubjectMismatch, ReasonAzureAudienceInvalid, ReasonAzureClaimTooLong, ReasonAzureRejected,
		ReasonGCPKeyIDMissing, ReasonGCPAlgNotAllowed, ReasonGCPLifetimeTooLong, ReasonGCPAudienceInvalid, ReasonGCPSubjectInvalid,
		ReasonGCPRejected, ReasonGCPImpersonationRefused,
	}
}
