// Package broker is the domain logic of identity chaining across trust domains
// (draft-ietf-oauth-identity-chaining): hop 1 exchanges the caller's subject
// token at the source domain (RFC 8693) for a JWT authorization grant, the
// broker validates that grant as the target domain would, marks its jti, and
// hop 2 presents it to the target domain (RFC 7523) for an access token. Every
// call leaves an audit event.
//
// The package knows no transport (gRPC, HTTP gateway) and no storage driver:
// it talks to token endpoints through TokenEndpoint and to state through the
// store interfaces.
package broker

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/singleflight"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// TokenEndpoint performs token requests (*oauth.Client).
type TokenEndpoint interface {
	Token(ctx context.Context, req oauth.Request) (*oauth.TokenResponse, error)
}

// Verifier verifies JWS signatures with a domain's keys (*token.Verifier).
type Verifier interface {
	Verify(ctx context.Context, compact string) (*token.Token, error)
}

// Domain is one trust domain as the broker uses it. Every URL comes from
// configuration or from discovery of the configured issuer, never from a token.
type Domain struct {
	Name   string
	Issuer string
	// Kind is what the domain is as a target (hop 2); zero: KindOAuth.
	Kind          TargetKind
	TokenEndpoint string
	JWKSURI       string // informational (ListDomains); Keys does the work
	Creds         oauth.ClientCredentials
	// Keys verifies tokens this domain issues. Required for a chain's source.
	Keys Verifier
	// VerifySubjectToken checks subject tokens from this domain before hop 1
	// (signature with Keys, iss, exp), so that a bad token is refused without
	// a call to the domain. Leave off for domains issuing opaque tokens.
	VerifySubjectToken bool
	// Endpoint, when set, performs this domain's token requests instead of
	// Config.Endpoint (e.g. a client trusting a private CA).
	Endpoint TokenEndpoint
	// Timeout bounds each call to this domain's token endpoint; 0: 10s.
	Timeout time.Duration
	// SubjectTokenType and RequestedTokenType are hop 1 defaults when this
	// domain is a source (both default to the access_token type).
	SubjectTokenType   string
	RequestedTokenType string
	// Assertion is how this domain, as a target, validates grants.
	Assertion AssertionPolicy
	// Resilience: retries and circuit breaker for this domain.
	Resilience Resilience
	// Cache: as a target, reuse its access tokens (opt-in).
	Cache CachePolicy
	// AWS configures a KindAWS target (required for that kind only).
	AWS *AWSTarget
	// Azure configures a KindAzure target (required for that kind only).
	Azure *AzureTarget
	// GCP configures a KindGCP target (required for that kind only).
	GCP *GCPTarget
}

// AssertionPolicy mirrors the target authorization server's checks of a JWT
// authorization grant. The zero value plus defaults matches Keycloak.
type AssertionPolicy struct {
	Audience    []string      // accepted `aud` values; default the domain's issuer
	AllowedAlgs []string      // default token.DefaultAllowedAlgs
	MaxLifetime time.Duration // bound on exp - iat; default 300s
	ClockSkew   time.Duration // default 0
	AllowReuse  bool          // accept assertions without jti, and skip replay marking
	AllowedTyp  []string      // JOSE typ values accepted, "" for none (case-insensitive); default DefaultAllowedTyp
	// AgeRule applies Keycloak's rule instead of the stricter default:
	// only the age (now - iat <= MaxLifetime) is bounded, not exp - iat.
	AgeRule bool
	// SkipSignature checks a grant's claims without its signature, for
	// sources that sign grants with keys they do not publish to clients
	// (Keycloak's "Validate Signatures" off). Only grants the broker
	// receives itself over its authenticated call to the source (token
	// exchange mode, a confidential client) are spared; New refuses a chain
	// into such a target from a source where the broker's client is public,
	// and warns at start-up. The zero value checks signatures.
	SkipSignature bool
}

// Chain is a permitted (source, target) route.
type Chain struct {
	Source string
	Target string
	// Mode is how hop 1 obtains the grant: ModeTokenExchange (the zero
	// value's default) or ModeIssue.
	Mode Mode
	// Profile is the grant's shape: ProfileJWTGrant (the zero value's
	// default).
	Profile Profile
	// AssertionLifetime bounds grants the broker issues (ModeIssue);
	// default 60s, never above the target's MaxLifetime.
	AssertionLifetime time.Duration
	// SubjectAudience: in ModeIssue, the subject token's aud must contain
	// one of these (the broker is its audience).
	SubjectAudience []string
	// SubjectTokenTyp: in ModeIssue, the JOSE typ header values accepted in
	// subject tokens ("" for none); default DefaultSubjectTokenTyp.
	SubjectTokenTyp []string
	// Transcription: what of the subject token reaches the grant.
	Transcription  Transcription
	Audience       string   // sent in hop 1; default the target's issuer
	Resource       []string // sent in hop 1
	ExchangeScopes []string // sent as scope in hop 1
	DefaultScopes  []string // requested in hop 2 when the caller names none
}

// Limits bound request inputs.
type Limits struct {
	MaxTokenBytes  int // default token.MaxTokenBytes (16 KiB)
	MaxScopes      int // default 32
	MaxResources   int // default 16
	MaxFieldLength int // scopes, resources, audience, names, token types; default 1024
}

// Config is everything a Broker needs.
type Config struct {
	Domains  []Domain
	Chains   []Chain
	Endpoint TokenEndpoint
	Replay   store.ReplayGuard
	Audit    store.AuditLog
	// Policy says which caller may use which chain; deny by default.
	Policy Policy
	Limits Limits
	Logger *slog.Logger // nil: discard
	// Observer receives chain and hop outcomes (metrics); nil: none.
	Observer Observer
	// Tracer traces chains and hops; nil: no tracing.
	Tracer trace.TracerProvider
	// Issuer is the broker's own issuer identity, needed by ModeIssue
	// chains and by `act` transcription in token exchange mode.
	Issuer *Issuer
	// Cache stores encrypted cached tokens, for targets with Cache.Enabled;
	// CacheKeys encrypt them (the first seals, all open).
	Cache     store.TokenCache
	CacheKeys []CacheKey
	// Now is the clock that decides validity (subject token and grant
	// expiry, issued grants and actor tokens, cache entries, circuit
	// breaker cooldowns) and stamps audit events; nil: time.Now. Tests
	// inject a fake clock (brokertest.Clock); durations are measured with
	// the real one.
	Now func() time.Time
	// Previous, on a configuration reload, is the broker being replaced;
	// the domains named in Unchanged (their configuration as before) keep
	// its circuit breakers, so that an open circuit stays open.
	Previous  *Broker
	Unchanged []string
}

// Observer is told what chains do, for metrics.
type Observer interface {
	// ChainFinished is called once per Chain call with its audit event.
	ChainFinished(ev *store.Event, d time.Duration)
	// HopFinished is called after each token endpoint call; upstreamError
	// is the OAuth error code the server answered, if any.
	HopFinished(domain, hop string, d time.Duration, upstreamError string)
	// CacheLookup is called for each token cache lookup of a target.
	CacheLookup(target string, hit bool)
}

type nopObserver struct{}

func (nopObserver) ChainFinished(*store.Event, time.Duration)         {}
func (nopObserver) HopFinished(string, string, time.Duration, string) {}
func (nopObserver) CacheLookup(string, bool)                          {}

// Broker runs chains. It is immutable after New and safe for concurrent use.
type Broker struct {
	domains  map[string]*Domain
	byIssuer map[string]*Domain
	chains   map[[2]string]*Chain
	order    []string // domain names in configuration order
	chainSeq []*Chain
	policy   *compiledPolicy
	breakers map[string]*breaker // by domain name
	endpoint TokenEndpoint
	replay   store.ReplayGuard
	audit    store.AuditLog
	limits   Limits
	log      *slog.Logger
	observer Observer
	tracer   trace.Tracer
	traced   bool // tracer is not the no-op one: spans record, so they are started with their context and attributes
	issuer   *Issuer
	cache    *tokenCache // nil unless a target caches
	now      func() time.Time
	subjects *memo[[sha256.Size]byte, subjectInfo]
	flight   singleflight.Group
}

// New checks cfg and returns a Broker. Problems are reported together.
func New(cfg Config) (*Broker, error) {
	b := &Broker{
		domains:  map[string]*Domain{},
		byIssuer: map[string]*Domain{},
		breakers: map[string]*breaker{},
		chains:   map[[2]string]*Chain{},
		endpoint: cfg.Endpoint,
		replay:   cfg.Replay,
		audit:    cfg.Audit,
		limits:   cfg.Limits,
		log:      cfg.Logger,
		observer: cfg.Observer,
		issuer:   cfg.Issuer,
		subjects: newMemo[[sha256.Size]byte, subjectInfo](subjectMemoSize),
		now:      cfg.Now,
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.observer == nil {
		b.observer = nopObserver{}
	}
	tp := cfg.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	b.tracer = tp.Tracer("github.com/chainbroker/chainbroker/broker")
	_, off := b.tracer.(noop.Tracer)
	b.traced = !off
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	setInt(&b.limits.MaxTokenBytes, token.MaxTokenBytes)
	setInt(&b.limits.MaxScopes, DefaultMaxScopes)
	setInt(&b.limits.MaxResources, DefaultMaxResources)
	setInt(&b.limits.MaxFieldLength, DefaultMaxFieldLength)

	var errs []error
	if cfg.Endpoint == nil || cfg.Replay == nil || cfg.Audit == nil {
		errs = append(errs, errors.New("broker: Endpoint, Replay and Audit are required"))
	}
	for i := range cfg.Domains {
		d := cfg.Domains[i] // copy: the broker owns its configuration
		if d.Name == "" || d.Issuer == "" || d.TokenEndpoint == "" {
			errs = append(errs, fmt.Errorf("broker: domain %d (%q): name, issuer and token endpoint are required", i, d.Name))
			continue
		}
		if _, dup := b.domains[d.Name]; dup {
			errs = append(errs, fmt.Errorf("broker: duplicate domain %q", d.Name))
			continue
		}
		if other, dup := b.byIssuer[d.Issuer]; dup {
			errs = append(errs, fmt.Errorf("broker: domains %q and %q share issuer %q", other.Name, d.Name, d.Issuer))
			continue
		}
		if !d.Kind.Valid() {
			errs = append(errs, fmt.Errorf("broker: domain %q: unknown kind %q", d.Name, d.Kind))
		}
		if d.Kind == "" {
			d.Kind = KindOAuth
		}
		var kindErrs []error
		ok := true
		switch d.Kind {
		case KindAWS:
			kindErrs, ok = ownKindSettings(d.Name, d.Kind, &d.AWS)
		case KindGCP:
			kindErrs, ok = ownKindSettings(d.Name, d.Kind, &d.GCP)
		case KindAzure:
			kindErrs, ok = ownKindSettings(d.Name, d.Kind, &d.Azure)
		}
		errs = append(errs, kindErrs...)
		if !ok {
			continue
		}
		if d.Timeout <= 0 {
			d.Timeout = DefaultDomainTimeout
		}
		if d.SubjectTokenType == "" {
			d.SubjectTokenType = oauth.TokenTypeAccessToken
		}
		if d.RequestedTokenType == "" {
			d.RequestedTokenType = oauth.TokenTypeAccessToken
		}
		d.Resilience.setDefaults()
		if d.Cache.Margin <= 0 {
			d.Cache.Margin = DefaultCacheMargin
		}
		if d.Cache.Enabled && b.cache == nil {
			c, err := newTokenCache(cfg.Cache, cfg.CacheKeys)
			if err != nil {
				errs = append(errs, err)
			}
			c.now = b.now
			b.cache = c
		}
		b.breakers[d.Name] = newBreaker(d.Resilience)
		if prev := cfg.Previous; prev != nil && slices.Contains(cfg.Unchanged, d.Name) && prev.breakers[d.Name] != nil {
			b.breakers[d.Name] = prev.breakers[d.Name]
		}
		p := &d.Assertion
		if len(p.Audience) == 0 && d.Kind.isCloud() {
			p.Audience = d.defaultCloudAudience()
		}
		if len(p.Audience) == 0 {
			p.Audience = []string{d.Issuer}
		}
		if len(p.AllowedAlgs) == 0 {
			p.AllowedAlgs = token.DefaultAllowedAlgs
		}
		if p.MaxLifetime <= 0 {
			p.MaxLifetime = DefaultMaxLifetime
		}
		if len(p.AllowedTyp) == 0 {
			p.AllowedTyp = DefaultAllowedTyp
		}
		b.domains[d.Name] = &d
		b.byIssuer[d.Issuer] = &d
		b.order = append(b.order, d.Name)
	}
	for i := range cfg.Chains {
		c := cfg.Chains[i]
		src, tgt := b.domains[c.Source], b.domains[c.Target]
		switch {
		case src == nil || tgt == nil:
			errs = append(errs, fmt.Errorf("broker: chain %d: unknown domain in %q -> %q", i, c.Source, c.Target))
			continue
		case src == tgt:
			errs = append(errs, fmt.Errorf("broker: chain %d: source and target are both %q", i, c.Source))
			continue
		case src.Keys == nil:
			errs = append(errs, fmt.Errorf("broker: chain %d: source domain %q has no verification keys (jwks_uri)", i, c.Source))
			continue
		case src.Kind.isCloud():
			errs = append(errs, fmt.Errorf("broker: chain %d: domain %q of kind %s cannot be a source", i, c.Source, src.Kind))
			continue
		}
		if _, dup := b.chains[[2]string{c.Source, c.Target}]; dup {
			errs = append(errs, fmt.Errorf("broker: duplicate chain %q -> %q", c.Source, c.Target))
			continue
		}
		if c.Audience == "" {
			c.Audience = tgt.Issuer
		}
		if c.Mode == "" {
			c.Mode = ModeTokenExchange
		}
		if !c.Profile.Valid() {
			errs = append(errs, fmt.Errorf("broker: chain %q -> %q: unknown profile %q", c.Source, c.Target, c.Profile))
		}
		if c.Profile == "" {
			c.Profile = ProfileJWTGrant
		}
		if c.Profile == ProfileIDJAG && tgt.Creds.Method == oauth.AuthNone {
			errs = append(errs, fmt.Errorf("broker: chain %q -> %q: profile id_jag presents the grant with client authentication: the broker's client at %q must be confidential", c.Source, c.Target, c.Target))
		}
		if tgt.Assertion.SkipSignature && c.Mode == ModeTokenExchange && src.Creds.Method == oauth.AuthNone {
			errs = append(errs, fmt.Errorf("broker: chain %q -> %q: %q skips grant signatures, which is safe only for grants received over an authenticated call: the broker's client at %q is public", c.Source, c.Target, c.Target, c.Source))
		}
		if c.AssertionLifetime <= 0 {
			c.AssertionLifetime = DefaultAssertionLifetime
		}
		switch c.Mode {
		case ModeTokenExchange:
			if len(c.SubjectTokenTyp) > 0 {
				errs = append(errs, fmt.Errorf("broker: chain %q -> %q: subject token typ is checked in issue mode only", c.Source, c.Target))
			}
		case ModeIssue:
			if len(c.SubjectAudience) == 0 {
				errs = append(errs, fmt.Errorf("broker: chain %q -> %q: issue mode needs the subject tokens' expected audience", c.Source, c.Target))
			}
			c.SubjectTokenTyp = slices.Clone(c.SubjectTokenTyp)
			for i, t := range c.SubjectTokenTyp {
				c.SubjectTokenTyp[i] = normTyp(t)
			}
		case ModeSubjectToken:
			if !tgt.Kind.isCloud() {
				errs = append(errs, fmt.Errorf("broker: chain %q -> %q: mode subject_token needs a cloud target (kind aws, azure or gcp)", c.Source, c.Target))
			}
		default:
			errs = append(errs, fmt.Errorf("broker: chain %q -> %q: unknown mode %q", c.Source, c.Target, c.Mode))
		}
		if (c.Mode == ModeIssue || c.Transcription.Act) && (cfg.Issuer == nil || cfg.Issuer.URL == "" || cfg.Issuer.Keys == nil) {
			errs = append(errs, fmt.Errorf("broker: chain %q -> %q: issue mode and act need the broker's issuer URL and keys", c.Source, c.Target))
		}
		for _, name := range c.Transcription.Claims {
			if slices.Contains(ReservedClaims, name) {
				errs = append(errs, fmt.Errorf("broker: chain %q -> %q: claim %q is set by the broker, not copied", c.Source, c.Target, name))
			}
		}
		if len(c.Transcription.Compute) > 0 && c.Mode != ModeIssue {
			errs = append(errs, fmt.Errorf("broker: chain %q -> %q: computed claims need issue mode", c.Source, c.Target))
		}
		c.Transcription.computed = nil
		for _, name := range slices.Sorted(maps.Keys(c.Transcription.Compute)) {
			prg, err := compileComputedClaim(name, c.Transcription.Compute[name])
			if err != nil {
				errs = append(errs, fmt.Errorf("broker: chain %q -> %q: computed claim %q: %w", c.Source, c.Target, name, err))
				continue
			}
			c.Transcription.computed = append(c.Transcription.computed, computedClaim{name: name, program: prg})
		}
		b.chains[[2]string{c.Source, c.Target}] = &c
		b.chainSeq = append(b.chainSeq, &c)
		if tgt.Assertion.AllowReuse {
			b.log.Warn("assertion reuse allowed: assertions without jti are accepted and replay markers are not written",
				"target_domain", tgt.Name)
		}
		if tgt.Assertion.SkipSignature {
			b.log.Warn("grant signatures not verified (verify_signature: false): the grants of token exchange chains into this target are trusted because the broker received them itself from the source over its authenticated call; a compromised source channel goes unnoticed",
				"source_domain", src.Name, "target_domain", tgt.Name)
		}
	}
	policy, perrs := compilePolicy(cfg.Policy, b)
	b.policy = policy
	errs = append(errs, perrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(cfg.Policy.Callers) == 0 {
		b.log.Warn("the policy grants no caller any chain: every chain will be refused")
	}
	return b, nil
}

func setInt(p *int, v int) {
	if *p <= 0 {
		*p = v
	}
}

// Domains returns the configured domains in configuration order (copies).
func (b *Broker) Domains() []Domain { // for operators; callers see DomainsFor
	out := make([]Domain, 0, len(b.order))
	for _, n := range b.order {
		out = append(out, *b.domains[n])
	}
	return out
}

// Chains returns the configured chains in configuration order (copies).
func (b *Broker) Chains() []Chain {
	out := make([]Chain, 0, len(b.chainSeq))
	for _, c := range b.chainSeq {
		out = append(out, *c)
	}
	return out
}

// ownKindSettings makes a cloud kind's settings (*p) the broker's own (a
// copy: the broker owns its configuration) and checks them; ok is false
// when the domain of that kind has none.
func ownKindSettings[T any, PT interface {
	*T
	setup() []error
}](name string, kind TargetKind, p *PT) (errs []error, ok bool) {
	if *p == nil {
		return []error{fmt.Errorf("broker: domain %q: kind %s needs its %s settings", name, kind, kind)}, false
	}
	c := **p
	*p = &c
	for _, err := range PT(&c).setup() {
		errs = append(errs, fmt.Errorf("broker: domain %q: %w", name, err))
	}
	return errs, true
}

// Hash returns the hex SHA-256 of s: how tokens and jtis appear in audit
// events and responses.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hexSum(&sum)
}

// hexSum is hex.EncodeToString(sum[:]) in one allocation (EncodeToString
// makes two: the bytes and the string). Cache hits hash on every call.
func hexSum(sum *[sha256.Size]byte) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	b.Grow(2 * len(sum))
	for _, c := range sum {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
	return b.String()
}
