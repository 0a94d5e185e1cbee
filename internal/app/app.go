// Package app turns a validated configuration into a running chainbroker:
// it resolves secrets, discovers domains, builds the store, the broker and the
// server, and serves until its context ends. Both `chainbroker serve` and
// `chainbroker sandbox` go through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	redisstore "github.com/chainbroker/chainbroker/store/redis"
	"github.com/chainbroker/chainbroker/token"
)

// Options are the process-level inputs besides the configuration.
type Options struct {
	// LookupEnv resolves *_env secrets; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	Logger    *slog.Logger
}

// App is a built, not yet serving, chainbroker.
type App struct {
	Config *config.File
	Broker *broker.Broker
	Store  store.Store
	Server *server.Server
	log    *slog.Logger
}

// Build resolves secrets, runs discovery for domains that ask for it, and
// builds the store, the broker and the server. Close releases the store.
func Build(ctx context.Context, cfg *config.File, opts Options) (*App, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client := oauth.NewClient(oauth.ClientOptions{UserAgent: "chainbroker"})
	domains, err := buildDomains(ctx, cfg, client, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	st, err := buildStore(cfg, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	chains := make([]broker.Chain, 0, len(cfg.Chains))
	for _, c := range cfg.Chains {
		chains = append(chains, broker.Chain{
			Source: c.Source, Target: c.Target, Audience: c.Audience, Resource: c.Resource,
			ExchangeScopes: c.ExchangeScopes, DefaultScopes: c.DefaultScopes,
		})
	}
	b, err := broker.New(broker.Config{
		Domains:  domains,
		Chains:   chains,
		Endpoint: client,
		Replay:   st,
		Audit:    st,
		Limits: broker.Limits{
			MaxTokenBytes: cfg.Limits.MaxTokenBytes,
			MaxScopes:     cfg.Limits.MaxScopes,
			MaxResources:  cfg.Limits.MaxResources,
		},
		Logger: log,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := server.New(server.Config{
		Broker: b, Audit: st, Ready: st, Logger: log,
		ShutdownTimeout: cfg.Listen.ShutdownTimeout.D(),
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &App{Config: cfg, Broker: b, Store: st, Server: srv, log: log}, nil
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
	return a.Server.Serve(ctx, grpcLis, httpLis)
}

// Close releases the store.
func (a *App) Close() error { return a.Store.Close() }

func buildDomains(ctx context.Context, cfg *config.File, client *oauth.Client, env func(string) (string, bool)) ([]broker.Domain, error) {
	var errs []error
	out := make([]broker.Domain, 0, len(cfg.Domains))
	for i, d := range cfg.Domains {
		field := fmt.Sprintf("domains[%d]", i)
		tokenEndpoint, jwksURI := d.TokenEndpoint, d.JWKSURI
		if d.Discovery && (tokenEndpoint == "" || jwksURI == "") {
			dctx, cancel := context.WithTimeout(ctx, d.Timeout.D())
			md, err := client.Discover(dctx, d.Issuer)
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
		creds, err := credentials(field, d.Client, env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var keys broker.Verifier
		if jwksURI != "" {
			keys = token.NewRemoteVerifier(token.RemoteKeys{URL: jwksURI, Timeout: d.Timeout.D()}, nil)
		}
		out = append(out, broker.Domain{
			Name:               d.Name,
			Issuer:             d.Issuer,
			TokenEndpoint:      tokenEndpoint,
			JWKSURI:            jwksURI,
			Creds:              creds,
			Keys:               keys,
			Timeout:            d.Timeout.D(),
			SubjectTokenType:   d.TokenExchange.SubjectTokenType,
			RequestedTokenType: d.TokenExchange.RequestedTokenType,
			Assertion: broker.AssertionPolicy{
				Audience:    d.Assertion.Audience,
				AllowedAlgs: d.Assertion.AllowedAlgs,
				MaxLifetime: d.Assertion.MaxLifetime.D(),
				ClockSkew:   d.Assertion.ClockSkew.D(),
				AllowReuse:  d.Assertion.AllowReuse,
			},
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func secureURL(u string, allowHTTP bool) bool {
	return strings.HasPrefix(u, "https://") || allowHTTP && strings.HasPrefix(u, "http://")
}

func credentials(field string, c config.Client, env func(string) (string, bool)) (oauth.ClientCredentials, error) {
	creds := oauth.ClientCredentials{ClientID: c.ClientID, Method: oauth.AuthMethod(c.AuthMethod)}
	switch creds.Method {
	case oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost:
		s, err := config.Secret(field+".client", c.SecretEnv, c.SecretFile, env)
		if err != nil {
			return creds, err
		}
		creds.Secret = s
	case oauth.AuthPrivateKeyJWT:
		pemBytes, err := os.ReadFile(c.PrivateKeyFile)
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

func buildStore(cfg *config.File, env func(string) (string, bool)) (store.Store, error) {
	if cfg.Store.Backend != "redis" {
		return memory.New(memory.Options{}), nil
	}
	r := cfg.Store.Redis
	opts := redisstore.Options{KeyPrefix: r.KeyPrefix, AuditMaxLen: r.AuditMaxLen, OpTimeout: r.OpTimeout.D()}
	var uo *goredis.UniversalOptions
	if r.URL != "" {
		po, err := goredis.ParseURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("store.redis.url: %w", err)
		}
		uo = &goredis.UniversalOptions{Addrs: []string{po.Addr}, DB: po.DB, Username: po.Username,
			Password: po.Password, TLSConfig: po.TLSConfig}
	} else {
		uo = &goredis.UniversalOptions{Addrs: r.Addrs, MasterName: r.MasterName, DB: r.DB}
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
