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
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
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
	Name          string
	Issuer        string
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
}

// Chain is a permitted (source, target) route.
type Chain struct {
	Source string
	Target string
	// Mode is ModeTokenExchange (default) or ModeIssue.
	Mode string
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

// Request is one chain request.
type Request struct {
	RequestID        string // correlates the log line; optional
	Caller           string // authenticated caller name, recorded in the audit event
	CallerMethod     string // how the caller authenticated (api_key, mtls, jwt, anonymous), for policy conditions; optional
	SubjectToken     string
	SubjectTokenType string
	SourceDomain     string
	TargetDomain     string
	Scopes           []string
	Resources        []string
	Audience         string
	ActorToken       string
	ActorTokenType   string
}

// Result is a successful chain.
type Result struct {
	AccessToken     string
	IssuedTokenType string
	TokenType       string
	ExpiresIn       int64
	Scope           string
	AuditID         string
	Hops            []store.Hop
}

// Hash returns the hex SHA-256 of s: how tokens and jtis appear in audit
// events and responses.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Chain runs both hops. On failure it returns an *Error; either way an audit
// event is written (when the audit log is reachable), and no token is ever
// returned unless its event was recorded.
func (b *Broker) Chain(ctx context.Context, req Request) (*Result, error) {
	ctx, span := b.tracer.Start(ctx, "chainbroker.Chain")
	defer span.End()
	run := &chainRun{b: b, req: req, start: time.Now()}
	// Request fields reach the event (and, through it, logs, spans and
	// metrics) bounded: a domain name is replaced by the configured one once
	// it resolves, and until then is truncated.
	run.ev = store.Event{
		Caller:       req.Caller,
		TargetDomain: truncate(req.TargetDomain),
		SourceDomain: truncate(req.SourceDomain),
	}
	res, err := run.do(ctx)
	res, err = run.finish(ctx, res, err)
	span.SetAttributes(
		attribute.String("chainbroker.caller", run.ev.Caller),
		attribute.String("chainbroker.source_domain", run.ev.SourceDomain),
		attribute.String("chainbroker.target_domain", run.ev.TargetDomain),
		attribute.String("chainbroker.outcome", run.ev.Outcome.String()),
	)
	if run.ev.Reason != "" {
		span.SetAttributes(attribute.String("chainbroker.reason", run.ev.Reason))
		span.SetStatus(codes.Error, run.ev.Reason)
	}
	b.observer.ChainFinished(&run.ev, time.Since(run.start))
	return res, err
}

// chainRun is the state of one Chain call.
type chainRun struct {
	b     *Broker
	req   Request
	start time.Time
	ev    store.Event

	subjectExp   time.Time    // the subject token's exp, when it is a JWT
	subject      *token.Token // the verified subject token, when verified
	hit          bool         // answered from the token cache
	leaderResult *Result      // the result of the chain this call ran for the cache

	breakerCounted []string // domains whose breaker already counted this chain's failure (resilience.go)
}

func (r *chainRun) do(ctx context.Context) (*Result, error) {
	src, tgt, chain, err := r.parse()
	if err != nil {
		return nil, err
	}
	allowed, err := r.authorize(src, tgt, chain)
	if err != nil {
		return nil, err
	}
	verify := src.VerifySubjectToken || chain.Mode == ModeIssue
	if verify {
		if r.subject, err = r.verifySubject(ctx, src); err != nil {
			return nil, err
		}
	}
	grant, err := r.applies(ctx, allowed, src, tgt, chain)
	if err != nil {
		return nil, err
	}
	if verify {
		if err := checkSubject(grant, r.subject); err != nil {
			return nil, err
		}
		if chain.Mode == ModeIssue {
			if err := checkSubjectAudience(r.subject, chain); err != nil {
				return nil, err
			}
			if err := checkSubjectType(r.subject, src, chain); err != nil {
				return nil, err
			}
		}
	}
	if tgt.Cache.Enabled && r.b.cache != nil {
		return r.cached(ctx, src, tgt, chain)
	}
	return r.chain(ctx, src, tgt, chain)
}

// chain runs both hops. A chain whose hop 2 could not reach the target
// retries hop 2 with the same assertion when the request was never sent
// (connection refused: the target cannot have seen it; the broker's replay
// guard is not asked again, it marked this jti for this chain), and starts
// again from hop 1 otherwise: an assertion the target may have seen is
// never sent twice.
func (r *chainRun) chain(ctx context.Context, src, tgt *Domain, chain *Chain) (*Result, error) {
	var assertion string
	for attempt := 1; ; attempt++ {
		if assertion == "" {
			var err error
			if assertion, err = r.grant(ctx, src, tgt, chain); err != nil {
				return nil, err
			}
		}
		res, err := r.jwtBearer(ctx, tgt, chain, assertion)
		if err == nil || !retryable(err) || attempt >= tgt.Resilience.MaxAttempts || !backoff(ctx, attempt, errors.Unwrap(err)) {
			return res, err
		}
		if !errors.Is(err, oauth.ErrNotSent) {
			assertion = "" // the target may have seen it
		}
	}
}

// grant obtains a JWT authorization grant for the target (hop 1): issued by
// the broker itself, or exchanged at the source, validated as the target
// would and marked against replay.
func (r *chainRun) grant(ctx context.Context, src, tgt *Domain, chain *Chain) (string, error) {
	if chain.Mode == ModeIssue {
		// A fresh random jti from the broker itself: nothing to replay-check.
		return r.issue(ctx, src, tgt, chain)
	}
	assertion, err := r.exchange(ctx, src, chain)
	if err != nil {
		return "", err
	}
	tok, err := r.validate(ctx, src, tgt, assertion)
	if err != nil {
		return "", err
	}
	r.recordActor(tok)
	if err := r.markReplay(ctx, tgt, tok); err != nil {
		return "", err
	}
	return assertion, nil
}

// recordActor records the actor the verified grant names in its act claim
// (RFC 8693 §4.1), when it names one: what the target will see.
func (r *chainRun) recordActor(grant *token.Token) {
	raw, ok := grant.Claim("act")
	if !ok {
		return
	}
	var act struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(raw, &act) == nil && act.Sub != "" {
		r.ev.Actor = truncate(act.Sub)
	}
}

// parse checks the request and resolves its domains and chain.
func (r *chainRun) parse() (src, tgt *Domain, chain *Chain, err error) {
	req, lim := &r.req, r.b.limits
	var subjectSum [sha256.Size]byte
	if req.SubjectToken != "" {
		subjectSum = sha256.Sum256([]byte(req.SubjectToken))
		r.ev.SubjectTokenHash = hex.EncodeToString(subjectSum[:])
	}
	switch {
	case req.SubjectToken == "":
		return nil, nil, nil, invalid("subject_token", "required")
	case len(req.SubjectToken) > lim.MaxTokenBytes:
		return nil, nil, nil, invalid("subject_token", "longer than %d bytes", lim.MaxTokenBytes)
	case req.TargetDomain == "":
		return nil, nil, nil, invalid("target_domain", "required")
	case len(req.ActorToken) > lim.MaxTokenBytes:
		return nil, nil, nil, invalid("actor_token", "longer than %d bytes", lim.MaxTokenBytes)
	case req.ActorToken != "" && req.ActorTokenType == "":
		return nil, nil, nil, invalid("actor_token_type", "required with actor_token")
	case req.ActorToken == "" && req.ActorTokenType != "":
		return nil, nil, nil, invalid("actor_token", "required with actor_token_type")
	case len(req.Scopes) > lim.MaxScopes:
		return nil, nil, nil, invalid("scope", "more than %d scopes", lim.MaxScopes)
	case len(req.Resources) > lim.MaxResources:
		return nil, nil, nil, invalid("resource", "more than %d resources", lim.MaxResources)
	}
	for name, v := range map[string]string{
		"subject_token_type": req.SubjectTokenType, "source_domain": req.SourceDomain,
		"target_domain": req.TargetDomain, "audience": req.Audience, "actor_token_type": req.ActorTokenType,
	} {
		if len(v) > lim.MaxFieldLength {
			return nil, nil, nil, invalid(name, "longer than %d bytes", lim.MaxFieldLength)
		}
	}
	for _, s := range req.Scopes {
		if s == "" || len(s) > lim.MaxFieldLength || !validScopeToken(s) {
			return nil, nil, nil, invalid("scope", "%q is not a valid scope token (RFC 6749 §3.3)", truncate(s))
		}
	}
	for _, res := range req.Resources {
		if !absoluteURI(res) || len(res) > lim.MaxFieldLength {
			return nil, nil, nil, invalid("resource", "%q is not an absolute URI without fragment (RFC 8707)", truncate(res))
		}
	}

	r.ev.Scopes = req.Scopes // checked: at most MaxScopes of at most MaxFieldLength (else see finish)
	if req.ActorToken != "" {
		r.ev.ActorTokenHash = Hash(req.ActorToken) // the caller's own: audited whatever becomes of it
	}

	// Unverified: used only to pick a configured source domain and to name the
	// subject, as unverified, in audit events of chains that fail before a
	// token naming it verifies.
	unverified, ok := r.b.subjects.get(subjectSum)
	if !ok {
		unverified = parseSubject(req.SubjectToken)
		r.b.subjects.put(subjectSum, unverified)
	}
	if unverified.jwt {
		r.ev.UnverifiedSubject = truncate(unverified.subject)
		r.subjectExp = unverified.expiry
	}

	tgt = r.b.domains[req.TargetDomain]
	if tgt == nil {
		return nil, nil, nil, &Error{Reason: ReasonDomainUnknown, Field: "target_domain",
			Message: fmt.Sprintf("target_domain: unknown domain %q", truncate(req.TargetDomain))}
	}
	r.ev.TargetDomain = tgt.Name
	if req.SourceDomain != "" {
		src = r.b.domains[req.SourceDomain]
		if src == nil {
			return nil, nil, nil, &Error{Reason: ReasonDomainUnknown, Field: "source_domain",
				Message: fmt.Sprintf("source_domain: unknown domain %q", truncate(req.SourceDomain))}
		}
	} else {
		if !unverified.jwt {
			return nil, nil, nil, &Error{Reason: ReasonSourceUndetermined, Field: "source_domain",
				Message: "source_domain: required: the subject token is not a JWT, so its issuer cannot name the source"}
		}
		src = r.b.byIssuer[unverified.issuer]
		if src == nil {
			return nil, nil, nil, &Error{Reason: ReasonSourceUndetermined, Field: "source_domain",
				Message: fmt.Sprintf("source_domain: required: no configured domain has the subject token's issuer %q", truncate(unverified.issuer))}
		}
	}
	r.ev.SourceDomain = src.Name
	chain = r.b.chains[[2]string{src.Name, tgt.Name}]
	if chain == nil {
		return nil, nil, nil, fail(ReasonChainNotAllowed, "no chain is configured from %q to %q", src.Name, tgt.Name)
	}
	if len(req.Scopes) == 0 {
		r.ev.Scopes = chain.DefaultScopes
	}
	r.ev.Mode = chain.Mode
	return src, tgt, chain, nil
}

// verifySubject checks the subject token before hop 1 with the source's
// configured keys: signature, issuer and expiry. No URL is taken from the
// token: an unknown kid only refreshes the configured JWKS.
func (r *chainRun) verifySubject(ctx context.Context, src *Domain) (*token.Token, error) {
	tok, err := verifyKeys(ctx, src, r.req.SubjectToken) // waits for a close JWKS refetch (validate.go)
	if err != nil {
		if e := keysRefreshing(src, "subject_token", "", err); e != nil { // a key rotation at the source
			return nil, e
		}
		if errors.Is(err, token.ErrKeysUnavailable) {
			return nil, &Error{Reason: ReasonKeysUnavailable, Message: "the keys of " + src.Name + " could not be fetched", Err: err}
		}
		return nil, &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: does not verify with " + src.Name + "'s keys", Err: err}
	}
	c := &tok.Claims
	switch {
	case c.Issuer != src.Issuer:
		return nil, &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: iss " + quote(c.Issuer) + " is not " + src.Name + "'s issuer"}
	case c.Expiry.IsZero() || !r.b.now().Before(c.Expiry.Add(src.Assertion.ClockSkew)):
		return nil, &Error{Reason: ReasonSubjectTokenExpired, Field: "subject_token",
			Message: "subject_token: expired or without exp"}
	case !c.NotBefore.IsZero() && c.NotBefore.After(r.b.now().Add(src.Assertion.ClockSkew)):
		return nil, &Error{Reason: ReasonSubjectTokenInvalid, Field: "subject_token",
			Message: "subject_token: not valid yet (nbf)"}
	}
	r.verifiedSubject(c.Subject)
	return tok, nil
}

// verifiedSubject records sub, read from a token whose signature verified,
// as the event's subject. Only such a subject is in Event.Subject, the field
// audit filters match: a forged token names its subject in
// Event.UnverifiedSubject only.
func (r *chainRun) verifiedSubject(sub string) {
	r.ev.Subject = sub
	r.ev.SubjectVerified = sub != ""
	r.ev.UnverifiedSubject = ""
}

// finish records the audit event and returns the final answer.
func (r *chainRun) finish(ctx context.Context, res *Result, err error) (*Result, error) {
	r.ev.Time = r.b.now()
	if err != nil {
		e, ok := AsError(err)
		if !ok {
			e = &Error{Reason: ReasonInternal, Message: "internal error", Err: err}
		}
		if r.ev.Scopes == nil && len(r.req.Scopes) > 0 {
			// Refused before the scopes passed parse's checks: recorded
			// bounded in count and length.
			r.ev.Scopes = boundedList(r.req.Scopes, r.b.limits.MaxScopes)
		}
		r.ev.Outcome = store.OutcomeFailure
		r.ev.Reason = string(e.Reason)
		r.ev.Message = e.Message
		if e.Upstream != nil {
			r.ev.UpstreamError = truncate(e.Upstream.Code)
			r.ev.UpstreamErrorDescription = BoundText(e.Upstream.Description, MaxUpstreamDescriptionBytes)
		}
		// The audit context must survive the caller's cancellation: the
		// failure is recorded even when the caller gave up.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, aerr := r.b.audit.Append(actx, &r.ev); aerr != nil {
			r.b.log.ErrorContext(ctx, "audit append failed", "reason", e.Reason, "error", aerr)
		}
		r.log(ctx, e)
		return nil, e
	}
	r.ev.Outcome = store.OutcomeSuccess
	if r.hit {
		r.ev.Outcome = store.OutcomeCacheHit
	}
	id, aerr := r.b.audit.Append(ctx, &r.ev)
	if aerr != nil {
		e := &Error{Reason: ReasonStoreUnavailable, Message: "the audit trail is unavailable; no token is issued without its audit event", Err: aerr}
		r.log(ctx, e)
		return nil, e
	}
	res.AuditID = id
	res.Hops = r.ev.Hops
	r.log(ctx, nil)
	return res, nil
}

func (r *chainRun) log(ctx context.Context, e *Error) {
	level := slog.LevelInfo
	if e != nil {
		level = slog.LevelWarn
	}
	if !r.b.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", r.req.RequestID),
		slog.String("caller", r.ev.Caller),
		slog.String("source_domain", r.ev.SourceDomain),
		slog.String("target_domain", r.ev.TargetDomain),
		slog.String("subject", r.ev.Subject),
		slog.String("unverified_subject", r.ev.UnverifiedSubject),
		slog.Duration("duration", time.Since(r.start)),
	}
	seen := map[string]int{}
	for _, h := range r.ev.Hops {
		name := hopName(h.GrantType) + "_duration"
		if seen[name]++; seen[name] > 1 { // a retried hop: token_exchange_duration_2, ...
			name += "_" + strconv.Itoa(seen[name])
		}
		attrs = append(attrs, slog.Duration(name, h.Duration))
	}
	if e == nil {
		r.b.log.LogAttrs(ctx, level, "chain", append(attrs, slog.String("outcome", r.ev.Outcome.String()))...)
		return
	}
	attrs = append(attrs, slog.String("outcome", "failure"), slog.String("reason", string(e.Reason)), slog.String("message", e.Message))
	if e.Err != nil {
		attrs = append(attrs, slog.String("cause", BoundText(e.Err.Error(), 2*MaxUpstreamDescriptionBytes))) // an upstream description can be huge
	}
	r.b.log.LogAttrs(ctx, level, "chain", attrs...)
}

func hopName(grantType string) string {
	if grantType == oauth.GrantTypeJWTBearer {
		return HopJWTBearer
	}
	return HopTokenExchange
}

// validScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
			return false
		}
	}
	return true
}

func absoluteURI(s string) bool {
	i := strings.Index(s, ":")
	if i <= 0 || strings.ContainsAny(s, "# \t\r\n") {
		return false
	}
	for j, c := range s[:i] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || j > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// truncate bounds untrusted text echoed in messages and audit events (128
// bytes), on a character boundary and as valid UTF-8 (protobuf strings must
// be).
func truncate(s string) string { return BoundText(s, 128) }

// boundedList is at most n of list, each truncated: how a list from a
// request that may not have passed its checks is recorded.
func boundedList(list []string, n int) []string {
	if len(list) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(list), n))
	for _, s := range list[:min(len(list), n)] {
		out = append(out, truncate(s))
	}
	return out
}

func scopes(req []string, def []string) []string {
	if len(req) > 0 {
		return req
	}
	return slices.Clone(def)
}
