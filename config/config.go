// Package config reads chainbroker's YAML configuration file, reports every
// problem at once naming each field, and resolves secrets from the
// environment or files. Only cmd/ uses it; the rest of the code receives typed
// runtime configuration.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/internal/export"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
	"github.com/chainbroker/chainbroker/token"
)

// File is the root of the YAML configuration.
type File struct {
	Listen    Listen        `yaml:"listen"`
	TLS       TLS           `yaml:"tls"`
	Callers   Callers       `yaml:"callers"`
	RateLimit RateLimit     `yaml:"rate_limit"`
	Log       Log           `yaml:"log"`
	Store     Store         `yaml:"store"`
	Limits    Limits        `yaml:"limits"`
	Domains   []Domain      `yaml:"domains"`
	Chains    []Chain       `yaml:"chains"`
	Policy    []PolicyEntry `yaml:"policy"`
	Cache     Cache         `yaml:"cache"`
	Issuer    Issuer        `yaml:"issuer"`

	// AuditExport streams the audit trail to a SIEM.
	AuditExport AuditExport `yaml:"audit_export"`
}

// Issuer is the broker's own issuer identity: the `iss` of grants it signs
// in issue mode (and of actor tokens), with its keys published at
// <url>/.well-known/jwks.json and metadata at
// <url>/.well-known/openid-configuration on the REST listener.
type Issuer struct {
	URL  string      `yaml:"url"`
	Keys []IssuerKey `yaml:"keys"`
}

// IssuerKey is one signing key file (PEM or private JWK) and its state:
// active (signs; exactly one), published (in the JWKS, e.g. the next key),
// retired (neither). Files are reloaded when they change or on SIGHUP.
type IssuerKey struct {
	File  string `yaml:"file"`
	State string `yaml:"state"`
	Alg   string `yaml:"alg"` // default by key type: ES256 for P-256
}

// Transcription configures what of the subject token reaches the grant.
type Transcription struct {
	SubjectClaim string            `yaml:"subject_claim"` // default sub
	SubjectMap   map[string]string `yaml:"subject_map"`   // value -> target sub; unmapped values are refused
	Claims       []string          `yaml:"claims"`        // copied when present
	Act          bool              `yaml:"act"`           // add act naming the caller
	// Compute: claim name -> CEL expression (issue mode); checked at start-up.
	Compute map[string]string `yaml:"compute"`
}

// Cache holds the keys that encrypt cached tokens (AES-256-GCM). The first
// key encrypts; all decrypt, so keys rotate by putting a new one first.
type Cache struct {
	Keys []CacheKey `yaml:"keys"`
}

// CacheKey is one 32-byte key, base64 in an environment variable or file.
type CacheKey struct {
	ID         string `yaml:"id"`
	SecretEnv  string `yaml:"secret_env"`
	SecretFile string `yaml:"secret_file"`
}

// DomainCache turns on the token cache for a target domain.
type DomainCache struct {
	Enabled bool     `yaml:"enabled"`
	Margin  Duration `yaml:"margin"` // default 30s
}

// TLS serves both listeners over TLS. The files are reloaded when they
// change. With client_ca_file, clients may present certificates (mTLS).
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Callers configures caller authentication. A call must carry one accepted
// credential unless allow_anonymous is set (only on loopback listeners).
type Callers struct {
	AllowAnonymous bool       `yaml:"allow_anonymous"`
	MTLS           bool       `yaml:"mtls"` // name callers by their client certificate (needs tls.client_ca_file)
	APIKeys        []APIKey   `yaml:"api_keys"`
	JWT            *CallerJWT `yaml:"jwt"`
}

// APIKey is a static caller key, stored as the hex SHA-256 of the key
// (`printf %s KEY | sha256sum`), sent by callers in the x-api-key header.
type APIKey struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// CallerJWT accepts bearer JWTs from one issuer (Kubernetes service account
// tokens, SPIFFE JWT-SVIDs, ...).
type CallerJWT struct {
	Issuer            string   `yaml:"issuer"`
	JWKSURI           string   `yaml:"jwks_uri"`
	Audience          string   `yaml:"audience"`
	CallerClaim       string   `yaml:"caller_claim"` // sub (default), azp or client_id
	ClockSkew         Duration `yaml:"clock_skew"`
	CAFile            string   `yaml:"ca_file"`
	AllowInsecureHTTP bool     `yaml:"allow_insecure_http"`
}

// RateLimit is a per-caller token bucket; 0 disables it.
type RateLimit struct {
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
}

// PolicyEntry grants one caller (by authenticated name) chains and roles.
// Everything not granted is denied.
type PolicyEntry struct {
	Caller string        `yaml:"caller"`
	Roles  []string      `yaml:"roles"` // "audit": may read the audit trail
	Chains []PolicyChain `yaml:"chains"`
}

// PolicyChain permits one configured chain to a caller.
type PolicyChain struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
	// Scopes the caller may request explicitly ("*": any). The chain's
	// default_scopes are always allowed.
	Scopes []string `yaml:"scopes"`
	// Resources and Audiences the caller may send in hop 1 ("*": any);
	// the chain's own resource and audience are always allowed.
	Resources []string `yaml:"resources"`
	Audiences []string `yaml:"audiences"`
	// AllowActorToken: the caller may send its own actor_token on a chain
	// with transcription.act (refused otherwise).
	AllowActorToken bool `yaml:"allow_actor_token"`
	// SubjectAZP: the subject token's azp (or client_id) must be one of
	// these; needs verify_subject_token on the source domain.
	SubjectAZP []string `yaml:"subject_azp"`
	// When: a CEL expression that must be true for this grant to apply
	// (broker/cel.go lists its variables); checked at start-up.
	When string `yaml:"when"`
}

// Listen holds the listener addresses.
type Listen struct {
	GRPC string `yaml:"grpc"` // default 127.0.0.1:9090
	HTTP string `yaml:"http"` // default 127.0.0.1:8080
	// ShutdownTimeout bounds the drain of in-flight calls on SIGTERM; default 15s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// ReadinessInterval: how often readiness (store, domain keys) is checked
	// to set the gRPC health status; default 5s.
	ReadinessInterval Duration `yaml:"readiness_interval"`
	// Admin, when set (host:port), serves /metrics, /openapi.json, /healthz
	// and /readyz on an operator listener instead of the REST listener.
	Admin string `yaml:"admin"`
	// ShutdownDelay: on SIGTERM, how long readiness fails (health
	// NOT_SERVING, /readyz 503) while calls are still served, before the
	// listeners close; default 0 (the Kubernetes manifest sets 5s).
	ShutdownDelay Duration `yaml:"shutdown_delay"`
	// Transport bounds, enforced before authentication (docs/security.md).
	MaxConnections       int       `yaml:"max_connections"`        // per listener; default 1024
	MaxHeaderBytes       int       `yaml:"max_header_bytes"`       // request header block, both listeners; default 32 KiB
	MaxConcurrentStreams int       `yaml:"max_concurrent_streams"` // per HTTP/2 connection; default 100
	HandshakeTimeout     Duration  `yaml:"handshake_timeout"`      // gRPC connection set-up (TLS, preface); default 10s
	Keepalive            Keepalive `yaml:"keepalive"`
}

// Keepalive bounds gRPC connections' lifetime and pings.
type Keepalive struct {
	// MinTime: clients pinging more often are disconnected; default 20s.
	MinTime Duration `yaml:"min_time"`
	// Time and Timeout: the server pings a connection idle for Time and
	// closes it when the ping is not answered within Timeout (dead peers
	// free their connection slot); defaults 1m and 20s.
	Time    Duration `yaml:"time"`
	Timeout Duration `yaml:"timeout"`
	// MaxConnectionIdle closes connections without calls for this long;
	// default 5m.
	MaxConnectionIdle Duration `yaml:"max_connection_idle"`
	// MaxConnectionAge closes connections this old (clients reconnect, which
	// spreads them over new replicas), letting calls finish within
	// MaxConnectionAgeGrace; defaults 30m and 30s.
	MaxConnectionAge      Duration `yaml:"max_connection_age"`
	MaxConnectionAgeGrace Duration `yaml:"max_connection_age_grace"`
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // json (default) or text
}

// Store selects the replay and audit backend.
type Store struct {
	Backend string `yaml:"backend"` // memory (default) or redis
	// AuditRetention: audit events appended longer ago are trimmed (both
	// backends; the count bounds stay). 0 (default): no time bound.
	AuditRetention Duration `yaml:"audit_retention"`
	Redis          Redis    `yaml:"redis"`
}

// Redis configures the Redis backend (go-redis UniversalClient: one address
// for standalone, several for Cluster, master_name for Sentinel).
type Redis struct {
	URL          string   `yaml:"url"`   // redis://[user@]host:port/db or rediss://; alternative to addrs; no password
	Addrs        []string `yaml:"addrs"` // host:port list
	MasterName   string   `yaml:"master_name"`
	Username     string   `yaml:"username"`
	PasswordEnv  string   `yaml:"password_env"`
	PasswordFile string   `yaml:"password_file"`
	DB           int      `yaml:"db"`
	KeyPrefix    string   `yaml:"key_prefix"`    // default "chainbroker"
	AuditMaxLen  int64    `yaml:"audit_max_len"` // XADD MAXLEN ~; default 1000000
	OpTimeout    Duration `yaml:"op_timeout"`    // per operation; default 2s
	// MinReplicasAck: replay markers and audit events wait (WAIT) for this
	// many replicas; fewer fails the chain closed. 0 (default): no wait.
	MinReplicasAck    int      `yaml:"min_replicas_ack"`
	ReplicaAckTimeout Duration `yaml:"replica_ack_timeout"` // default 500ms
	TLS               RedisTLS `yaml:"tls"`
}

// RedisTLS configures TLS to Redis (standalone, Sentinel and Cluster; with
// url, rediss:// turns it on too). Certificates are always verified.
type RedisTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`     // PEM CA bundle; default: system roots
	ServerName string `yaml:"server_name"` // default: each address's host
	CertFile   string `yaml:"cert_file"`   // client certificate (tls-auth-clients)
	KeyFile    string `yaml:"key_file"`    // its key: mode 0600
}

// AuditExport follows the audit trail (the Redis stream, or the memory
// store's trail) with a consumer group and writes its events to a sink (off
// by default).
type AuditExport struct {
	Sink          string   `yaml:"sink"`           // "" (off), stdout, file or otlp
	File          string   `yaml:"file"`           // sink file: appended, created 0600
	OTLPEndpoint  string   `yaml:"otlp_endpoint"`  // sink otlp: OTLP/HTTP logs URL (…/v1/logs)
	BatchSize     int      `yaml:"batch_size"`     // events per read and per batch; default 100, at most 1000
	ConsumerGroup string   `yaml:"consumer_group"` // default chainbroker-export
	ConsumerName  string   `yaml:"consumer_name"`  // default: the host name
	ClaimIdle     Duration `yaml:"claim_idle"`     // pending this long: claimed by another consumer; default 1m
}

// Limits bound inputs.
type Limits struct {
	MaxTokenBytes int `yaml:"max_token_bytes"` // default 16384
	MaxScopes     int `yaml:"max_scopes"`      // default 32
	MaxResources  int `yaml:"max_resources"`   // default 16
}

// Domain is one trust domain (one authorization server).
type Domain struct {
	Name string `yaml:"name"`
	// Issuer is the authorization server's issuer identifier, compared exactly.
	Issuer string `yaml:"issuer"`
	// Discovery fetches token_endpoint and jwks_uri from the issuer's
	// .well-known/openid-configuration at start-up (explicit values win).
	Discovery     bool   `yaml:"discovery"`
	TokenEndpoint string `yaml:"token_endpoint"`
	JWKSURI       string `yaml:"jwks_uri"`
	// JWKSMinRefresh is the least time between two fetches of the JWKS
	// prompted by an unknown kid; default 30s, at least 1s.
	JWKSMinRefresh Duration `yaml:"jwks_min_refresh"`
	// Timeout bounds each call to this domain; default 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxAttempts bounds token exchange attempts per chain (retries on
	// outages: connection errors, timeouts, 429, 503, other 5xx without an
	// OAuth error body, temporarily_unavailable; with jittered backoff
	// honouring Retry-After) and hop 2 retries (the same assertion when
	// nothing was sent, else from hop 1); default 3, 1 disables retries.
	MaxAttempts int `yaml:"max_attempts"`
	// CircuitBreaker suspends calls to a failing domain.
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker"`
	// Cache, as a target: reuse its access tokens (opt-in).
	Cache DomainCache `yaml:"cache"`
	// AllowInsecureHTTP permits http:// URLs for this domain (loopback demos only).
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// CAFile: PEM CA bundle trusted for this domain's https URLs instead of
	// the system roots.
	CAFile string `yaml:"ca_file"`
	// VerifySubjectToken checks subject tokens of this (source) domain
	// before hop 1: signature by its JWKS, iss, exp. Off for opaque tokens.
	VerifySubjectToken bool `yaml:"verify_subject_token"`
	// Kind is what the domain is as a target: oauth (the default: an RFC
	// 7523 token endpoint) or aws (AWS STS AssumeRoleWithWebIdentity, with
	// the settings in aws). A cloud target is never a source; it needs no
	// client, and its issuer defaults to urn:chainbroker:<kind>:<name>.
	Kind string `yaml:"kind"`
	// AWS configures a kind aws target (docs/cloud-aws.md).
	AWS AWSTarget `yaml:"aws"`
	// Azure configures a kind azure target (docs/cloud-azure.md).
	Azure AzureTarget `yaml:"azure"`
	// GCP configures a kind gcp target (docs/cloud-gcp.md).
	GCP           GCPTarget       `yaml:"gcp"`
	Client        Client          `yaml:"client"`
	TokenExchange TokenExchange   `yaml:"token_exchange"`
	Assertion     AssertionPolicy `yaml:"assertion"`
}

// cloud reports whether the domain is a cloud target (kind other than oauth).
func (d *Domain) cloud() bool { return d.Kind != "" && d.Kind != string(broker.KindOAuth) }

// validateClient checks a domain's client block.
func (f *File) validateClient(add func(field, format string, args ...any), fp string, c Client) {
	if !slices.Contains(authMethods, c.AuthMethod) {
		add(fp+".client.auth_method", "must be one of %s; got %q", strings.Join(authMethods, ", "), c.AuthMethod)
	}
	if c.ClientID == "" {
		add(fp+".client.client_id", "required")
	}
	switch c.AuthMethod {
	case "client_secret_basic", "client_secret_post":
		if (c.SecretEnv == "") == (c.SecretFile == "") {
			add(fp+".client", "set exactly one of client_secret_env and client_secret_file for %s", c.AuthMethod)
		}
	case "private_key_jwt":
		if c.PrivateKeyFile == "" {
			add(fp+".client.private_key_file", "required for private_key_jwt")
		}
	}
}

// validateAWS checks a kind aws domain's settings.
func (f *File) validateAWS(p *Problems, add func(field, format string, args ...any), fp string, d Domain) {
	a := d.AWS
	if !strings.HasPrefix(a.RoleARN, "arn:") || len(a.RoleARN) < 20 || len(a.RoleARN) > 2048 {
		add(fp+".aws.role_arn", "required: the ARN of the role to assume (20 to 2048 characters)")
	}
	if a.Duration != 0 && (a.Duration.D() < broker.MinAWSDuration || a.Duration.D() > broker.MaxAWSDuration || a.Duration.D()%time.Second != 0) {
		add(fp+".aws.duration", "must be whole seconds from 15m to 12h")
	}
	if a.ProviderURL != "" {
		f.checkURL(p, fp+".aws.provider_url", a.ProviderURL, d.AllowInsecureHTTP)
	}
	for j, id := range a.ClientIDs {
		if id == "" || len(id) > 255 {
			add(fmt.Sprintf("%s.aws.client_ids[%d]", fp, j), "a client ID is 1 to 255 characters")
		}
	}
}

// validateGCP checks a kind gcp domain's settings.
func (f *File) validateGCP(p *Problems, add func(field, format string, args ...any), fp string, d Domain) {
	g := d.GCP
	if !broker.ValidGCPAudience(g.Audience) {
		add(fp+".gcp.audience", "must be //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X")
	}
	limit := broker.MaxGCPLifetime
	if g.ExtendedLifetime {
		limit = broker.MaxGCPExtendedLifetime
	}
	if g.Lifetime != 0 && (g.Lifetime.D() < time.Second || g.Lifetime.D() > limit || g.Lifetime.D()%time.Second != 0) {
		add(fp+".gcp.lifetime", "must be whole seconds up to %s", limit)
	}
	if g.ServiceAccount != "" && !strings.HasSuffix(g.ServiceAccount, ".gserviceaccount.com") {
		add(fp+".gcp.service_account", "must be a service account email (...gserviceaccount.com)")
	}
	if g.IAMCredentialsEndpoint != "" {
		f.checkURL(p, fp+".gcp.iam_credentials_endpoint", g.IAMCredentialsEndpoint, d.AllowInsecureHTTP)
	}
}

// validateAzure checks a kind azure domain's settings.
func validateAzure(add func(field, format string, args ...any), fp string, a AzureTarget) {
	if a.Tenant == "" || len(a.Tenant) > 128 || strings.ContainsAny(a.Tenant, "/?#% ") {
		add(fp+".azure.tenant", "required: the directory (tenant) ID")
	}
	if a.ClientID == "" || len(a.ClientID) > 128 {
		add(fp+".azure.client_id", "required: the application (client) ID")
	}
	if !strings.HasSuffix(a.Scope, "/.default") || strings.ContainsAny(a.Scope, " \t") {
		add(fp+".azure.scope", "must be one <resource>/.default (client credentials take no other)")
	}
	for j, c := range a.FederatedCredentials {
		if c.Issuer == "" || c.Subject == "" || len(c.Issuer) > broker.MaxAzureField || len(c.Subject) > broker.MaxAzureField || len(c.Audience) > broker.MaxAzureField {
			add(fmt.Sprintf("%s.azure.federated_credentials[%d]", fp, j), "issuer and subject are required, each field at most %d characters", broker.MaxAzureField)
		}
	}
}

// AWSTarget configures a kind aws domain: AWS STS
// AssumeRoleWithWebIdentity at token_endpoint (default
// https://sts.<region>.amazonaws.com/: endpoints come from configuration
// only).
type AWSTarget struct {
	RoleARN string `yaml:"role_arn"` // the role to assume; required
	Region  string `yaml:"region"`   // picks the regional endpoint when token_endpoint is not set
	// Duration is DurationSeconds, 15m to 12h, at most the role's maximum
	// session; default 1h.
	Duration Duration `yaml:"duration"`
	// ProviderURL is the IAM OIDC provider's URL, which the grant's iss
	// must equal; default: not checked beyond the chain's own issuer check.
	ProviderURL string `yaml:"provider_url"`
	// ClientIDs is the provider's client-id list (the grant's aud or azp
	// must hold one); default [sts.amazonaws.com].
	ClientIDs []string `yaml:"client_ids"`
}

// GCPTarget configures a kind gcp domain: Google STS at token_endpoint
// (default https://sts.googleapis.com/v1/token), then optionally service
// account impersonation at iam_credentials_endpoint.
type GCPTarget struct {
	// Audience is the workload identity pool provider,
	// //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X.
	Audience string `yaml:"audience"`
	// AllowedAudiences mirror the provider's allowed audiences; default
	// the provider's resource name, with or without https:.
	AllowedAudiences []string `yaml:"allowed_audiences"`
	// ServiceAccount, when set, is impersonated (generateAccessToken).
	ServiceAccount string `yaml:"service_account"`
	// IAMCredentialsEndpoint is IAM Credentials' base URL; default
	// https://iamcredentials.googleapis.com.
	IAMCredentialsEndpoint string `yaml:"iam_credentials_endpoint"`
	// Lifetime of the service account token; default 1h, at most 1h or,
	// with ExtendedLifetime, 12h.
	Lifetime         Duration `yaml:"lifetime"`
	ExtendedLifetime bool     `yaml:"extended_lifetime"`
	// Scopes of the tokens; default [https://www.googleapis.com/auth/cloud-platform].
	Scopes []string `yaml:"scopes"`
}

// AzureTarget configures a kind azure domain: Microsoft Entra client
// credentials with the grant as federated client assertion, at
// token_endpoint (default https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token).
type AzureTarget struct {
	Tenant   string `yaml:"tenant"`    // directory (tenant) ID; required
	ClientID string `yaml:"client_id"` // application (client) ID; required
	Scope    string `yaml:"scope"`     // <resource>/.default; required
	// Audience is the aud Entra expects when no federated credential is
	// listed; default api://AzureADTokenExchange.
	Audience string `yaml:"audience"`
	// FederatedCredentials mirror the application's: the grant's iss, sub
	// and aud must match one exactly.
	FederatedCredentials []AzureFederatedCredential `yaml:"federated_credentials"`
}

// AzureFederatedCredential is one federated identity credential.
type AzureFederatedCredential struct {
	Issuer   string `yaml:"issuer"`
	Subject  string `yaml:"subject"`
	Audience string `yaml:"audience"` // default api://AzureADTokenExchange
}

// CircuitBreaker opens when, within 10 s, at least Failures chains failed
// on an outage (each counted once, refusals and invalid answers not at all)
// and they were at least half of the calls; it then refuses calls
// (UNAVAILABLE, UPSTREAM_CIRCUIT_OPEN) for Cooldown and lets one probe through.
type CircuitBreaker struct {
	Failures int      `yaml:"failures"` // default 5; negative disables
	Cooldown Duration `yaml:"cooldown"` // default 10s
}

// Client is how the broker authenticates to a domain's token endpoint.
type Client struct {
	ClientID   string `yaml:"client_id"`
	AuthMethod string `yaml:"auth_method"` // client_secret_basic (default), client_secret_post, private_key_jwt, none
	SecretEnv  string `yaml:"client_secret_env"`
	SecretFile string `yaml:"client_secret_file"`
	// private_key_jwt
	PrivateKeyFile string `yaml:"private_key_file"` // PEM
	SigningAlg     string `yaml:"signing_alg"`      // default ES256 for EC keys, RS256 for RSA
	KeyID          string `yaml:"key_id"`           // default RFC 7638 thumbprint
}

// TokenExchange configures hop 1 when this domain is a chain's source.
type TokenExchange struct {
	SubjectTokenType   string `yaml:"subject_token_type"`   // default ...:token-type:access_token
	RequestedTokenType string `yaml:"requested_token_type"` // default ...:token-type:access_token
}

// AssertionPolicy is how this domain, as a chain's target, validates the JWT
// authorization grants it receives. Defaults match Keycloak's.
type AssertionPolicy struct {
	// Audience the target expects in `aud`; default its issuer. Keycloak also
	// accepts its token endpoint.
	Audience []string `yaml:"audience"`
	// AllowedAlgs: default RS256..ES512, PS*, EdDSA. Never "none".
	AllowedAlgs []string `yaml:"allowed_algs"`
	// MaxLifetime bounds exp - iat (and the age of iat); default 300s.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// ClockSkew tolerated on exp, nbf and iat; default 0.
	ClockSkew Duration `yaml:"clock_skew"`
	// AllowReuse accepts assertions without `jti` (Keycloak's "Allow assertion
	// reuse"). Weakens replay protection; a warning is logged at start-up.
	AllowReuse bool `yaml:"allow_reuse"`
	// AllowedTyp: JOSE typ header values accepted in grants ("" for none);
	// default "", JWT and at+jwt, as Keycloak. oauth-id-jag+jwt only if listed.
	AllowedTyp []string `yaml:"allowed_typ"`
	// LifetimeRule: strict (default; exp - iat <= max_lifetime, stricter
	// than Keycloak) or age (Keycloak's: now - iat <= max_lifetime).
	LifetimeRule string `yaml:"lifetime_rule"`
	// VerifySignature: check grants' signatures with the source's keys
	// (default true). false (Keycloak's "Validate Signatures" off) checks the
	// claims only, for grants the broker receives over its authenticated
	// call to the source; a warning is logged at start-up.
	VerifySignature *bool `yaml:"verify_signature"`
}

// Chain permits a route from a source to a target domain.
type Chain struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
	// Audience sent in the token exchange; default the target's issuer.
	Audience string `yaml:"audience"`
	// Resource indicators (RFC 8707) sent in the token exchange.
	Resource []string `yaml:"resource"`
	// ExchangeScopes are sent as `scope` in the token exchange.
	ExchangeScopes []string `yaml:"exchange_scopes"`
	// DefaultScopes are requested in the target when the caller names none.
	DefaultScopes []string `yaml:"default_scopes"`
	// Mode: token_exchange (default) or issue (the broker signs the grant).
	Mode broker.Mode `yaml:"mode"`
	// Profile: jwt_grant (default; an RFC 7523 JWT authorization grant) or
	// id_jag (an Identity Assertion JWT Authorization Grant, docs/id-jag.md).
	Profile broker.Profile `yaml:"profile"`
	// AssertionLifetime of grants the broker issues; default 60s.
	AssertionLifetime Duration `yaml:"assertion_lifetime"`
	// SubjectAudience: issue mode: the subject token's aud must include one.
	SubjectAudience []string `yaml:"subject_audience"`
	// SubjectTokenTyp: issue mode: JOSE typ header values accepted in
	// subject tokens (default at+jwt, JWT or none).
	SubjectTokenTyp []string `yaml:"subject_token_typ"`
	// Transcription: claims mapping and copying (issue mode; act also in
	// token exchange mode).
	Transcription Transcription `yaml:"transcription"`
}

// Duration is a time.Duration written as "300s", "1m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		return errors.New("want a duration such as 300s or 5m")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. 300s, 5m)", s)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads and parses path, applies defaults and validates.
func Load(path string) (*File, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// Parse decodes YAML, applies defaults and validates. Every problem is
// reported at once (as Problems), by YAML path and line: unknown keys (with
// the closest known key as a suggestion), values of the wrong type, bad
// durations, duplicate keys and every validation problem. Only a document
// that is not YAML at all fails on its own.
func Parse(b []byte) (*File, error) {
	return parse(b, nil)
}

// LoadAndCheck is Load followed by CheckStatic: one error with every problem
// that can be found without a network call (decoding, validation, secrets,
// TLS, CA and key files). lookupEnv is os.LookupEnv in production.
// Overrides (command-line flags) are applied to the decoded file before
// defaults and validation, so their problems are reported with the rest.
func LoadAndCheck(path string, lookupEnv func(string) (string, bool), overrides ...func(*File)) (*File, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseAndCheck(b, lookupEnv, overrides...)
}

// ParseAndCheck is Parse followed by CheckStatic, all problems in one error.
func ParseAndCheck(b []byte, lookupEnv func(string) (string, bool), overrides ...func(*File)) (*File, error) {
	if lookupEnv == nil {
		return nil, errors.New("config: ParseAndCheck needs lookupEnv")
	}
	return parse(b, lookupEnv, overrides...)
}

// parse decodes, applies overrides, validates and (with lookupEnv) checks
// the files and secrets the configuration names.
func parse(b []byte, lookupEnv func(string) (string, bool), overrides ...func(*File)) (*File, error) {
	d, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f := d.file
	for _, o := range overrides {
		o(f)
	}
	f.SetDefaults()
	p := d.problems
	p = append(p, d.annotate(f.validate())...)
	if lookupEnv != nil {
		p = append(p, d.annotate(f.checkStatic(lookupEnv))...)
	}
	if len(p) > 0 {
		return nil, p
	}
	return f, nil
}

// Defaults. config owns only the process-level ones (listen addresses, log,
// store backend, the export consumer group, client auth method); every other
// default is the exported constant of the package that applies it (broker,
// server, token, oauth, store/redis, internal/export), named here, not
// repeated.
const (
	DefaultGRPCAddr        = "127.0.0.1:9090"
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultMaxLifetime     = broker.DefaultMaxLifetime
	DefaultDomainTimeout   = broker.DefaultDomainTimeout
	DefaultJWKSMinRefresh  = token.DefaultMinRefreshInterval
	DefaultShutdownTimeout = server.DefaultShutdownTimeout
	TokenTypeAccessToken   = oauth.TokenTypeAccessToken
)

// SetDefaults fills unset fields.
func (f *File) SetDefaults() {
	setDefault(&f.Listen.GRPC, DefaultGRPCAddr)
	setDefault(&f.Listen.HTTP, DefaultHTTPAddr)
	if f.Listen.ShutdownTimeout == 0 {
		f.Listen.ShutdownTimeout = Duration(DefaultShutdownTimeout)
	}
	if f.Listen.ReadinessInterval == 0 {
		f.Listen.ReadinessInterval = Duration(server.DefaultReadyInterval)
	}
	setDefaultInt(&f.Listen.MaxConnections, server.DefaultMaxConnections)
	setDefaultInt(&f.Listen.MaxHeaderBytes, server.DefaultMaxHeaderBytes)
	setDefaultInt(&f.Listen.MaxConcurrentStreams, server.DefaultMaxConcurrentStreams)
	for _, d := range []struct {
		p *Duration
		v time.Duration
	}{
		{&f.Listen.HandshakeTimeout, server.DefaultHandshakeTimeout},
		{&f.Listen.Keepalive.MinTime, server.DefaultKeepaliveMinTime},
		{&f.Listen.Keepalive.Time, server.DefaultKeepaliveTime},
		{&f.Listen.Keepalive.Timeout, server.DefaultKeepaliveTimeout},
		{&f.Listen.Keepalive.MaxConnectionIdle, server.DefaultMaxConnectionIdle},
		{&f.Listen.Keepalive.MaxConnectionAge, server.DefaultMaxConnectionAge},
		{&f.Listen.Keepalive.MaxConnectionAgeGrace, server.DefaultMaxConnectionAgeGrace},
	} {
		if *d.p == 0 {
			*d.p = Duration(d.v)
		}
	}
	setDefault(&f.Log.Level, "info")
	setDefault(&f.Log.Format, "json")
	setDefault(&f.Store.Backend, "memory")
	setDefault(&f.Store.Redis.KeyPrefix, redisstore.DefaultKeyPrefix)
	if f.Store.Redis.AuditMaxLen == 0 {
		f.Store.Redis.AuditMaxLen = redisstore.DefaultAuditMaxLen
	}
	if f.Store.Redis.OpTimeout == 0 {
		f.Store.Redis.OpTimeout = Duration(redisstore.DefaultOpTimeout)
	}
	if f.AuditExport.Sink != "" {
		setDefaultInt(&f.AuditExport.BatchSize, export.DefaultBatchSize)
		setDefault(&f.AuditExport.ConsumerGroup, "chainbroker-export")
		if f.AuditExport.ClaimIdle == 0 {
			f.AuditExport.ClaimIdle = Duration(export.DefaultClaimIdle)
		}
	}
	if f.Limits.MaxTokenBytes == 0 {
		f.Limits.MaxTokenBytes = token.MaxTokenBytes
	}
	if f.Limits.MaxScopes == 0 {
		f.Limits.MaxScopes = broker.DefaultMaxScopes
	}
	if f.Limits.MaxResources == 0 {
		f.Limits.MaxResources = broker.DefaultMaxResources
	}
	for i := range f.Domains {
		d := &f.Domains[i]
		if d.Timeout == 0 {
			d.Timeout = Duration(DefaultDomainTimeout)
		}
		if d.JWKSMinRefresh == 0 {
			d.JWKSMinRefresh = Duration(DefaultJWKSMinRefresh)
		}
		setDefault(&d.Client.AuthMethod, "client_secret_basic")
		setDefault(&d.TokenExchange.SubjectTokenType, TokenTypeAccessToken)
		setDefault(&d.TokenExchange.RequestedTokenType, TokenTypeAccessToken)
		if d.cloud() {
			if d.Issuer == "" && d.Name != "" {
				d.Issuer = broker.CloudIssuer(broker.TargetKind(d.Kind), d.Name)
			}
			if d.Kind == string(broker.KindAWS) && d.TokenEndpoint == "" && d.AWS.Region != "" {
				d.TokenEndpoint = broker.AWSRegionalEndpoint(d.AWS.Region)
			}
			if d.Kind == string(broker.KindGCP) {
				setDefault(&d.TokenEndpoint, broker.DefaultGCPSTSEndpoint)
				if d.GCP.ServiceAccount != "" {
					setDefault(&d.GCP.IAMCredentialsEndpoint, broker.DefaultGCPIAMCredentialsEndpoint)
				}
			}
			if d.Kind == string(broker.KindAzure) && d.TokenEndpoint == "" && d.Azure.Tenant != "" {
				d.TokenEndpoint = broker.EntraTokenEndpoint(d.Azure.Tenant)
			}
		}
		if len(d.Assertion.Audience) == 0 && d.Issuer != "" && !d.cloud() {
			d.Assertion.Audience = []string{d.Issuer}
		}
		if d.Assertion.MaxLifetime == 0 {
			d.Assertion.MaxLifetime = Duration(DefaultMaxLifetime)
		}
	}
	for i := range f.Chains {
		c := &f.Chains[i]
		if c.Audience == "" {
			if t := f.Domain(c.Target); t != nil {
				c.Audience = t.Issuer
			}
		}
	}
}

func setDefaultInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDefault(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

// Domain returns the domain named name, or nil.
func (f *File) Domain(name string) *Domain {
	for i := range f.Domains {
		if f.Domains[i].Name == name {
			return &f.Domains[i]
		}
	}
	return nil
}

// Problems is every problem with a configuration, each naming its field by
// YAML path (and, from Parse, its line).
type Problems []string

// Error lists the problems one per line.
func (p Problems) Error() string {
	if len(p) == 1 {
		return "config: " + p[0]
	}
	return fmt.Sprintf("config: %d problems:\n  %s", len(p), strings.Join(p, "\n  "))
}

var (
	authMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
	// verifyAlgs is the verifier's allow-list: token owns it.
	verifyAlgs = token.DefaultAllowedAlgs
)

// Validate reports every problem at once (as Problems), naming each field by
// its YAML path, e.g. `domains[1].client.client_id`.
func (f *File) Validate() error {
	if p := f.validate(); len(p) > 0 {
		return p
	}
	return nil
}

// Check is Validate and CheckStatic together: every problem that can be
// found without a network call, in one error.
func (f *File) Check(lookupEnv func(string) (string, bool)) error {
	p := append(f.validate(), f.checkStatic(lookupEnv)...)
	if len(p) > 0 {
		return p
	}
	return nil
}

func (f *File) validate() Problems {
	var p Problems
	add := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}
	checkAddr := func(field, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			add(field, "invalid host:port %q", v)
		}
	}
	checkAddr("listen.grpc", f.Listen.GRPC)
	checkAddr("listen.http", f.Listen.HTTP)
	if f.Listen.Admin != "" {
		checkAddr("listen.admin", f.Listen.Admin)
		if f.Listen.Admin == f.Listen.HTTP || f.Listen.Admin == f.Listen.GRPC {
			add("listen.admin", "must differ from listen.grpc and listen.http")
		}
	}
	if f.Listen.ShutdownDelay < 0 {
		add("listen.shutdown_delay", "must not be negative")
	}
	for _, v := range []struct {
		field       string
		got, lo, hi int
	}{
		{"listen.max_connections", f.Listen.MaxConnections, 1, 1 << 20},
		{"listen.max_header_bytes", f.Listen.MaxHeaderBytes, 1 << 10, 1 << 20},
		{"listen.max_concurrent_streams", f.Listen.MaxConcurrentStreams, 1, 1 << 16},
	} {
		if v.got < v.lo || v.got > v.hi {
			add(v.field, "must be between %d and %d; got %d", v.lo, v.hi, v.got)
		}
	}
	k := f.Listen.Keepalive
	for _, d := range []struct {
		field string
		d     Duration
	}{
		{"listen.handshake_timeout", f.Listen.HandshakeTimeout}, {"listen.keepalive.min_time", k.MinTime},
		{"listen.keepalive.time", k.Time}, {"listen.keepalive.timeout", k.Timeout},
		{"listen.keepalive.max_connection_idle", k.MaxConnectionIdle}, {"listen.keepalive.max_connection_age", k.MaxConnectionAge},
		{"listen.keepalive.max_connection_age_grace", k.MaxConnectionAgeGrace},
	} {
		if d.d < 0 {
			add(d.field, "must not be negative")
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, f.Log.Level) {
		add("log.level", "must be one of debug, info, warn, error; got %q", f.Log.Level)
	}
	if !slices.Contains([]string{"json", "text"}, f.Log.Format) {
		add("log.format", "must be json or text; got %q", f.Log.Format)
	}
	if f.Store.AuditRetention < 0 {
		add("store.audit_retention", "must not be negative")
	}
	switch f.Store.Backend {
	case "memory":
	case "redis":
		r := f.Store.Redis
		if (r.URL == "") == (len(r.Addrs) == 0) {
			add("store.redis", "set exactly one of url and addrs")
		}
		tlsOn := r.TLS.Enabled
		if r.URL != "" {
			if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				add("store.redis.url", "must be a redis:// or rediss:// URL")
			} else {
				if _, has := u.User.Password(); has {
					add("store.redis.url", "must not carry a password (secrets never go in the file): use store.redis.password_env or store.redis.password_file, and store.redis.username")
				}
				if q := u.Query(); q.Has("password") || q.Has("skip_verify") {
					add("store.redis.url", "must not carry password or skip_verify parameters")
				}
				if r.TLS.Enabled && u.Scheme == "redis" {
					add("store.redis.tls.enabled", "conflicts with a redis:// url: use rediss://")
				}
				tlsOn = tlsOn || u.Scheme == "rediss"
			}
		}
		if !tlsOn && (r.TLS.CAFile != "" || r.TLS.ServerName != "" || r.TLS.CertFile != "" || r.TLS.KeyFile != "") {
			add("store.redis.tls", "ca_file, server_name, cert_file and key_file need tls.enabled (or a rediss:// url)")
		}
		if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
			add("store.redis.tls", "set both cert_file and key_file, or neither")
		}
		if r.MinReplicasAck < 0 || r.ReplicaAckTimeout < 0 {
			add("store.redis.min_replicas_ack", "must not be negative")
		}
		if r.PasswordEnv != "" && r.PasswordFile != "" {
			add("store.redis", "set at most one of password_env and password_file")
		}
	default:
		add("store.backend", "must be memory or redis; got %q", f.Store.Backend)
	}
	f.validateAuditExport(&p, add)
	if len(f.Domains) == 0 {
		add("domains", "at least one domain is required")
	}
	domainNames := uniqueNames{}
	issuers := map[string]string{}
	for i, d := range f.Domains {
		fp := fmt.Sprintf("domains[%d]", i)
		domainNames.check(add, fp+".name", "domain ", d.Name)
		if !broker.TargetKind(d.Kind).Valid() {
			add(fp+".kind", "must be oauth, aws, azure or gcp; got %q", d.Kind)
		}
		if d.Kind == string(broker.KindGCP) {
			f.validateGCP(&p, add, fp, d)
		}
		if d.Kind == string(broker.KindAWS) {
			f.validateAWS(&p, add, fp, d)
		}
		if d.Kind == string(broker.KindAzure) {
			validateAzure(add, fp, d.Azure)
		}
		if d.Issuer == "" {
			add(fp+".issuer", "required")
		} else {
			if other, dup := issuers[d.Issuer]; dup {
				add(fp+".issuer", "same issuer as domain %q", other)
			}
			issuers[d.Issuer] = d.Name
			if !d.cloud() || !strings.HasPrefix(d.Issuer, "urn:") {
				f.checkURL(&p, fp+".issuer", d.Issuer, d.AllowInsecureHTTP)
			}
		}
		if d.TokenEndpoint == "" && !d.Discovery {
			if d.cloud() {
				add(fp+".token_endpoint", "required (for kind aws: or aws.region; for kind azure: or azure.tenant)")
			} else {
				add(fp+".token_endpoint", "required unless discovery is true")
			}
		}
		if d.TokenEndpoint != "" {
			f.checkURL(&p, fp+".token_endpoint", d.TokenEndpoint, d.AllowInsecureHTTP)
		}
		if d.JWKSURI != "" {
			f.checkURL(&p, fp+".jwks_uri", d.JWKSURI, d.AllowInsecureHTTP)
		}
		if d.Timeout < 0 {
			add(fp+".timeout", "must be positive")
		}
		if d.JWKSMinRefresh != 0 && (d.JWKSMinRefresh < Duration(time.Second) || d.JWKSMinRefresh > Duration(time.Hour)) {
			add(fp+".jwks_min_refresh", "must be between 1s and 1h")
		}
		if d.MaxAttempts < 0 || d.MaxAttempts > 10 {
			add(fp+".max_attempts", "must be between 1 and 10")
		}
		if d.CircuitBreaker.Cooldown < 0 {
			add(fp+".circuit_breaker.cooldown", "must be positive")
		}
		if !d.cloud() { // a cloud target authenticates with the grant alone: no client
			f.validateClient(add, fp, d.Client)
		}
		a := d.Assertion
		for j, alg := range a.AllowedAlgs {
			if !slices.Contains(verifyAlgs, alg) {
				add(fmt.Sprintf("%s.assertion.allowed_algs[%d]", fp, j), "unsupported or unsafe algorithm %q (allowed: %s)", alg, strings.Join(verifyAlgs, ", "))
			}
		}
		if a.MaxLifetime < 0 {
			add(fp+".assertion.max_lifetime", "must be positive")
		}
		if a.LifetimeRule != "" && a.LifetimeRule != "strict" && a.LifetimeRule != "age" {
			add(fp+".assertion.lifetime_rule", "must be strict or age, not %q", a.LifetimeRule)
		}
		if len(a.AllowedTyp) > 16 {
			add(fp+".assertion.allowed_typ", "at most 16 values")
		}
		for j, t := range a.AllowedTyp {
			if len(t) > 64 || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r > '~' }) {
				add(fmt.Sprintf("%s.assertion.allowed_typ[%d]", fp, j), "a typ is printable ASCII without spaces, at most 64 bytes")
			}
		}
		if a.ClockSkew < 0 || a.ClockSkew.D() > 5*time.Minute {
			add(fp+".assertion.clock_skew", "must be between 0 and 5m")
		}
	}
	if len(f.Chains) == 0 {
		add("chains", "at least one chain is required")
	}
	routes := map[[2]string]bool{}
	for i, c := range f.Chains {
		fp := fmt.Sprintf("chains[%d]", i)
		if c.Source == "" {
			add(fp+".source", "required")
		} else if f.Domain(c.Source) == nil {
			add(fp+".source", "unknown domain %q", c.Source)
		}
		if c.Target == "" {
			add(fp+".target", "required")
		} else if f.Domain(c.Target) == nil {
			add(fp+".target", "unknown domain %q", c.Target)
		}
		if c.Source != "" && c.Source == c.Target {
			add(fp, "source and target must differ")
		}
		if d := f.Domain(c.Source); d != nil && d.cloud() {
			add(fp+".source", "domain %q of kind %s is a target only", c.Source, d.Kind)
		}
		switch c.Mode {
		case "", broker.ModeTokenExchange:
		case broker.ModeSubjectToken:
			if d := f.Domain(c.Target); d != nil && !d.cloud() {
				add(fp+".mode", "subject_token needs a cloud target (kind aws, azure or gcp)")
			}
			if d := f.Domain(c.Source); d != nil && d.JWKSURI == "" && !d.Discovery {
				add(fp+".source", "mode subject_token verifies subject tokens: domain %q needs jwks_uri or discovery", c.Source)
			}
		case broker.ModeIssue:
			if len(c.SubjectAudience) == 0 {
				add(fp+".subject_audience", "required in issue mode: the aud the broker expects in subject tokens")
			}
			if d := f.Domain(c.Source); d != nil && d.JWKSURI == "" && !d.Discovery {
				add(fp+".source", "issue mode verifies subject tokens: domain %q needs jwks_uri or discovery", c.Source)
			}
		default:
			add(fp+".mode", "must be token_exchange, issue or subject_token; got %q", c.Mode)
		}
		if !c.Profile.Valid() {
			add(fp+".profile", "must be jwt_grant or id_jag; got %q", c.Profile)
		}
		if t := f.Domain(c.Target); c.Profile == broker.ProfileIDJAG && t != nil && t.Client.AuthMethod == "none" {
			add(fp+".profile", "id_jag presents the grant with client authentication: domain %q needs a confidential client (auth_method other than none)", c.Target)
		}
		if t, s := f.Domain(c.Target), f.Domain(c.Source); t != nil && s != nil && t.Assertion.VerifySignature != nil &&
			!*t.Assertion.VerifySignature && c.Mode != broker.ModeIssue && s.Client.AuthMethod == "none" {
			add(fp, "domain %q has assertion.verify_signature: false, which needs grants received over an authenticated call: the client at %q is public", c.Target, c.Source)
		}
		if len(c.SubjectTokenTyp) > 0 && c.Mode != broker.ModeIssue {
			add(fp+".subject_token_typ", "only in issue mode: in token exchange mode the source checks the subject token's type")
		}
		if (c.Mode == broker.ModeIssue || c.Transcription.Act) && f.Issuer.URL == "" {
			add(fp, "issue mode and transcription.act need issuer.url and issuer.keys")
		}
		for j, name := range c.Transcription.Claims {
			if slices.Contains(broker.ReservedClaims, name) {
				add(fmt.Sprintf("%s.transcription.claims[%d]", fp, j), "%q is set by the broker, not copied", name)
			}
		}
		if len(c.Transcription.Compute) > 0 && c.Mode != broker.ModeIssue {
			add(fp+".transcription.compute", "only in issue mode (the broker signs the grant)")
		}
		for _, name := range slices.Sorted(maps.Keys(c.Transcription.Compute)) {
			if err := broker.CompileComputedClaim(name, c.Transcription.Compute[name]); err != nil {
				add(fmt.Sprintf("%s.transcription.compute.%s", fp, name), "%s", err.Error())
			}
		}
		if routes[[2]string{c.Source, c.Target}] {
			add(fp, "duplicate chain %s -> %s", c.Source, c.Target)
		}
		routes[[2]string{c.Source, c.Target}] = true
	}
	f.validateSecurity(&p, add)
	if f.Issuer.URL != "" {
		f.checkURL(&p, "issuer.url", f.Issuer.URL, loopbackURL(f.Issuer.URL))
		active := 0
		for i, k := range f.Issuer.Keys {
			fp := fmt.Sprintf("issuer.keys[%d]", i)
			if k.File == "" {
				add(fp+".file", "required")
			}
			switch k.State {
			case "active":
				active++
			case "published", "retired":
			default:
				add(fp+".state", "must be active, published or retired; got %q", k.State)
			}
		}
		if active != 1 {
			add("issuer.keys", "exactly one key must be active; %d are", active)
		}
	} else if len(f.Issuer.Keys) > 0 {
		add("issuer.url", "required with issuer.keys")
	}
	cached := false
	for i, d := range f.Domains {
		if d.Cache.Enabled {
			cached = true
		}
		if d.Cache.Margin < 0 {
			add(fmt.Sprintf("domains[%d].cache.margin", i), "must be positive")
		}
	}
	if cached && len(f.Cache.Keys) == 0 {
		add("cache.keys", "a domain enables the token cache: at least one key is required")
	}
	ids := uniqueNames{}
	for i, k := range f.Cache.Keys {
		fp := fmt.Sprintf("cache.keys[%d]", i)
		ids.check(add, fp+".id", "", k.ID)
		if strings.Contains(k.ID, ":") {
			add(fp+".id", "must not contain ':'")
		}
		if (k.SecretEnv == "") == (k.SecretFile == "") {
			add(fp, "set exactly one of secret_env and secret_file")
		}
	}
	return p
}

func (f *File) validateAuditExport(p *Problems, add func(field, format string, args ...any)) {
	x := f.AuditExport
	if x.Sink == "" {
		if x != (AuditExport{}) {
			add("audit_export.sink", "required with the other audit_export keys: stdout, file or otlp")
		}
		return
	}
	if !slices.Contains([]string{"stdout", "file", "otlp"}, x.Sink) {
		add("audit_export.sink", "must be stdout, file or otlp; got %q", x.Sink)
	}
	if (x.Sink == "file") != (x.File != "") {
		add("audit_export.file", "required with sink: file, and only then")
	}
	if (x.Sink == "otlp") != (x.OTLPEndpoint != "") {
		add("audit_export.otlp_endpoint", "required with sink: otlp, and only then")
	}
	if x.OTLPEndpoint != "" {
		f.checkURL(p, "audit_export.otlp_endpoint", x.OTLPEndpoint, loopbackURL(x.OTLPEndpoint))
	}
	if x.BatchSize < 1 || x.BatchSize > 1000 {
		add("audit_export.batch_size", "must be between 1 and 1000; got %d", x.BatchSize)
	}
	if len(x.ConsumerGroup) > 200 || len(x.ConsumerName) > 200 {
		add("audit_export", "consumer_group and consumer_name must be at most 200 bytes")
	}
	if x.ClaimIdle < Duration(30*time.Second) || x.ClaimIdle > Duration(24*time.Hour) {
		add("audit_export.claim_idle", "must be between 30s and 24h (longer than one delivery to the sink may take: an OTLP request may take 10s); got %s", x.ClaimIdle.D())
	}
}

func (f *File) validateSecurity(p *Problems, add func(field, format string, args ...any)) {
	t := f.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("tls", "set both cert_file and key_file, or neither")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		add("tls.client_ca_file", "needs cert_file and key_file")
	}
	c := f.Callers
	if c.MTLS && t.ClientCAFile == "" {
		add("callers.mtls", "needs tls.client_ca_file")
	}
	if !c.AllowAnonymous && !c.MTLS && len(c.APIKeys) == 0 && c.JWT == nil {
		add("callers", "no way to authenticate callers: configure api_keys, jwt or mtls (or allow_anonymous on loopback)")
	}
	if c.AllowAnonymous {
		for field, addr := range map[string]string{"listen.grpc": f.Listen.GRPC, "listen.http": f.Listen.HTTP} {
			if !loopback(addr) {
				add("callers.allow_anonymous", "refused: %s %q is not a loopback address", field, addr)
			}
		}
	}
	names := uniqueNames{}
	for i, k := range c.APIKeys {
		fp := fmt.Sprintf("callers.api_keys[%d]", i)
		names.check(add, fp+".name", "", k.Name)
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != 32 {
			add(fp+".sha256", "must be the 64 hex digits of the key's SHA-256 (never the key itself)")
		}
	}
	if j := c.JWT; j != nil {
		if j.Issuer == "" {
			add("callers.jwt.issuer", "required")
		}
		if j.JWKSURI == "" {
			add("callers.jwt.jwks_uri", "required")
		} else {
			f.checkURL(p, "callers.jwt.jwks_uri", j.JWKSURI, j.AllowInsecureHTTP)
		}
		if j.Audience == "" {
			add("callers.jwt.audience", "required")
		}
		if j.CallerClaim != "" && !slices.Contains([]string{"sub", "azp", "client_id"}, j.CallerClaim) {
			add("callers.jwt.caller_claim", "must be sub, azp or client_id")
		}
	}
	if f.RateLimit.RequestsPerSecond < 0 || f.RateLimit.Burst < 0 {
		add("rate_limit", "must not be negative")
	}
	callers := uniqueNames{}
	for i, e := range f.Policy {
		fp := fmt.Sprintf("policy[%d]", i)
		callers.check(add, fp+".caller", "caller ", e.Caller)
		if e.Caller == "anonymous" && !c.AllowAnonymous {
			add(fp+".caller", "grants anonymous callers, but callers.allow_anonymous is false")
		}
		for j, r := range e.Roles {
			if r != "audit" {
				add(fmt.Sprintf("%s.roles[%d]", fp, j), "unknown role %q (known: audit)", r)
			}
		}
		for j, pc := range e.Chains {
			cp := fmt.Sprintf("%s.chains[%d]", fp, j)
			if !slices.ContainsFunc(f.Chains, func(ch Chain) bool { return ch.Source == pc.Source && ch.Target == pc.Target }) {
				add(cp, "no chain %s -> %s is configured", pc.Source, pc.Target)
			}
			if len(pc.SubjectAZP) > 0 {
				if d := f.Domain(pc.Source); d != nil && !d.VerifySubjectToken {
					add(cp+".subject_azp", "needs verify_subject_token on domain %q", pc.Source)
				}
			}
			if pc.When != "" {
				d := f.Domain(pc.Source)
				subject := d != nil && d.VerifySubjectToken || slices.ContainsFunc(f.Chains, func(ch Chain) bool {
					return ch.Source == pc.Source && ch.Target == pc.Target && ch.Mode == broker.ModeIssue
				})
				if err := broker.CompileCondition(pc.When, subject); err != nil {
					add(cp+".when", "%s", err.Error())
				}
			}
		}
	}
}

// uniqueNames checks names that are required and must not repeat.
type uniqueNames map[string]bool

func (u uniqueNames) check(add func(field, format string, args ...any), field, kind, name string) {
	switch {
	case name == "":
		add(field, "required")
	case u[name]:
		add(field, "duplicate %s%q", kind, name)
	}
	u[name] = true
}

// loopbackURL reports whether u's host is a loopback address (http is
// allowed there for the broker's own issuer URL, as in the sandbox).
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	if p.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(p.Hostname())
	return ip != nil && ip.IsLoopback()
}

// loopback reports whether a listen address binds loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (f *File) checkURL(p *Problems, field, raw string, allowHTTP bool) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		*p = append(*p, fmt.Sprintf("%s: not an absolute URL: %q", field, raw))
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	case u.Scheme == "http":
		*p = append(*p, fmt.Sprintf("%s: http:// is refused unless the domain sets allow_insecure_http: true", field))
	default:
		*p = append(*p, fmt.Sprintf("%s: scheme must be https", field))
	}
}

// Secret resolves a secret from an environment variable or a file (trailing
// newline trimmed). lookupEnv is os.LookupEnv in production.
func Secret(field, env, file string, lookupEnv func(string) (string, bool)) (string, error) {
	switch {
	case env != "":
		v, ok := lookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", field, env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("%s: file %s is empty", field, file)
		}
		return v, nil
	}
	return "", errors.New(field + ": no secret configured")
}
