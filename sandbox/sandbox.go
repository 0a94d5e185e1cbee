// Package sandbox runs three small OAuth 2.0 authorization servers that
// imitate Keycloak closely enough for identity chaining
// (draft-ietf-oauth-identity-chaining): domain A issues subject tokens and ID
// tokens (password grant) and answers token exchange (RFC 8693) with a JWT
// whose aud is domain B, or with an ID-JAG
// (draft-ietf-oauth-identity-assertion-authz-grant) for domain C; domain B
// trusts A as an identity provider and answers the JWT authorization grant
// (RFC 7523) with Keycloak 26.5's checks and its own replay memory; domain C
// is a Keycloak 26.7 realm that takes ID-JAGs only (domain_c.go). Every
// realm accepts DPoP (RFC 9449) at its token endpoint and binds the tokens it
// issues to the proof's key; userinfo wants a proof of that key (dpop.go,
// userinfo.go). Both are real net/http servers on loopback, with Keycloak's URL
// layout (/realms/<name>/protocol/openid-connect/...), so that the one-command
// demo, the end-to-end tests and the benchmarks exercise the full HTTP path,
// and a real Keycloak is a configuration change away.
//
// Tests make the domains misbehave with SetMisbehaviour (bad tokens from A,
// error answers and delays from either), link and unlink users at B, and read
// counters (ExchangeCount, JWTBearerCount, Saw) to prove which calls were
// made, and LastAccepted to see what B accepted.
//
// Domain A can also play a source without token exchange whose access tokens
// carry two audiences, such as Auth0 (SetTokenExchange,
// SubjectTokenWithAudience), and domain B can trust more identity providers
// by issuer and JWKS URL, each with its own settings and user links
// (TrustIdentityProvider, LinkFor): the broker itself, when it signs its own
// assertions, or a test's own signer.
//
// With Options.CloudAddr it also runs imitations of three clouds' token
// services on one listener (Cloud: AWS STS, Google STS and IAM Credentials,
// the Microsoft Entra token endpoint), trusting domain A.
//
// Where Keycloak and the RFCs disagree, or Keycloak's behaviour would make the
// sandbox less useful, the sandbox's choice is documented on the identifier
// concerned (see the Desc* constants). The sandbox never logs tokens or
// secrets.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Default listen addresses, as in docs/design.md §5.
const (
	DefaultAAddr = "127.0.0.1:8181"
	DefaultBAddr = "127.0.0.1:8282"
)

// Realm (domain) names; they appear in the issuer URLs.
const (
	DomainAName = "domain-a"
	DomainBName = "domain-b"
)

// DefaultTokenLifetime is Keycloak's default access token lifespan.
const DefaultTokenLifetime = 300 * time.Second

// Fixed demo identities. The secrets are public on purpose: the sandbox is a
// demo and test fixture, never a production server.
const (
	// BrokerClientID is chainbroker's confidential client in both realms.
	BrokerClientID = "chainbroker"
	// BrokerSecretA is the broker's client secret at domain A.
	BrokerSecretA = "chainbroker-secret-a"
	// BrokerSecretB is the broker's client secret at domain B.
	BrokerSecretB = "chainbroker-secret-b"
	// AgentClientID is domain A's public client for the password grant
	// (direct access grants), used by demo callers to get subject tokens.
	AgentClientID = "sandbox-agent"
	// IdentityProviderAlias is the alias under which domain B knows domain A.
	IdentityProviderAlias = DomainAName
)

// Demo users: the same usernames and passwords in both realms, with
// different subject identifiers (Keycloak user ids) in each.
const (
	Alice         = "alice"
	AlicePassword = "alice"
	Bob           = "bob"
	BobPassword   = "bob"

	// AliceSubA is alice's sub in domain A.
	AliceSubA = "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c"
	// BobSubA is bob's sub in domain A.
	BobSubA = "7c9e0d1a-3b5f-4e62-8a1d-9f0e1d2c3b4a"
	// AliceSubB is alice's sub in domain B (linked to AliceSubA).
	AliceSubB = "c3d4e5f6-a7b8-4c9d-8e0f-112233445566"
	// BobSubB is bob's sub in domain B (linked to BobSubA).
	BobSubB = "d4e5f6a7-b8c9-4dae-9f10-223344556677"
)

// Options configure Start. The zero value runs the demo on the default ports.
type Options struct {
	// AAddr and BAddr are the listen addresses of domains A and B; ""
	// means DefaultAAddr / DefaultBAddr. Tests pass "127.0.0.1:0". The
	// issuer URL uses the host given here (an empty or unspecified host
	// becomes 127.0.0.1) and the port actually bound.
	AAddr, BAddr string
	// CAddr is the listen address of domain C; "" means DefaultCAddr,
	// except when AAddr asks for any free port (port 0): then C takes any
	// free port on AAddr's host too, so that tests need not name it.
	CAddr string
	// Logger receives one debug line per request (method, path, grant type,
	// status, OAuth error) and nothing secret; nil discards.
	Logger *slog.Logger
	// TokenLifetime is the lifetime of every access token both domains
	// issue (subject tokens, exchanged tokens, B's tokens); 0 means
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
	// KeyRefreshInterval is the minimum time between two fetches of an
	// identity provider's JWKS by domain B when an assertion names a kid it
	// does not know (Keycloak's minTimeBetweenRequests); 0 means
	// DefaultKeyRefreshInterval (10 s). Tests of key rotation set it low.
	KeyRefreshInterval time.Duration
	// CloudAddr is the listen address of the cloud imitations (Cloud);
	// unlike the domains' addresses, "" means none are started, so that
	// tests that do not use them leave DefaultCloudAddr free. The demo
	// passes DefaultCloudAddr.
	CloudAddr string
}

// Sandbox is a running pair of authorization servers.
type Sandbox struct {
	// A is domain A: subject tokens and token exchange.
	A *DomainA
	// B is domain B: the JWT authorization grant.
	B *DomainB
	// C is domain C: the ID-JAG receiver (Keycloak 26.7).
	C *DomainC
	// Cloud is the cloud imitations (AWS, Google, Entra), trusting domain
	// A; nil unless Options.CloudAddr is set.
	Cloud *Cloud

	closeOnce sync.Once
	closeErr  error
	stop      func() bool // stops the context.AfterFunc
}

// Start listens on both addresses, serves in background goroutines and
// returns at once. The servers stop when Close is called or ctx ends.
func Start(ctx context.Context, opts Options) (*Sandbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.AAddr == "" {
		opts.AAddr = DefaultAAddr
	}
	if opts.BAddr == "" {
		opts.BAddr = DefaultBAddr
	}
	if opts.CAddr == "" {
		opts.CAddr = DefaultCAddr
		if host, port, err := net.SplitHostPort(opts.AAddr); err == nil && port == "0" {
			opts.CAddr = net.JoinHostPort(host, "0")
		}
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = DefaultTokenLifetime
	}
	if opts.TokenLifetime < 0 {
		return nil, fmt.Errorf("sandbox: negative token lifetime %s", opts.TokenLifetime)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	lnA, err := listen(opts.AAddr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: domain A: %w", err)
	}
	lnB, err := listen(opts.BAddr)
	if err != nil {
		lnA.Close()
		return nil, fmt.Errorf("sandbox: domain B: %w", err)
	}
	lnC, err := listen(opts.CAddr)
	if err != nil {
		lnA.Close()
		lnB.Close()
		return nil, fmt.Errorf("sandbox: domain C: %w", err)
	}
	closeAll := func() {
		lnA.Close()
		lnB.Close()
		lnC.Close()
	}
	a, err := newDomainA(lnA, opts.AAddr, opts.TokenLifetime, log.With("realm", DomainAName))
	if err != nil {
		closeAll()
		return nil, err
	}
	b, err := newDomainB(lnB, opts.BAddr, opts.TokenLifetime, opts.KeyRefreshInterval, log.With("realm", DomainBName), a)
	if err != nil {
		closeAll()
		return nil, err
	}
	c, err := newDomainC(lnC, opts.CAddr, opts.TokenLifetime, opts.KeyRefreshInterval, log.With("realm", DomainCName), a)
	if err != nil {
		closeAll()
		return nil, err
	}
	// B is the default audience A may issue for the broker; C the default
	// audience of its ID-JAGs.
	a.AllowAudience(b.Issuer())
	a.AllowIDJAGAudience(c.Issuer(), BrokerClientID)

	s := &Sandbox{A: a, B: b, C: c}
	if opts.CloudAddr != "" {
		if s.Cloud, err = startCloud(opts.CloudAddr, log.With("realm", "cloud"), a); err != nil {
			lnA.Close()
			lnB.Close()
			lnC.Close()
			return nil, err
		}
	}
	a.serve(lnA)
	b.serve(lnB)
	c.serve(lnC)
	s.stop = context.AfterFunc(ctx, func() { _ = s.Close() })
	log.Info("sandbox started", "domain_a", a.Issuer(), "domain_b", b.Issuer(), "domain_c", c.Issuer())
	return s, nil
}

// Close shuts the servers down, cutting short any misbehaviour delay, and
// waits for their goroutines. It is safe to call more than once.
func (s *Sandbox) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			s.stop()
		}
		s.closeErr = errors.Join(s.A.shutdown(), s.B.shutdown(), s.C.shutdown())
		if s.Cloud != nil {
			s.closeErr = errors.Join(s.closeErr, s.Cloud.shutdown())
		}
	})
	return s.closeErr
}

// listen opens a TCP listener on addr.
func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(context.Background(), "tcp", addr)
}

// issuerBase returns "http://host:port" for a listener: the configured host
// (127.0.0.1 when empty or unspecified) and the port actually bound.
func issuerBase(configured string, ln net.Listener) string {
	host, _, err := net.SplitHostPort(configured)
	if err != nil || host == "" {
		host = "127.0.0.1"
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "http://" + net.JoinHostPort(host, port)
}
