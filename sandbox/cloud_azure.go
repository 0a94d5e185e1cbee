package sandbox

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// The sandbox's Entra tenant, application and resource.
const (
	// AzureTenantID is the sandbox's directory (tenant) ID.
	AzureTenantID = "5f1c3b0e-7d2a-4e8b-9c41-0a6d2e8f1b37"
	// AzureClientID is the application (client) ID of the app whose
	// federated credentials trust domain A.
	AzureClientID = "0e9d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
	// AzureAudience is the audience Entra expects in a federated
	// assertion by default.
	AzureAudience = "api://AzureADTokenExchange"
	// AzureResource is the demo's resource: scope AzureResource+"/.default".
	AzureResource = "https://management.azure.com"
	// azureMaxField: a federated credential's issuer, subject and audience
	// are at most 600 characters.
	azureMaxField = 600
	// azureTokenLifetime is the lifetime of the access tokens issued.
	azureTokenLifetime       = 3599 * time.Second
	azureClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Entra error codes (AADSTS numbers) and OAuth errors the imitation answers
// with; the messages follow Entra's "AADSTSn: text" wording.
const (
	AzureCodeMissingParameter   = 900144  // invalid_request: a required parameter is missing
	AzureCodeTenantNotFound     = 90002   // invalid_request
	AzureCodeUnsupportedGrant   = 70003   // unsupported_grant_type
	AzureCodeAppNotFound        = 700016  // unauthorized_client
	AzureCodeScopeNotDefault    = 1002012 // invalid_scope: client credentials need <resource>/.default
	AzureCodeResourceNotFound   = 500011  // invalid_resource
	AzureCodeCredentialRequired = 7000216 // invalid_client: no client_assertion
	AzureCodeMalformed          = 50027   // invalid_request: not a JWT
	AzureCodeIssuerNoMatch      = 700211  // invalid_request: no federated credential for the issuer
	AzureCodeAudienceNoMatch    = 700212  // invalid_request: none for the audience
	AzureCodeSubjectNoMatch     = 70021   // invalid_request: none for issuer + subject + audience
	AzureCodeTimeRange          = 700024  // invalid_client: assertion expired or not yet valid
	AzureCodeSignature          = 700027  // invalid_client: signature does not verify
	AzureCodeOIDCUnreachable    = 50166   // invalid_request: the issuer's metadata or keys unreachable
)

// AzureFederatedCredential is a federated identity credential of an
// application: the assertion's iss, sub and aud must equal these exactly.
type AzureFederatedCredential struct {
	Name    string
	Issuer  string
	Subject string
	// Audience is "" for AzureAudience.
	Audience string
	// JWKSURI, when set, holds the issuer's keys; "" means the jwks_uri
	// of the issuer's discovery document, as Entra does.
	JWKSURI string
}

// CloudAzure imitates the Microsoft Entra token endpoint
// (/azure/{tenant}/oauth2/v2.0/token) for the client credentials grant
// with a federated client assertion, with Entra's error JSON (error,
// error_description "AADSTSn: …", error_codes, timestamp, trace_id,
// correlation_id, error_uri).
type CloudAzure struct {
	cloud  *Cloud
	signer *token.Signer
	jwks   []byte

	throttle throttle
	requests atomic.Int64

	mu        sync.Mutex
	tenants   map[string]*azureTenant
	resources map[string]bool
	keys      map[string]*oidcKeys // by issuer + "\x00" + JWKS URL
}

type azureTenant struct {
	apps map[string][]AzureFederatedCredential // by client ID
}

// azureAlgs are the algorithms accepted for federated assertions.
var azureAlgs = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}

func newCloudAzure(c *Cloud) (*CloudAzure, error) {
	signer, err := token.GenerateSigner("RS256")
	if err != nil {
		return nil, fmt.Errorf("sandbox: azure: signing key: %w", err)
	}
	jwks, err := token.PublicJWKS(signer)
	if err != nil {
		return nil, fmt.Errorf("sandbox: azure: JWKS: %w", err)
	}
	return &CloudAzure{
		cloud:   c,
		signer:  signer,
		jwks:    jwks,
		tenants: map[string]*azureTenant{},
		resources: map[string]bool{
			"https://management.azure.com": true, "https://graph.microsoft.com": true,
			"https://storage.azure.com": true, "https://vault.azure.net": true,
		},
		keys: map[string]*oidcKeys{},
	}, nil
}

// TokenEndpoint returns the token endpoint of tenant.
func (z *CloudAzure) TokenEndpoint(tenant string) string {
	return z.cloud.base + "/azure/" + tenant + "/oauth2/v2.0/token"
}

// Issuer returns the iss of the access tokens issued in tenant.
func (z *CloudAzure) Issuer(tenant string) string {
	return z.cloud.base + "/azure/" + tenant + "/v2.0"
}

// JWKSURI returns where the access tokens' keys are.
func (z *CloudAzure) JWKSURI(tenant string) string {
	return z.cloud.base + "/azure/" + tenant + "/discovery/v2.0/keys"
}

// AddApp registers an application (client ID) in tenant (created when
// new) with its federated credentials, replacing any earlier ones. Its
// application ID URI, api://<clientID>, becomes a resource.
func (z *CloudAzure) AddApp(tenant, clientID string, creds ...AzureFederatedCredential) error {
	if tenant == "" || clientID == "" || len(creds) > 20 {
		return fmt.Errorf("sandbox: azure: an app needs a tenant, a client ID and at most 20 federated credentials")
	}
	for i, c := range creds {
		if c.Audience == "" {
			creds[i].Audience = AzureAudience
		}
		if c.Issuer == "" || c.Subject == "" || len(c.Issuer) > azureMaxField || len(c.Subject) > azureMaxField || len(creds[i].Audience) > azureMaxField {
			return fmt.Errorf("sandbox: azure: federated credential %q: issuer, subject and audience are required, each at most %d characters", c.Name, azureMaxField)
		}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	t := z.tenants[tenant]
	if t == nil {
		t = &azureTenant{apps: map[string][]AzureFederatedCredential{}}
		z.tenants[tenant] = t
	}
	t.apps[clientID] = append([]AzureFederatedCredential(nil), creds...)
	z.resources["api://"+clientID] = true
	return nil
}

// RemoveApp deletes an application from tenant: its requests are then
// answered AADSTS700016.
func (z *CloudAzure) RemoveApp(tenant, clientID string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if t := z.tenants[tenant]; t != nil {
		delete(t.apps, clientID)
	}
}

// SetThrottle answers the next n requests with HTTP 429 and Retry-After.
func (z *CloudAzure) SetThrottle(n int) { z.throttle.set(n) }

// Requests returns the number of token requests received.
func (z *CloudAzure) Requests() int64 { return z.requests.Load() }

// Verifier returns a verifier of the access tokens the imitation issues.
func (z *CloudAzure) Verifier() (*token.Verifier, error) {
	return token.NewStaticVerifier(z.jwks, []string{"RS256"})
}

// azureError is an Entra error answer.
type azureError struct {
	status int
	err    string
	code   int
	text   string
}

func azErr(status int, err string, code int, text string) *azureError {
	return &azureError{status: status, err: err, code: code, text: text}
}

func azMissing(param string) *azureError {
	return azErr(http.StatusBadRequest, "invalid_request", AzureCodeMissingParameter,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", param))
}

func (z *CloudAzure) handleKeys(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(z.jwks)
}

func (z *CloudAzure) handleToken(w http.ResponseWriter, r *http.Request) {
	z.requests.Add(1)
	r.Body = http.MaxBytesReader(w, r.Body, cloudMaxBody)
	if err := r.ParseForm(); err != nil {
		z.writeError(w, azErr(http.StatusBadRequest, "invalid_request", AzureCodeMissingParameter, "The request body must contain the following parameter: 'grant_type'."))
		return
	}
	if z.throttle.take() {
		w.Header().Set("Retry-After", "1")
		z.writeError(w, azErr(http.StatusTooManyRequests, "temporarily_unavailable", 0, "Too many requests. Retry after the interval in the Retry-After header."))
		return
	}
	body, aerr := z.clientCredentials(r.Context(), r.PathValue("tenant"), r.PostForm)
	if aerr != nil {
		z.writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// clientCredentials checks the request in Entra's order: tenant, grant
// type, application, scope, assertion (shape, matching federated
// credential by issuer, audience and subject, signature, times).
func (z *CloudAzure) clientCredentials(ctx context.Context, tenantID string, form map[string][]string) (map[string]any, *azureError) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	z.mu.Lock()
	tenant := z.tenants[tenantID]
	z.mu.Unlock()
	if tenant == nil {
		return nil, azErr(http.StatusBadRequest, "invalid_request", AzureCodeTenantNotFound,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", clip(tenantID, azureMaxField)))
	}
	grant := get("grant_type")
	switch {
	case grant == "":
		return nil, azMissing("grant_type")
	case grant != "client_credentials":
		return nil, azErr(http.StatusBadRequest, "unsupported_grant_type", AzureCodeUnsupportedGrant,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", clip(grant, azureMaxField)))
	}
	clientID := get("client_id")
	if clientID == "" {
		return nil, azMissing("client_id")
	}
	z.mu.Lock()
	creds, known := tenant.apps[clientID]
	z.mu.Unlock()
	if !known {
		return nil, azErr(http.StatusBadRequest, "unauthorized_client", AzureCodeAppNotFound,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clip(clientID, azureMaxField), tenantID))
	}
	scope := get("scope")
	if scope == "" {
		return nil, azMissing("scope")
	}
	resource, ok := strings.CutSuffix(scope, "/.default")
	if !ok || strings.Contains(scope, " ") {
		return nil, azErr(http.StatusBadRequest, "invalid_scope", AzureCodeScopeNotDefault,
			fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", clip(scope, azureMaxField)))
	}
	z.mu.Lock()
	resOK := z.resources[resource]
	z.mu.Unlock()
	if !resOK {
		return nil, azErr(http.StatusBadRequest, "invalid_resource", AzureCodeResourceNotFound,
			fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", clip(resource, azureMaxField), tenantID))
	}
	assertion := get("client_assertion")
	if assertion == "" || get("client_assertion_type") != azureClientAssertionType {
		return nil, azErr(http.StatusUnauthorized, "invalid_client", AzureCodeCredentialRequired,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}
	parsed, err := token.ParseUnverified(assertion)
	if err != nil {
		return nil, azErr(http.StatusBadRequest, "invalid_request", AzureCodeMalformed, "JWT token is invalid or malformed.")
	}
	cl := parsed.Claims
	var byIssuer []AzureFederatedCredential
	for _, c := range creds {
		if c.Issuer == cl.Issuer {
			byIssuer = append(byIssuer, c)
		}
	}
	if len(byIssuer) == 0 {
		return nil, azErr(http.StatusBadRequest, "invalid_request", AzureCodeIssuerNoMatch,
			fmt.Sprintf("No matching federated identity record found for presented assertion issuer '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.", clip(cl.Issuer, azureMaxField)))
	}
	aud := strings.Join(cl.Audience, ",")
	var byAud []AzureFederatedCredential
	for _, c := range byIssuer {
		if len(cl.Audience) == 1 && cl.Audience[0] == c.Audience {
			byAud = append(byAud, c)
		}
	}
	if len(byAud) == 0 {
		return nil, azErr(http.StatusBadRequest, "invalid_request", AzureCodeAudienceNoMatch,
			fmt.Sprintf("No matching federated identity record found for presented assertion audience '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.", clip(aud, azureMaxField)))
	}
	var match *AzureFederatedCredential
	for i := range byAud {
		if byAud[i].Subject == cl.Subject {
			match = &byAud[i]
			break
		}
	}
	if match == nil {
		return nil, azErr(http.StatusBadRequest, "invalid_request", AzureCodeSubjectNoMatch,
			fmt.Sprintf("No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'.", clip(cl.Issuer, azureMaxField), clip(cl.Subject, azureMaxField), clip(aud, azureMaxField)))
	}
	switch problem, _ := z.keysFor(match).verify(ctx, assertion); problem {
	case keyUnreachable:
		return nil, azErr(http.StatusBadRequest, "invalid_request", AzureCodeOIDCUnreachable, "Request to External OIDC endpoint failed.")
	case keyUnknown, keyBadSig:
		return nil, azErr(http.StatusUnauthorized, "invalid_client", AzureCodeSignature, "Client assertion failed signature validation.")
	}
	now := time.Now().UTC()
	if cl.Expiry.IsZero() || !now.Before(cl.Expiry) || (!cl.NotBefore.IsZero() && now.Before(cl.NotBefore)) {
		return nil, azErr(http.StatusUnauthorized, "invalid_client", AzureCodeTimeRange,
			fmt.Sprintf("Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
				now.Format(time.RFC3339), entraTime(cl.NotBefore), entraTime(cl.Expiry)))
	}

	exp := now.Add(azureTokenLifetime)
	objectID := uuidFrom(tenantID + "/" + clientID)
	access, err := z.signer.Sign(map[string]any{
		"aud": resource, "iss": z.Issuer(tenantID), "iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"azp": clientID, "appid": clientID, "tid": tenantID, "oid": objectID, "sub": objectID,
		"idtyp": "app", "ver": "2.0", "uti": randomString(urlSafe, 22),
	}, token.SignOptions{})
	if err != nil {
		return nil, azErr(http.StatusInternalServerError, "server_error", 0, "signing failed")
	}
	return map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int64(azureTokenLifetime / time.Second),
		"ext_expires_in": int64(azureTokenLifetime / time.Second),
		"access_token":   access,
	}, nil
}

func entraTime(t time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return t.UTC().Format(time.RFC3339)
}

// uuidFrom derives a stable UUID-shaped identifier from s (an object ID).
func uuidFrom(s string) string {
	var h [16]byte
	for i := 0; i < len(s); i++ {
		h[i%16] = h[i%16]*31 + s[i]
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// keysFor returns the keys of a federated credential's issuer.
func (z *CloudAzure) keysFor(c *AzureFederatedCredential) *oidcKeys {
	k := c.Issuer + "\x00" + c.JWKSURI
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.keys[k] == nil {
		z.keys[k] = z.cloud.newOIDCKeys(c.Issuer, c.JWKSURI, azureAlgs)
	}
	return z.keys[k]
}

// azureErrorBody is Entra's error JSON.
type azureErrorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri,omitempty"`
}

func (z *CloudAzure) writeError(w http.ResponseWriter, e *azureError) {
	noteError(w, e.err)
	now := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	trace, corr := newUUID(), newUUID()
	desc := e.text
	body := azureErrorBody{Error: e.err, Timestamp: now, TraceID: trace, CorrelationID: corr, ErrorCodes: []int{}}
	if e.code != 0 {
		desc = "AADSTS" + strconv.Itoa(e.code) + ": " + e.text
		body.ErrorCodes = []int{e.code}
		body.ErrorURI = "https://login.microsoftonline.com/error?code=" + strconv.Itoa(e.code)
	}
	body.ErrorDescription = desc + " Trace ID: " + trace + " Correlation ID: " + corr + " Timestamp: " + now
	writeJSON(w, e.status, body)
}
