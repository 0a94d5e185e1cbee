package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// The sandbox's Google Cloud project, workload identity pool, provider and
// service account.
const (
	GCPProjectNumber = "123456789012"
	GCPProjectID     = "chainbroker-sandbox"
	GCPPool          = "chainbroker-pool"
	// GCPProviderID is the pool's OIDC provider for domain A.
	GCPProviderID = "domain-a"
	// GCPServiceAccount is the service account the demo impersonates.
	GCPServiceAccount = "chainbroker@" + GCPProjectID + ".iam.gserviceaccount.com"
	// GCPScope is the scope of federated and service account tokens.
	GCPScope = "https://www.googleapis.com/auth/cloud-platform"
)

// Token exchange values of Google STS.
const (
	gcpGrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	gcpTokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	gcpTokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	gcpTokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	// gcpMaxLifetime: Google refuses tokens whose exp - iat is not below
	// 48 hours.
	gcpMaxLifetime = 48 * time.Hour
	// gcpMaxSubject: google.subject is at most 127 bytes.
	gcpMaxSubject = 127
	// gcpFederatedLifetime is the lifetime of a federated access token.
	gcpFederatedLifetime = time.Hour
)

// Google STS errors (OAuth 2.0 JSON, "error" and "error_description"; HTTP
// 400 unless noted). Google's wording where known; "sandbox" marks the
// imitation's own.
const (
	GCPErrInvalidRequest       = "invalid_request"
	GCPErrInvalidGrant         = "invalid_grant"
	GCPErrInvalidTarget        = "invalid_target"
	GCPErrUnauthorizedClient   = "unauthorized_client"
	GCPErrUnsupportedGrantType = "unsupported_grant_type"
	// GCPErrRateLimited (sandbox): HTTP 429.
	GCPErrRateLimited = "rate_limit_exceeded"

	// GCPMsgAudienceFormat: invalid_request, audience is not a provider's
	// full resource name.
	GCPMsgAudienceFormat = `Invalid value for "audience". This value should be the full resource name of the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of possible formats.`
	// GCPMsgTargetInvalid: invalid_target, no such pool or provider.
	GCPMsgTargetInvalid = `The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.`
	// GCPMsgConditionRejected: unauthorized_client, the attribute
	// condition refused the credential.
	GCPMsgConditionRejected = "The given credential is rejected by the attribute condition."
	// GCPMsgSubjectTooLong: invalid_grant.
	GCPMsgSubjectTooLong = "The size of mapped attribute google.subject exceeds the 127 bytes limit. Either modify your attribute mapping or the incoming assertion to produce a mapped attribute that is less than 127 bytes."
	// GCPMsgSubjectEmpty (sandbox): invalid_grant, no sub to map.
	GCPMsgSubjectEmpty = "The mapped attribute google.subject must not be empty."
	// GCPMsgNotJWT (sandbox): invalid_grant.
	GCPMsgNotJWT = "Unable to parse the ID Token."
	// GCPMsgNoKid (sandbox): invalid_grant, no kid in the header.
	GCPMsgNoKid = `The ID Token's header must have a "kid" (key ID).`
	// GCPMsgAlg (sandbox) prefixes the token's alg: invalid_grant.
	GCPMsgAlg = "Unsupported ID Token signing algorithm (RS256 and ES256 are supported): "
	// GCPMsgIssuer (sandbox): invalid_grant, iss is not the provider's
	// issuer.
	GCPMsgIssuer = "The issuer in ID Token %s does not match the expected ones: %s."
	// GCPMsgAudience: invalid_grant.
	GCPMsgAudience = "The audience in ID Token [%s] does not match the expected audience."
	// GCPMsgExpired (sandbox): invalid_grant, exp missing or past.
	GCPMsgExpired = "The ID Token has expired."
	// GCPMsgIssuedAt (sandbox): invalid_grant, iat missing or in the future.
	GCPMsgIssuedAt = "The ID Token's iat is missing or in the future."
	// GCPMsgLifetime (sandbox): invalid_grant, exp - iat is 48 h or more.
	GCPMsgLifetime = "The lifetime of the ID Token (exp - iat) must be less than 48 hours."
	// GCPMsgKeys (sandbox): invalid_grant, keys unreachable, unknown or
	// the signature does not verify.
	GCPMsgKeys = "Invalid ID Token signature, or the issuer's keys could not be retrieved."
)

// IAM Credentials errors (Google API JSON: {"error": {"code", "message",
// "status"}}).
const (
	// GCPMsgUnauthenticated: 401 UNAUTHENTICATED, no valid bearer token.
	GCPMsgUnauthenticated = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	// GCPMsgPermissionDenied: 403 PERMISSION_DENIED, no such account or
	// the principal lacks roles/iam.workloadIdentityUser on it.
	GCPMsgPermissionDenied = "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
	// GCPMsgLifetimeTooLong (sandbox) is formatted with the requested and
	// the allowed seconds: 400 INVALID_ARGUMENT.
	GCPMsgLifetimeTooLong = "Lifetime requested (%ds) is greater than the maximum allowed (%ds)."
)

var (
	gcpAudiencePattern = regexp.MustCompile(`^(?:https:)?//iam\.googleapis\.com/(projects/[0-9]+/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32})$`)
	gcpLifetimePattern = regexp.MustCompile(`^([0-9]{1,6})(?:\.[0-9]{1,9})?s$`)
)

// gcpAlgs: Google accepts RS256 and ES256 for OIDC providers.
var gcpAlgs = []string{"RS256", "ES256"}

// GCPProviderResource returns a workload identity pool provider's full
// resource name (without the //iam.googleapis.com/ prefix).
func GCPProviderResource(projectNumber, pool, provider string) string {
	return "projects/" + projectNumber + "/locations/global/workloadIdentityPools/" + pool + "/providers/" + provider
}

// GCPAudience returns the STS audience of a provider:
// //iam.googleapis.com/ + its resource name.
func GCPAudience(projectNumber, pool, provider string) string {
	return "//iam.googleapis.com/" + GCPProviderResource(projectNumber, pool, provider)
}

// GCPProvider is an OIDC provider of a workload identity pool. Its
// attribute mapping is google.subject = assertion.sub.
type GCPProvider struct {
	ProjectNumber, Pool, Provider string
	// Issuer is the issuer URI; a token's iss must equal it.
	Issuer string
	// JWKSURI, when set, holds the keys (Google's uploaded JWKS); ""
	// means the jwks_uri of Issuer's discovery document.
	JWKSURI string
	// AllowedAudiences, when set, replaces the default audience (the
	// provider's resource name, with or without https:).
	AllowedAudiences []string
	// AllowedSubjects, when set, is the attribute condition (the sandbox
	// lists google.subject values instead of a CEL expression).
	AllowedSubjects []string
}

// GCPServiceAccount is a service account that principals of a pool may
// impersonate (roles/iam.workloadIdentityUser).
type GCPServiceAccountConfig struct {
	Email string
	// Pool is the pool's resource name,
	// projects/N/locations/global/workloadIdentityPools/P.
	Pool string
	// Subjects are the google.subject values granted the role
	// (principal://...); "*" grants the whole pool (principalSet://...).
	Subjects []string
	// ExtendedLifetime: the organization policy
	// constraints/iam.allowServiceAccountCredentialLifetimeExtension lists
	// the account, so its tokens may last up to 12 h instead of 1 h.
	ExtendedLifetime bool
}

// CloudGCP imitates Google STS (POST /gcp/v1/token, token exchange of an
// OIDC token for a federated access token) and IAM Credentials'
// generateAccessToken (service account impersonation with the federated
// token as bearer).
type CloudGCP struct {
	cloud *Cloud

	throttle    throttle
	stsRequests atomic.Int64
	iamRequests atomic.Int64

	mu        sync.Mutex
	providers map[string]*gcpProvider // by resource name
	accounts  map[string]*GCPServiceAccountConfig
	federated map[string]gcpPrincipal // federated tokens
	issued    map[string]GCPAccessToken
}

type gcpProvider struct {
	GCPProvider
	keys *oidcKeys
}

// gcpPrincipal is what a federated token stands for.
type gcpPrincipal struct {
	pool, subject string
	expires       time.Time
}

// GCPAccessToken is a service account access token the imitation issued.
type GCPAccessToken struct {
	ServiceAccount, Subject string
	Scopes                  []string
	Expires                 time.Time
}

func newCloudGCP(c *Cloud) (*CloudGCP, error) {
	return &CloudGCP{
		cloud:     c,
		providers: map[string]*gcpProvider{},
		accounts:  map[string]*GCPServiceAccountConfig{},
		federated: map[string]gcpPrincipal{},
		issued:    map[string]GCPAccessToken{},
	}, nil
}

// STSEndpoint returns the token exchange URL (…/gcp/v1/token).
func (g *CloudGCP) STSEndpoint() string { return g.cloud.base + "/gcp/v1/token" }

// IAMCredentialsEndpoint returns the IAM Credentials base URL
// (…/gcp/iamcredentials); the API's paths (/v1/projects/-/...) follow it.
func (g *CloudGCP) IAMCredentialsEndpoint() string { return g.cloud.base + "/gcp/iamcredentials" }

// GenerateAccessTokenURL returns the generateAccessToken URL of email.
func (g *CloudGCP) GenerateAccessTokenURL(email string) string {
	return g.IAMCredentialsEndpoint() + "/v1/projects/-/serviceAccounts/" + url.PathEscape(email) + ":generateAccessToken"
}

// AddProvider registers (or replaces) a workload identity pool provider.
func (g *CloudGCP) AddProvider(p GCPProvider) error {
	res := GCPProviderResource(p.ProjectNumber, p.Pool, p.Provider)
	if !gcpAudiencePattern.MatchString("//iam.googleapis.com/"+res) || p.Issuer == "" {
		return fmt.Errorf("sandbox: gcp: provider %q is not a valid resource or has no issuer", res)
	}
	p.AllowedAudiences = append([]string(nil), p.AllowedAudiences...)
	p.AllowedSubjects = append([]string(nil), p.AllowedSubjects...)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.providers[res] = &gcpProvider{GCPProvider: p, keys: g.cloud.newOIDCKeys(p.Issuer, p.JWKSURI, gcpAlgs)}
	return nil
}

// AddServiceAccount registers (or replaces) a service account.
func (g *CloudGCP) AddServiceAccount(sa GCPServiceAccountConfig) error {
	if !strings.HasSuffix(sa.Email, ".iam.gserviceaccount.com") || sa.Pool == "" {
		return fmt.Errorf("sandbox: gcp: service account %q needs an …iam.gserviceaccount.com email and a pool", sa.Email)
	}
	sa.Subjects = append([]string(nil), sa.Subjects...)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.accounts[sa.Email] = &sa
	return nil
}

// SetThrottle answers the next n requests (to either API) with HTTP 429.
func (g *CloudGCP) SetThrottle(n int) { g.throttle.set(n) }

// STSRequests and IAMRequests return the number of requests received.
func (g *CloudGCP) STSRequests() int64 { return g.stsRequests.Load() }

// IAMRequests returns the number of generateAccessToken requests received.
func (g *CloudGCP) IAMRequests() int64 { return g.iamRequests.Load() }

// AccessToken returns what a service account access token issued by
// generateAccessToken stands for.
func (g *CloudGCP) AccessToken(tok string) (GCPAccessToken, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.issued[tok]
	return t, ok
}

// FederatedSubject returns the google.subject of a federated token the
// STS issued, if it is known and unexpired.
func (g *CloudGCP) FederatedSubject(tok string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, ok := g.federated[tok]
	if !ok || !time.Now().Before(p.expires) {
		return "", false
	}
	return p.subject, true
}

// stsError is an OAuth error of Google STS.
type stsError struct {
	status            int
	code, description string
}

func gcpGrantErr(msg string) *stsError {
	return &stsError{status: http.StatusBadRequest, code: GCPErrInvalidGrant, description: msg}
}

func (g *CloudGCP) handleToken(w http.ResponseWriter, r *http.Request) {
	g.stsRequests.Add(1)
	params, msg := readGCPParams(w, r)
	if msg != "" {
		g.writeSTSError(w, &stsError{status: http.StatusBadRequest, code: GCPErrInvalidRequest, description: msg})
		return
	}
	if g.throttle.take() {
		g.writeSTSError(w, &stsError{status: http.StatusTooManyRequests, code: GCPErrRateLimited, description: "Quota exceeded for quota metric 'Token exchange requests'."})
		return
	}
	tok, expiresIn, serr := g.exchange(r.Context(), params)
	if serr != nil {
		g.writeSTSError(w, serr)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":      tok,
		"issued_token_type": gcpTokenTypeAccessToken,
		"token_type":        "Bearer",
		"expires_in":        expiresIn,
	})
}

// readGCPParams reads the request's parameters: a JSON object (the REST
// API's camelCase names) or a form (snake_case, as Google's client
// libraries send it); both spellings are accepted either way.
func readGCPParams(w http.ResponseWriter, r *http.Request) (map[string]string, string) {
	r.Body = http.MaxBytesReader(w, r.Body, cloudMaxBody)
	out := map[string]string{}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, "Invalid JSON payload received."
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, "Invalid JSON payload received."
		}
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				return nil, fmt.Sprintf("Invalid value at '%s' (TYPE_STRING)", truncate(k))
			}
			out[snakeCase(k)] = s
		}
		return out, ""
	}
	if err := r.ParseForm(); err != nil {
		return nil, "Invalid form payload received."
	}
	for k, v := range r.PostForm {
		if len(v) > 0 {
			out[snakeCase(k)] = v[0]
		}
	}
	return out, ""
}

// snakeCase turns grantType into grant_type (snake_case stays as it is).
func snakeCase(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			b.WriteByte('_')
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// exchange checks a token exchange request in Google's order: the
// request's parameters, the provider, the token (shape, kid, alg, iss,
// aud, times, signature), the attribute mapping and condition.
func (g *CloudGCP) exchange(ctx context.Context, p map[string]string) (string, int64, *stsError) {
	invalid := func(msg string) *stsError {
		return &stsError{status: http.StatusBadRequest, code: GCPErrInvalidRequest, description: msg}
	}
	switch {
	case p["grant_type"] != gcpGrantTokenExchange:
		return "", 0, &stsError{status: http.StatusBadRequest, code: GCPErrUnsupportedGrantType, description: `Invalid value for "grant_type".`}
	case p["requested_token_type"] != gcpTokenTypeAccessToken:
		return "", 0, invalid(`Invalid value for "requested_token_type".`)
	case p["subject_token_type"] != gcpTokenTypeJWT && p["subject_token_type"] != gcpTokenTypeIDToken:
		return "", 0, invalid(`Invalid value for "subject_token_type".`)
	case p["subject_token"] == "":
		return "", 0, invalid(`Missing required parameter "subject_token".`)
	}
	m := gcpAudiencePattern.FindStringSubmatch(p["audience"])
	if m == nil {
		return "", 0, invalid(GCPMsgAudienceFormat)
	}
	g.mu.Lock()
	prov := g.providers[m[1]]
	g.mu.Unlock()
	if prov == nil {
		return "", 0, &stsError{status: http.StatusBadRequest, code: GCPErrInvalidTarget, description: GCPMsgTargetInvalid}
	}
	if s := p["scope"]; s != "" && s != GCPScope {
		return "", 0, &stsError{status: http.StatusBadRequest, code: "invalid_scope", description: "Only the cloud-platform scope is supported."}
	}

	raw := p["subject_token"]
	parsed, err := token.ParseUnverified(raw)
	if err != nil {
		return "", 0, gcpGrantErr(GCPMsgNotJWT)
	}
	if parsed.Header.Kid == "" {
		return "", 0, gcpGrantErr(GCPMsgNoKid)
	}
	if !hasString(gcpAlgs, parsed.Header.Alg) {
		return "", 0, gcpGrantErr(GCPMsgAlg + truncate(parsed.Header.Alg))
	}
	cl := parsed.Claims
	if cl.Issuer != prov.Issuer {
		return "", 0, gcpGrantErr(fmt.Sprintf(GCPMsgIssuer, clip(cl.Issuer, 512), prov.Issuer))
	}
	allowed := prov.AllowedAudiences
	if len(allowed) == 0 {
		res := GCPProviderResource(prov.ProjectNumber, prov.Pool, prov.Provider)
		allowed = []string{"//iam.googleapis.com/" + res, "https://iam.googleapis.com/" + res}
	}
	audOK := false
	for _, a := range cl.Audience {
		if hasString(allowed, a) {
			audOK = true
			break
		}
	}
	if !audOK {
		return "", 0, gcpGrantErr(fmt.Sprintf(GCPMsgAudience, clip(strings.Join(cl.Audience, ","), 512)))
	}
	now := time.Now()
	switch {
	case cl.Expiry.IsZero() || !now.Before(cl.Expiry):
		return "", 0, gcpGrantErr(GCPMsgExpired)
	case cl.IssuedAt.IsZero() || cl.IssuedAt.After(now.Add(time.Minute)):
		return "", 0, gcpGrantErr(GCPMsgIssuedAt)
	case cl.Expiry.Sub(cl.IssuedAt) >= gcpMaxLifetime:
		return "", 0, gcpGrantErr(GCPMsgLifetime)
	}
	if problem, _ := prov.keys.verify(ctx, raw); problem != keyOK {
		return "", 0, gcpGrantErr(GCPMsgKeys)
	}
	switch {
	case cl.Subject == "":
		return "", 0, gcpGrantErr(GCPMsgSubjectEmpty)
	case len(cl.Subject) > gcpMaxSubject:
		return "", 0, gcpGrantErr(GCPMsgSubjectTooLong)
	case len(prov.AllowedSubjects) > 0 && !hasString(prov.AllowedSubjects, cl.Subject):
		return "", 0, &stsError{status: http.StatusBadRequest, code: GCPErrUnauthorizedClient, description: GCPMsgConditionRejected}
	}
	tok := "ya29.d.sandbox-" + randomString(urlSafe, 120)
	g.mu.Lock()
	g.federated[tok] = gcpPrincipal{
		pool:    "projects/" + prov.ProjectNumber + "/locations/global/workloadIdentityPools/" + prov.Pool,
		subject: cl.Subject,
		expires: now.Add(gcpFederatedLifetime),
	}
	g.mu.Unlock()
	return tok, int64(gcpFederatedLifetime / time.Second), nil
}

func (g *CloudGCP) writeSTSError(w http.ResponseWriter, e *stsError) {
	noteError(w, e.code)
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.description})
}

// gcpAPIError is a Google API error: {"error": {"code", "message", "status"}}.
type gcpAPIError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

func (g *CloudGCP) writeAPIError(w http.ResponseWriter, code int, status, msg string) {
	noteError(w, status)
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
	}
	writeJSON(w, code, map[string]gcpAPIError{"error": {Code: code, Message: msg, Status: status}})
}

func (g *CloudGCP) handleGenerateAccessToken(w http.ResponseWriter, r *http.Request) {
	g.iamRequests.Add(1)
	email, ok := strings.CutSuffix(r.PathValue("sa"), ":generateAccessToken")
	if !ok || r.PathValue("project") != "-" {
		g.writeAPIError(w, http.StatusNotFound, "NOT_FOUND", "The requested URL was not found on this server.")
		return
	}
	if g.throttle.take() {
		g.writeAPIError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Generate credentials requests'.")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.mu.Lock()
	principal, known := g.federated[bearer]
	g.mu.Unlock()
	if !ok || !known || !time.Now().Before(principal.expires) {
		g.writeAPIError(w, http.StatusUnauthorized, "UNAUTHENTICATED", GCPMsgUnauthenticated)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, cloudMaxBody)
	var req struct {
		Scope     []string `json:"scope"`
		Lifetime  string   `json:"lifetime"`
		Delegates []string `json:"delegates"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		g.writeAPIError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid JSON payload received.")
		return
	}
	if len(req.Scope) == 0 {
		g.writeAPIError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Scope required.")
		return
	}
	lifetime := int64(3600)
	if req.Lifetime != "" {
		m := gcpLifetimePattern.FindStringSubmatch(req.Lifetime)
		if m == nil {
			g.writeAPIError(w, http.StatusBadRequest, "INVALID_ARGUMENT", `Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), Field 'lifetime', Illegal duration format; duration must end with 's'`)
			return
		}
		lifetime, _ = strconv.ParseInt(m[1], 10, 64)
	}
	g.mu.Lock()
	sa := g.accounts[email]
	g.mu.Unlock()
	if sa == nil || sa.Pool != principal.pool || len(req.Delegates) > 0 ||
		(!hasString(sa.Subjects, "*") && !hasString(sa.Subjects, principal.subject)) {
		g.writeAPIError(w, http.StatusForbidden, "PERMISSION_DENIED", GCPMsgPermissionDenied)
		return
	}
	maxLifetime := int64(3600)
	if sa.ExtendedLifetime {
		maxLifetime = 43200
	}
	if lifetime < 1 || lifetime > maxLifetime {
		g.writeAPIError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf(GCPMsgLifetimeTooLong, lifetime, maxLifetime))
		return
	}
	expires := time.Now().Add(time.Duration(lifetime) * time.Second).UTC().Truncate(time.Second)
	tok := "ya29.c.sandbox-" + randomString(urlSafe, 160)
	g.mu.Lock()
	g.issued[tok] = GCPAccessToken{ServiceAccount: sa.Email, Subject: principal.subject, Scopes: req.Scope, Expires: expires}
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"accessToken": tok, "expireTime": expires.Format(time.RFC3339)})
}
