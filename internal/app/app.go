// Package app turns a validated configuration into a running chainbroker:
// it resolves secrets, discovers domains, builds the store, the broker and the
// server, and serves until its context ends. Both `chainbroker serve` and
// `chainbroker sandbox` go through it.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/tlsreload"
	"github.com/chainbroker/chainbroker/keyset"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
	"github.com/chainbroker/chainbroker/telemetry"
	"github.com/chainbroker/chainbroker/token"
)

// Options are the process-level inputs besides the configuration.
type Options struct {
	// LookupEnv resolves *_env secrets; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	Logger    *slog.Logger
	// Tracer traces chains, hops, store operations and calls, and
	// propagates traceparent to the authorization servers; nil: off.
	Tracer trace.TracerProvider
	// AllowInsecureKeyPermissions accepts private key files (issuer keys,
	// domains[].client.private_key_file) readable or writable by their group
	// or others; by default they are refused. The chainbroker command sets
	// it from CHAINBROKER_ALLOW_INSECURE_KEY_PERMS=1.
	AllowInsecureKeyPermissions bool
	// Stdout is where audit_export.sink: stdout writes; nil means os.Stdout.
	Stdout io.Writer
	// Source, when set, is the file the configuration was read from
	// (LoadConfig): Reload and WatchConfig read it again.
	Source *Source
	// LogLevel, when set, is the level of Logger's handler: a reload sets
	// it to log.level.
	LogLevel *slog.LevelVar
}

// App is a built, not yet serving, chainbroker.
type App struct {
	// Config and Broker are those of the start-up; after a reload, Current
	// returns the running ones.
	Config  *config.File
	Broker  *broker.Broker
	Store   store.Store // instrumented
	Server  *server.Server
	Metrics *telemetry.Metrics
	// IssuerKeys are the broker's signing keys (nil without issuer.url).
	IssuerKeys *keyset.Set
	log        *slog.Logger
	// insecureKeys: Options.AllowInsecureKeyPermissions, for key reloads.
	insecureKeys bool
	export       *auditExport // nil unless audit_export.sink is set
	live         reloader     // the running configuration and its reloads (reload.go)
}

// Build checks the configuration, resolves secrets, runs discovery for
// domains that ask for it, and builds the store, the broker and the server.
// Close releases the store. Every problem found without a network call
// (validation, secrets, TLS, CA and key files) is reported at once, before
// any discovery.
func Build(ctx context.Context, cfg *config.File, opts Options) (*App, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if err := cfg.Check(opts.LookupEnv); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := opts.Tracer
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	// Outbound calls carry traceparent when tracing is on.
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		if opts.Tracer == nil {
			return rt
		}
		return otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp),
			otelhttp.WithPropagators(propagation.TraceContext{}), otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
	}
	client := oauth.NewClient(oauth.ClientOptions{WrapTransport: wrap})
	rawStore, err := buildStore(cfg, opts.LookupEnv, opts.AllowInsecureKeyPermissions)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		names = append(names, d.Name)
	}
	metrics := telemetry.NewMetrics(names...) // domain labels: these names only (and those a reload adds)

	st := telemetry.InstrumentStore(rawStore, metrics, tp)
	var issuer *broker.Issuer
	var issuerKeys *keyset.Set
	if cfg.Issuer.URL != "" {
		if issuerKeys, err = keyset.Load(keyConfigs(cfg.Issuer, opts.AllowInsecureKeyPermissions), log); err != nil {
			st.Close()
			return nil, fmt.Errorf("issuer.keys: %w", err)
		}
		issuer = &broker.Issuer{URL: cfg.Issuer.URL, Keys: issuerKeys}
	}
	deps := &shared{client: client, wrap: wrap, env: opts.LookupEnv, insecureKeys: opts.AllowInsecureKeyPermissions,
		store: st, metrics: metrics, tracer: opts.Tracer, log: log, issuer: issuer}
	gen, err := buildGeneration(ctx, cfg, deps, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	rt := gen.runtime()
	scfg := server.Config{
		Broker: rt.Broker, Audit: st, Logger: log, Auth: rt.Auth, Metrics: metrics, Tracer: opts.Tracer,
		Readiness:       rt.Readiness,
		RateLimit:       rt.RateLimit,
		ShutdownTimeout: cfg.Listen.ShutdownTimeout.D(),
		ShutdownDelay:   cfg.Listen.ShutdownDelay.D(),
		ReadyInterval:   cfg.Listen.ReadinessInterval.D(),
		Limits:          serverLimits(cfg.Listen),
	}
	if issuerKeys != nil {
		scfg.Issuer = &server.IssuerInfo{URL: cfg.Issuer.URL, JWKS: issuerKeys.JWKS}
	}
	if cfg.TLS.CertFile != "" {
		r, err := tlsreload.New(tlsreload.Files{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, ClientCAFile: cfg.TLS.ClientCAFile}, log)
		if err != nil {
			st.Close()
			return nil, err
		}
		scfg.GRPCTLS = r.ServerConfig([]string{"h2"})
		scfg.HTTPTLS = r.ServerConfig([]string{"h2", "http/1.1"})
	}
	srv, err := server.New(scfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	exp, err := buildAuditExport(cfg.AuditExport, rawStore, opts.Stdout, metrics, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	a := &App{Config: cfg, Broker: rt.Broker, Store: st, Server: srv, Metrics: metrics, IssuerKeys: issuerKeys, log: log,
		insecureKeys: opts.AllowInsecureKeyPermissions, export: exp}
	a.live.init(deps, gen, opts)
	return a, nil
}

// serverLimits are the transport bounds of listen:.
func serverLimits(l config.Listen) server.Limits {
	return server.Limits{
		MaxConnections: l.MaxConnections, MaxHeaderBytes: l.MaxHeaderBytes, MaxConcurrentStreams: l.MaxConcurrentStreams,
		HandshakeTimeout: l.HandshakeTimeout.D(),
		KeepaliveMinTime: l.Keepalive.MinTime.D(), KeepaliveTime: l.Keepalive.Time.D(), KeepaliveTimeout: l.Keepalive.Timeout.D(),
		MaxConnectionIdle: l.Keepalive.MaxConnectionIdle.D(), MaxConnectionAge: l.Keepalive.MaxConnectionAge.D(),
		MaxConnectionAgeGrace: l.Keepalive.MaxConnectionAgeGrace.D(),
	}
}

func keyConfigs(i config.Issuer, allowInsecurePerms bool) []keyset.KeyConfig {
	out := make([]keyset.KeyConfig, 0, len(i.Keys))
	for _, k := range i.Keys {
		out = append(out, keyset.KeyConfig{File: k.File, State: keyset.State(k.State), Alg: k.Alg,
			AllowInsecurePermissions: allowInsecurePerms})
	}
	return out
}

// readiness: the store answers, and every domain with keys has them loaded
// (a failed load is retried by the check itself, within the verifier's
// refresh floor: an unreachable JWKS is not fetched on every check).
func readiness(st store.Store, domains []broker.Domain) []server.Check {
	checks := []server.Check{{Name: "store", Check: st.Ping}}
	for _, d := range domains {
		keys, ok := d.Keys.(*token.Verifier)
		if !ok {
			continue
		}
		checks = append(checks, server.Check{Name: "jwks:" + d.Name, Check: func(ctx context.Context) error {
			if keys.Loaded() {
				return nil
			}
			return keys.RefreshIfAllowed(ctx)
		}})
	}
	return checks
}

// Serve listens on the configured addresses and serves until ctx ends.
func (a *App) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", a.Config.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen.grpc: %w", err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", a.Config.Listen.HTTP)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen.http: %w", err)
	}
	ls := server.Listeners{GRPC: grpcLis, HTTP: httpLis}
	if a.Config.Listen.Admin != "" {
		if ls.Admin, err = lc.Listen(ctx, "tcp", a.Config.Listen.Admin); err != nil {
			grpcLis.Close()
			httpLis.Close()
			return fmt.Errorf("listen.admin: %w", err)
		}
	}
	return a.ServeOn(ctx, ls)
}

// ServeOn is Serve on listeners the caller opened (tests listen on port 0
// first, so that the configuration knows its own addresses): it serves until
// ctx ends, with the issuer key watch and the audit export running, and
// closes the listeners.
func (a *App) ServeOn(ctx context.Context, ls server.Listeners) error {
	if a.IssuerKeys != nil {
		go a.IssuerKeys.Watch(ctx, 5*time.Second) // key files replaced in place
	}
	defer a.export.start(ctx)() // stopped once the server has drained
	return a.Server.ServeListeners(ctx, ls)
}

// Close releases the audit export's sink and the store.
func (a *App) Close() error { return errors.Join(a.export.close(), a.Store.Close()) }

func buildDomains(ctx context.Context, cfg *config.File, client *oauth.Client, wrap func(http.RoundTripper) http.RoundTripper, env func(string) (string, bool), allowInsecureKeys bool) ([]broker.Domain, error) {
	return buildDomainsKeeping(ctx, cfg, client, wrap, env, allowInsecureKeys, nil)
}

// buildDomainsKeeping builds the domains of cfg. Those in keep (unchanged
// since the previous configuration, on a reload) keep their discovered
// endpoints, HTTP client and JWKS verifier; only their client credentials
// are read again (a rotated secret).
func buildDomainsKeeping(ctx context.Context, cfg *config.File, client *oauth.Client, wrap func(http.RoundTripper) http.RoundTripper, env func(string) (string, bool), allowInsecureKeys bool, keep map[string]broker.Domain) ([]broker.Domain, error) {
	var errs []error
	out := make([]broker.Domain, 0, len(cfg.Domains))
	for i, d := range cfg.Domains {
		field := fmt.Sprintf("domains[%d]", i)
		if kept, ok := keep[d.Name]; ok {
			creds, err := clientCredentials(field, d.Client, env, allowInsecureKeys)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			kept.Creds = creds
			out = append(out, kept)
			continue
		}
		var (
			httpClient *http.Client
			endpoint   broker.TokenEndpoint
			discoverer = client
			err        error
		)
		if d.CAFile != "" {
			if httpClient, err = clientTrusting(d.CAFile); err != nil {
				errs = append(errs, fmt.Errorf("%s.ca_file: %w", field, err))
				continue
			}
			domainClient := oauth.NewClient(oauth.ClientOptions{HTTPClient: httpClient, WrapTransport: wrap})
			endpoint, discoverer = domainClient, domainClient
		}
		tokenEndpoint, jwksURI := d.TokenEndpoint, d.JWKSURI
		if d.Discovery && (tokenEndpoint == "" || jwksURI == "") {
			dctx, cancel := context.WithTimeout(ctx, d.Timeout.D())
			md, err := discoverer.Discover(dctx, d.Issuer)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: discovery of %s: %w", field, d.Issuer, err))
				continue
			}
			if tokenEndpoint == "" {
				tokenEndpoint = md.TokenEndpoint
			}
			if jwksURI == "" {
				jwksURI = md.JWKSURI
			}
			for name, u := range map[string]string{"token_endpoint": tokenEndpoint, "jwks_uri": jwksURI} {
				if u != "" && !secureURL(u, d.AllowInsecureHTTP) {
					errs = append(errs, fmt.Errorf("%s: discovered %s %q is not https (set allow_insecure_http for loopback demos)", field, name, u))
				}
			}
		}
		var creds oauth.ClientCredentials
		if d.Kind == "" || d.Kind == string(broker.KindOAuth) {
			if creds, err = clientCredentials(field, d.Client, env, allowInsecureKeys); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		var keys *token.Verifier
		if jwksURI != "" {
			keys = token.NewRemoteVerifier(token.RemoteKeys{URL: jwksURI, Timeout: d.Timeout.D(), HTTPClient: httpClient,
				MinRefreshInterval: d.JWKSMinRefresh.D()}, nil)
		}
		out = append(out, broker.Domain{
			Name:               d.Name,
			Kind:               broker.TargetKind(d.Kind),
			AWS:                awsTarget(d, tokenEndpoint, httpClient, wrap),
			Azure:              azureTarget(d),
			GCP:                gcpTarget(d, httpClient, wrap),
			Issuer:             d.Issuer,
			TokenEndpoint:      tokenEndpoint,
			JWKSURI:            jwksURI,
			Creds:              creds,
			Keys:               verifierOrNil(keys),
			VerifySubjectToken: d.VerifySubjectToken,
			Endpoint:           endpoint,
			Timeout:            d.Timeout.D(),
			Cache:              broker.CachePolicy{Enabled: d.Cache.Enabled, Margin: d.Cache.Margin.D()},
			Resilience: broker.Resilience{
				MaxAttempts:     d.MaxAttempts,
				BreakerFailures: d.CircuitBreaker.Failures,
				BreakerCooldown: d.CircuitBreaker.Cooldown.D(),
			},
			SubjectTokenType:   d.TokenExchange.SubjectTokenType,
			RequestedTokenType: d.TokenExchange.RequestedTokenType,
			Assertion: broker.AssertionPolicy{
				Audience:    d.Assertion.Audience,
				AllowedAlgs: d.Assertion.AllowedAlgs,
				MaxLifetime: d.Assertion.MaxLifetime.D(),
				ClockSkew:   d.Assertion.ClockSkew.D(),
				AllowReuse:  d.Assertion.AllowReuse,
				AllowedTyp:  d.Assertion.AllowedTyp,
				AgeRule:     d.Assertion.LifetimeRule == "age",
				// verify_signature: false (default true)
				SkipSignature: d.Assertion.VerifySignature != nil && !*d.Assertion.VerifySignature,
			},
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// buildCacheKeys reads the token cache keys (base64 of 32 bytes).
func buildCacheKeys(c config.Cache, env func(string) (string, bool)) ([]broker.CacheKey, error) {
	var keys []broker.CacheKey
	for i, k := range c.Keys {
		field := fmt.Sprintf("cache.keys[%d]", i)
		v, err := config.Secret(field, k.SecretEnv, k.SecretFile, env)
		if err != nil {
			return nil, err
		}
		secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
		if err != nil || len(secret) != 32 {
			return nil, fmt.Errorf("%s: the secret must be the base64 of 32 bytes (openssl rand -base64 32)", field)
		}
		keys = append(keys, broker.CacheKey{ID: k.ID, Secret: secret})
	}
	return keys, nil
}

// verifierOrNil keeps a nil *token.Verifier a nil interface.
func verifierOrNil(v *token.Verifier) broker.Verifier {
	if v == nil {
		return nil
	}
	return v
}

// clientTrusting is an HTTP client that trusts only the CAs in caFile.
func clientTrusting(caFile string) (*http.Client, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%s: no PEM certificate found", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}, nil
}

func buildPolicy(entries []config.PolicyEntry) broker.Policy {
	var p broker.Policy
	for _, e := range entries {
		g := broker.CallerGrant{Caller: e.Caller, Roles: e.Roles}
		for _, c := range e.Chains {
			g.Chains = append(g.Chains, broker.ChainGrant{Source: c.Source, Target: c.Target, Scopes: c.Scopes, SubjectAZP: c.SubjectAZP,
				Resources: c.Resources, Audiences: c.Audiences, ActorToken: c.AllowActorToken, When: c.When})
		}
		p.Callers = append(p.Callers, g)
	}
	return p
}

// buildAuth builds the caller authenticator; jwtKeys, when set, verifies
// caller JWTs (the previous configuration's verifier, kept on a reload
// that did not change callers.jwt). It returns the JWT verifier in use.
func buildAuth(c config.Callers, jwtKeys *token.Verifier) (*auth.Authenticator, *token.Verifier, error) {
	ac := auth.Config{AllowAnonymous: c.AllowAnonymous, MTLS: c.MTLS}
	for _, k := range c.APIKeys {
		ac.APIKeys = append(ac.APIKeys, auth.APIKey{Name: k.Name, SHA256: k.SHA256})
	}
	if j := c.JWT; j != nil {
		if jwtKeys == nil {
			var hc *http.Client
			if j.CAFile != "" {
				var err error
				if hc, err = clientTrusting(j.CAFile); err != nil {
					return nil, nil, fmt.Errorf("callers.jwt.ca_file: %w", err)
				}
			}
			jwtKeys = token.NewRemoteVerifier(token.RemoteKeys{URL: j.JWKSURI, HTTPClient: hc}, nil)
		}
		ac.JWT = &auth.JWTIssuer{
			Issuer: j.Issuer, Audience: j.Audience, CallerClaim: j.CallerClaim, ClockSkew: j.ClockSkew.D(),
			Keys: jwtKeys,
		}
	} else {
		jwtKeys = nil
	}
	a, err := auth.New(ac)
	return a, jwtKeys, err
}

func secureURL(u string, allowHTTP bool) bool {
	return strings.HasPrefix(u, "https://") || allowHTTP && strings.HasPrefix(u, "http://")
}

func clientCredentials(field string, c config.Client, env func(string) (string, bool), allowInsecureKeys bool) (oauth.ClientCredentials, error) {
	creds := oauth.ClientCredentials{ClientID: c.ClientID, Method: oauth.AuthMethod(c.AuthMethod)}
	switch creds.Method {
	case oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost:
		s, err := config.Secret(field+".client", c.SecretEnv, c.SecretFile, env)
		if err != nil {
			return creds, err
		}
		creds.Secret = s
	case oauth.AuthPrivateKeyJWT:
		// Refused when its group or others may read it (chmod 600).
		pemBytes, err := keyset.ReadPrivateKeyFile(c.PrivateKeyFile, allowInsecureKeys)
		if err != nil {
			return creds, fmt.Errorf("%s.client.private_key_file: %w", field, err)
		}
		signer, err := token.LoadSignerPEM(pemBytes, c.SigningAlg, c.KeyID)
		if err != nil {
			return creds, fmt.Errorf("%s.client.private_key_file: %w", field, err)
		}
		creds.Signer = signer
	}
	return creds, nil
}

func buildStore(cfg *config.File, env func(string) (string, bool), allowInsecureKeys bool) (store.Store, error) {
	if cfg.Store.Backend != "redis" {
		return memory.New(memory.Options{AuditRetention: cfg.Store.AuditRetention.D()}), nil
	}
	r := cfg.Store.Redis
	opts := redisstore.Options{KeyPrefix: r.KeyPrefix, AuditMaxLen: r.AuditMaxLen, AuditRetention: cfg.Store.AuditRetention.D(), OpTimeout: r.OpTimeout.D(),
		MinReplicasAck: r.MinReplicasAck, ReplicaAckTimeout: r.ReplicaAckTimeout.D()}
	var uo *goredis.UniversalOptions
	tlsOn := r.TLS.Enabled
	if r.URL != "" {
		po, err := goredis.ParseURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("store.redis.url: %w", err)
		}
		if po.Password != "" { // also refused by config validation
			return nil, errors.New("store.redis.url: must not carry a password: use store.redis.password_env or password_file")
		}
		uo = &goredis.UniversalOptions{Addrs: []string{po.Addr}, DB: po.DB, Username: po.Username}
		tlsOn = tlsOn || po.TLSConfig != nil
	} else {
		uo = &goredis.UniversalOptions{Addrs: r.Addrs, MasterName: r.MasterName, DB: r.DB}
	}
	if tlsOn {
		tc, err := redisTLSConfig(r.TLS, allowInsecureKeys)
		if err != nil {
			return nil, err
		}
		uo.TLSConfig = tc
	}
	if r.Username != "" {
		uo.Username = r.Username
	}
	if r.PasswordEnv != "" || r.PasswordFile != "" {
		pw, err := config.Secret("store.redis", r.PasswordEnv, r.PasswordFile, env)
		if err != nil {
			return nil, err
		}
		uo.Password = pw
	}
	return redisstore.NewUniversal(uo, opts)
}

// redisTLSConfig is the client TLS configuration for Redis, its Sentinels
// and Cluster nodes: certificates verified against ca_file (else the system
// roots) and server_name (else each address's host, which tls.Dial fills
// in); never InsecureSkipVerify.
func redisTLSConfig(t config.RedisTLS, allowInsecureKeys bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pemBytes, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("store.redis.tls.ca_file: %s: no PEM certificate found", t.CAFile)
		}
	}
	if t.CertFile != "" {
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls.cert_file: %w", err)
		}
		keyPEM, err := keyset.ReadPrivateKeyFile(t.KeyFile, allowInsecureKeys)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls.key_file: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("store.redis.tls: cert_file and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// cloudClient is a cloud target's HTTP client: a copy of the domain's
// (base, its CA file; nil: a default client), following no redirect, its
// transport wrapped by wrap (tracing) when given.
func cloudClient(base *http.Client, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	hc := &http.Client{}
	if base != nil {
		c := *base
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if wrap != nil {
		rt := hc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		hc.Transport = wrap(rt)
	}
	return hc
}

// awsTarget is a kind aws domain's settings with its STS client (nil for
// other kinds): aws-sdk-go-v2's, at the configured endpoint, over the
// domain's HTTP client (its CA file), traced like the token endpoint calls,
// following no redirect.
func awsTarget(d config.Domain, endpoint string, base *http.Client, wrap func(http.RoundTripper) http.RoundTripper) *broker.AWSTarget {
	if d.Kind != string(broker.KindAWS) {
		return nil
	}
	hc := cloudClient(base, wrap)
	opts := broker.AWSSTSOptions(endpoint, d.AWS.Region)
	opts.HTTPClient = hc
	return &broker.AWSTarget{
		RoleARN:     d.AWS.RoleARN,
		Duration:    d.AWS.Duration.D(),
		ProviderURL: d.AWS.ProviderURL,
		ClientIDs:   d.AWS.ClientIDs,
		Client:      sts.New(opts),
	}
}

// azureTarget is a kind azure domain's settings (nil for other kinds).
func azureTarget(d config.Domain) *broker.AzureTarget {
	if d.Kind != string(broker.KindAzure) {
		return nil
	}
	a := &broker.AzureTarget{Tenant: d.Azure.Tenant, ClientID: d.Azure.ClientID, Scope: d.Azure.Scope, Audience: d.Azure.Audience}
	for _, c := range d.Azure.FederatedCredentials {
		a.FederatedCredentials = append(a.FederatedCredentials, broker.AzureFederatedCredential{Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience})
	}
	return a
}
