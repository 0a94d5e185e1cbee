package broker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// Chain runs both hops. On failure it returns an *Error; either way an audit
// event is written (when the audit log is reachable), and no token is ever
// returned unless its event was recorded.
func (b *Broker) Chain(ctx context.Context, req Request) (*Result, error) {
	span := noSpan
	if b.traced { // a no-op tracer's span records nothing: no context for it
		ctx, span = b.tracer.Start(ctx, "chainbroker.Chain")
	}
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
	if span.IsRecording() { // the attributes' slice is not built for a span nobody records
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
	}
	b.observer.ChainFinished(&run.ev, time.Since(run.start))
	return res, err
}

// noSpan is the span of a chain when tracing is off (boxed once).
var noSpan trace.Span = noop.Span{}

// chainRun is the state of one Chain call.
type chainRun struct {
	b     *Broker
	req   Request
	start time.Time
	ev    store.Event

	subjectExp   time.Time        // the subject token's exp, when it is a JWT
	subject      *token.Token     // the verified subject token, when verified
	chain        *Chain           // the chain run, once parsed
	dpop         *token.DPoPProof // the caller's verified DPoP proof for the target (dpop.go)
	hit          bool             // answered from the token cache
	leaderResult *Result          // the result of the chain this call ran for the cache

	breakerCounted []string // domains whose breaker already counted this chain's failure (resilience.go)
}

func (r *chainRun) do(ctx context.Context) (*Result, error) {
	src, tgt, chain, err := r.parse()
	if err != nil {
		return nil, err
	}
	r.chain = chain
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
	policyGrant, err := r.applies(ctx, allowed, src, tgt, chain)
	if err != nil {
		return nil, err
	}
	if verify {
		if err := checkSubject(policyGrant, r.subject); err != nil {
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
	if err := r.checkDPoP(ctx, src, tgt, chain); err != nil {
		return nil, err
	}
	if tgt.Cache.Enabled && r.b.cache != nil {
		return r.cached(ctx, src, tgt, chain)
	}
	return r.twoHops(ctx, src, tgt, chain)
}

// twoHops runs hop 1 and hop 2. A chain whose hop 2 could not reach the target
// retries hop 2 with the same assertion when the request was never sent
// (connection refused: the target cannot have seen it; the broker's replay
// guard is not asked again, it marked this jti for this chain), and starts
// again from hop 1 otherwise: an assertion the target may have seen is
// never sent twice.
func (r *chainRun) twoHops(ctx context.Context, src, tgt *Domain, chain *Chain) (*Result, error) {
	var assertion string
	for attempt := 1; ; attempt++ {
		if assertion == "" {
			var err error
			if assertion, err = r.grant(ctx, src, tgt, chain); err != nil {
				return nil, err
			}
		}
		res, err := r.present(ctx, tgt, chain, assertion)
		if err == nil || !retryable(err) || attempt >= tgt.Resilience.MaxAttempts || !backoff(ctx, attempt, errors.Unwrap(err)) {
			return res, err
		}
		if !errors.Is(err, oauth.ErrNotSent) {
			if r.dpop != nil {
				// The target may have seen the caller's one DPoP proof too,
				// and the broker cannot make another.
				return res, err
			}
			assertion = "" // the target may have seen it
		}
	}
}

// present performs hop 2 for the target's kind.
func (r *chainRun) present(ctx context.Context, tgt *Domain, chain *Chain, assertion string) (*Result, error) {
	switch tgt.Kind {
	case KindAWS:
		return r.assumeRole(ctx, tgt, assertion)
	case KindAzure:
		return r.entraToken(ctx, tgt, assertion)
	case KindGCP:
		return r.googleToken(ctx, tgt, assertion)
	}
	return r.jwtBearer(ctx, tgt, chain, assertion)
}

// grant obtains a JWT authorization grant for the target (hop 1): issued by
// the broker itself, or exchanged at the source, validated as the target
// would and marked against replay.
func (r *chainRun) grant(ctx context.Context, src, tgt *Domain, chain *Chain) (string, error) {
	if chain.Mode == ModeIssue {
		// A fresh random jti from the broker itself: nothing to replay-check.
		return r.issue(ctx, src, tgt, chain)
	}
	if chain.Mode == ModeSubjectToken {
		return r.subjectAsGrant(ctx, src, tgt)
	}
	assertion, err := r.exchange(ctx, src, chain)
	if err != nil {
		return "", err
	}
	tok, err := r.validate(ctx, src, tgt, assertion)
	if err != nil {
		return "", err
	}
	if err := r.checkGrantBinding(tok, src); err != nil {
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
	if c := res.AWSCredentials; c != nil { // a hit hands out the same key
		r.ev.AWSAccessKeyIDHash = Hash(c.AccessKeyID)
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
	switch grantType {
	case oauth.GrantTypeJWTBearer:
		return HopJWTBearer
	case grantAWS:
		return HopAWSSTS
	case grantAzure:
		return HopAzure
	case grantGCPSTS:
		return HopGCPSTS
	case grantGCPIAM:
		return HopGCPImpersonation
	}
	return HopTokenExchange
}
