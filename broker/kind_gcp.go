package broker

// The gcp target kind: Google Cloud workload identity federation
// (docs/cloud-gcp.md). Google STS exchanges the grant for a federated
// access token; with a service account configured, IAM Credentials'
// generateAccessToken then impersonates it with the federated token.

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// KindGCP: Google STS token exchange, then optionally service account
// impersonation.
const KindGCP TargetKind = "gcp"

// Google's defaults and bounds.
const (
	// DefaultGCPScope is the scope of federated and service account tokens.
	DefaultGCPScope = "https://www.googleapis.com/auth/cloud-platform"
	// DefaultGCPLifetime is a service account token's lifetime.
	DefaultGCPLifetime = time.Hour
	// MaxGCPLifetime is its maximum, MaxGCPExtendedLifetime with the
	// organization policy constraint
	// iam.allowServiceAccountCredentialLifetimeExtension.
	MaxGCPLifetime         = time.Hour
	MaxGCPExtendedLifetime = 12 * time.Hour
	// MaxGCPTokenLifetime: Google refuses a token whose exp - iat is not
	// below 48 hours.
	MaxGCPTokenLifetime = 48 * time.Hour
	// maxGCPSubject: google.subject (the grant's sub) is at most 127 bytes.
	maxGCPSubject = 127
	// DefaultGCPSubjectTokenType is the subject_token_type of the STS call.
	DefaultGCPSubjectTokenType = "urn:ietf:params:oauth:token-type:jwt"
)

// Google's endpoints, the defaults of a gcp target.
const (
	DefaultGCPSTSEndpoint            = "https://sts.googleapis.com/v1/token"
	DefaultGCPIAMCredentialsEndpoint = "https://iamcredentials.googleapis.com"
)

// ValidGCPAudience reports whether aud is a workload identity pool
// provider's full resource name (//iam.googleapis.com/projects/...).
func ValidGCPAudience(aud string) bool { return gcpProviderPattern.MatchString(aud) }

var gcpProviderPattern = regexp.MustCompile(`^//iam\.googleapis\.com/projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32}$`)

// GCPTarget configures a KindGCP domain; Domain.TokenEndpoint is Google
// STS (https://sts.googleapis.com/v1/token).
type GCPTarget struct {
	// Audience is the workload identity pool provider:
	// //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X.
	Audience string
	// AllowedAudiences mirror the provider's allowed audiences; empty:
	// Google's default, the provider's resource name with or without
	// https: (Audience, and "https:" + Audience).
	AllowedAudiences []string
	// ServiceAccount, when set, is impersonated with the federated token.
	ServiceAccount string
	// IAMCredentialsEndpoint is IAM Credentials' base URL
	// (https://iamcredentials.googleapis.com); required with ServiceAccount.
	IAMCredentialsEndpoint string
	// Lifetime of the service account token: up to MaxGCPLifetime, or
	// MaxGCPExtendedLifetime with ExtendedLifetime; 0: DefaultGCPLifetime.
	Lifetime         time.Duration
	ExtendedLifetime bool
	// Scopes of the tokens; default [DefaultGCPScope].
	Scopes []string
	// Client calls Google (the caller builds it: broker/ makes no HTTP
	// calls of its own outside TokenEndpoint). Required.
	Client GCPClient
}

// GCPClient calls Google STS and IAM Credentials.
type GCPClient interface {
	// ExchangeToken is Google STS's token exchange at endpoint; it returns
	// the federated access token and its lifetime.
	ExchangeToken(ctx context.Context, endpoint string, req GCPExchange) (accessToken string, expiresIn int64, err error)
	// GenerateAccessToken impersonates serviceAccount with the federated
	// token at IAM Credentials' base URL endpoint.
	GenerateAccessToken(ctx context.Context, endpoint, serviceAccount, federatedToken string, scopes []string, lifetime time.Duration) (accessToken string, expires time.Time, err error)
}

// GCPExchange is a Google STS token exchange request. An alias of an
// unnamed struct, so that a client outside the module's broker package
// (brokertest's) implements GCPClient without importing it.
type GCPExchange = struct {
	Audience, Scope, SubjectToken, SubjectTokenType string
}

// GCPError is an error answer of Google STS (OAuth: Code is "error",
// Message "error_description") or IAM Credentials (Google API: Code is
// "status", e.g. PERMISSION_DENIED). Clients return it for every answer
// that is not a success; anything else they return is an outage.
type GCPError struct {
	StatusCode    int
	Code, Message string
	RetryAfter    time.Duration
}

func (e *GCPError) Error() string {
	return "google: HTTP " + strconv.Itoa(e.StatusCode) + " " + e.Code + ": " + e.Message
}

// Reasons of gcp targets.
const (
	ReasonGCPKeyIDMissing         Reason = "GCP_KEY_ID_MISSING"         // the grant's header has no kid
	ReasonGCPAlgNotAllowed        Reason = "GCP_ALG_NOT_ALLOWED"        // not RS256 or ES256
	ReasonGCPLifetimeTooLong      Reason = "GCP_LIFETIME_TOO_LONG"      // exp - iat is 48 h or more, or no iat
	ReasonGCPAudienceInvalid      Reason = "GCP_AUDIENCE_INVALID"       // no aud is the provider (or an allowed audience)
	ReasonGCPSubjectInvalid       Reason = "GCP_SUBJECT_INVALID"        // no sub, or above 127 bytes (google.subject)
	ReasonGCPRejected             Reason = "GCP_STS_REJECTED"           // Google STS refused the exchange
	ReasonGCPImpersonationRefused Reason = "GCP_IMPERSONATION_REJECTED" // IAM Credentials refused generateAccessToken
)

// Hop names of a gcp target.
const (
	HopGCPSTS           = "gcp_sts"
	HopGCPImpersonation = "gcp_impersonation"
	grantGCPSTS         = "gcp:token-exchange"
	grantGCPIAM         = "gcp:generateAccessToken"
)

func (g *GCPTarget) setup() []error {
	var errs []error
	if !gcpProviderPattern.MatchString(g.Audience) {
		errs = append(errs, errors.New("gcp.audience must be //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X"))
	}
	if len(g.AllowedAudiences) == 0 {
		g.AllowedAudiences = []string{g.Audience, "https:" + g.Audience}
	}
	g.AllowedAudiences = append([]string(nil), g.AllowedAudiences...)
	if len(g.Scopes) == 0 {
		g.Scopes = []string{DefaultGCPScope}
	}
	g.Scopes = append([]string(nil), g.Scopes...)
	if g.Lifetime == 0 {
		g.Lifetime = DefaultGCPLifetime
	}
	limit := MaxGCPLifetime
	if g.ExtendedLifetime {
		limit = MaxGCPExtendedLifetime
	}
	if g.Lifetime < time.Second || g.Lifetime > limit || g.Lifetime%time.Second != 0 {
		errs = append(errs, errors.New("gcp.lifetime must be whole seconds up to 1h (12h with gcp.extended_lifetime)"))
	}
	if g.ServiceAccount != "" && (!strings.HasSuffix(g.ServiceAccount, ".gserviceaccount.com") || g.IAMCredentialsEndpoint == "") {
		errs = append(errs, errors.New("gcp.service_account must be a service account email, with an IAM Credentials endpoint"))
	}
	if g.Client == nil {
		errs = append(errs, errors.New("kind gcp needs a Google client (GCPTarget.Client)"))
	}
	return errs
}

// gcpChecks are Google's checks of an OIDC token for workload identity
// federation: kid present, RS256 or ES256, exp - iat below 48 h, aud the
// provider (or an allowed audience), google.subject (sub) present and at
// most 127 bytes.
func gcpChecks(tok *token.Token, _, tgt *Domain) *Error {
	c, g := &tok.Claims, tgt.GCP
	bad := func(r Reason, msg string) *Error { return &Error{Reason: r, Hop: HopTokenExchange, Message: msg} }
	switch {
	case tok.Header.Kid == "":
		return bad(ReasonGCPKeyIDMissing, "the grant's header has no kid; Google requires one")
	case tok.Header.Alg != "RS256" && tok.Header.Alg != "ES256":
		return bad(ReasonGCPAlgNotAllowed, "alg "+truncate(tok.Header.Alg)+": Google takes RS256 and ES256 only")
	case c.IssuedAt.IsZero() || c.Expiry.IsZero() || c.Expiry.Sub(c.IssuedAt) >= MaxGCPTokenLifetime:
		return bad(ReasonGCPLifetimeTooLong, "Google needs iat and exp with exp - iat below 48h")
	}
	ok := false
	for _, a := range c.Audience {
		ok = ok || contains(g.AllowedAudiences, a)
	}
	if !ok {
		return bad(ReasonGCPAudienceInvalid, "no aud of the grant is "+tgt.Name+"'s provider or one of its allowed audiences ("+strings.Join(g.AllowedAudiences, ", ")+")")
	}
	if c.Subject == "" || len(c.Subject) > maxGCPSubject {
		return bad(ReasonGCPSubjectInvalid, "google.subject (the grant's sub) must be 1 to 127 bytes")
	}
	return nil
}

// googleToken performs hop 2 of a gcp target: the STS exchange, then the
// impersonation when a service account is configured.
func (r *chainRun) googleToken(ctx context.Context, tgt *Domain, grant string) (*Result, error) {
	g := tgt.GCP
	var federated string
	var expiresIn int64
	err := r.cloudCall(ctx, tgt, HopGCPSTS, grantGCPSTS, func(ctx context.Context) *Error {
		var err error
		federated, expiresIn, err = g.Client.ExchangeToken(ctx, tgt.TokenEndpoint, GCPExchange{
			Audience: g.Audience, Scope: strings.Join(g.Scopes, " "), SubjectToken: grant, SubjectTokenType: DefaultGCPSubjectTokenType,
		})
		return gcpError(tgt, HopGCPSTS, ReasonGCPRejected, err)
	})
	if n := len(r.ev.Hops); n > 0 && r.ev.Hops[n-1].GrantType == grantGCPSTS {
		r.ev.Hops[n-1].AssertionJTIHash = r.ev.AssertionJTIHash
	}
	if err != nil {
		return nil, err
	}
	if g.ServiceAccount == "" {
		return &Result{AccessToken: federated, IssuedTokenType: oauth.TokenTypeAccessToken, TokenType: "Bearer", ExpiresIn: expiresIn}, nil
	}
	var access string
	var expires time.Time
	err = r.cloudCall(ctx, tgt, HopGCPImpersonation, grantGCPIAM, func(ctx context.Context) *Error {
		var err error
		access, expires, err = g.Client.GenerateAccessToken(ctx, g.IAMCredentialsEndpoint, g.ServiceAccount, federated, g.Scopes, g.Lifetime)
		return gcpError(tgt, HopGCPImpersonation, ReasonGCPImpersonationRefused, err)
	})
	if err != nil {
		return nil, err
	}
	return &Result{AccessToken: access, IssuedTokenType: oauth.TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: max(int64(expires.Sub(r.b.now())/time.Second), 0)}, nil
}

// gcpError maps a Google error: 429 and 5xx answers, and failures on the
// wire, are outages; other answers are refusals (reason).
func gcpError(tgt *Domain, hop string, reason Reason, err error) *Error {
	if err == nil {
		return nil
	}
	var ge *GCPError
	if !errors.As(err, &ge) {
		return cloudUnavailable(tgt, hop, nil, err)
	}
	up := &oauth.Error{StatusCode: ge.StatusCode, Code: truncate(ge.Code), Description: BoundText(ge.Message, MaxUpstreamDescriptionBytes)}
	if ge.StatusCode == 429 || ge.StatusCode >= 500 {
		cause := error(&oauth.UnavailableError{StatusCode: ge.StatusCode, RetryAfter: ge.RetryAfter})
		return cloudUnavailable(tgt, hop, up, errors.Join(cause, err))
	}
	if ge.StatusCode == 0 || ge.Code == "" {
		return &Error{Reason: ReasonUpstreamBadResponse, Message: tgt.Name + " answered the " + hop + " with an invalid response", Err: err}
	}
	return &Error{Reason: reason, Upstream: up, Err: err, Message: tgt.Name + " refused the " + hop + ": " + upstreamText(up)}
}
