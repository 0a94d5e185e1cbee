package broker

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chainbroker/chainbroker/internal/deadline"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
)

// call posts one token request to d and records the hop, mapping the
// outcome to an *Error on failure.
func (r *chainRun) call(ctx context.Context, d *Domain, hop, grantType string, form map[string][]string, header map[string][]string) (*oauth.TokenResponse, error) {
	parent := ctx
	ctx, cancel := deadline.Within(ctx, d.Timeout)
	defer cancel()
	span := noSpan
	if r.b.traced { // a no-op tracer's span records nothing: no context or attributes for it
		ctx, span = r.b.tracer.Start(ctx, hopSpanName(hop), trace.WithAttributes(
			attribute.String("chainbroker.domain", d.Name), attribute.String("oauth.grant_type", grantType)))
	}
	defer span.End()
	start := time.Now()
	endpoint := r.b.endpoint
	if d.Endpoint != nil {
		endpoint = d.Endpoint
	}
	br := r.b.breakers[d.Name]
	if !br.allow(r.b.now()) {
		return nil, &Error{Reason: ReasonUpstreamCircuitOpen, Hop: hop,
			Message: d.Name + " is failing; calls to it are suspended for up to " + d.Resilience.BreakerCooldown.String()}
	}
	resp, err := endpoint.Token(ctx, oauth.Request{Endpoint: d.TokenEndpoint, Creds: d.Creds, Form: form, Header: header})
	elapsed := time.Since(start)
	if r.ev.Hops == nil {
		r.ev.Hops = make([]store.Hop, 0, 2) // a chain's two hops, one allocation
	}
	r.ev.Hops = append(r.ev.Hops, store.Hop{
		Domain: d.Name, Endpoint: d.TokenEndpoint, GrantType: grantType, Duration: elapsed,
	})
	var oe *oauth.Error
	var ue *oauth.UnavailableError
	upstream := "" // the server's OAuth error, refusal or outage
	switch {
	case errors.As(err, &oe):
		upstream = truncate(oe.Code)
	case errors.As(err, &ue) && ue.OAuth != nil:
		upstream = truncate(ue.OAuth.Code)
	}
	r.b.observer.HopFinished(d.Name, hop, elapsed, upstream)
	r.recordOutcome(parent, br, d.Name, err)
	if err == nil {
		return resp, nil
	}
	span.SetStatus(codes.Error, "token endpoint call failed")
	if parent.Err() != nil && oe == nil { // the caller's deadline or cancellation, not the domain's failure
		return nil, &Error{Reason: EndedReason(parent.Err()), Hop: hop, Message: "the call ended during the " + hop + " at " + d.Name, Err: err}
	}
	switch {
	case oe != nil && oe.Code == oauth.ErrorUseDPoPNonce:
		return nil, dpopNonceError(d, hop, oe, err)
	case oe != nil:
		// Whatever the HTTP status: some servers answer a refusal that
		// depends on the user with 500 and an OAuth error body. A known
		// refusal gets its own reason (e.g. a replay the target caught that
		// the broker's own guard did not: another broker fleet) or names
		// the setting at fault (UpstreamReason).
		up := boundedUpstream(oe)
		reason, cause := UpstreamReason(hop, up)
		return nil, &Error{Reason: reason, Hop: hop, Upstream: up, UpstreamCause: cause,
			Message: d.Name + " refused the " + hop + ": " + upstreamText(up), Err: err}
	case errors.Is(err, oauth.ErrConfig):
		return nil, &Error{Reason: ReasonInternal, Hop: hop, Message: "the broker's client for " + d.Name + " is misconfigured", Err: err}
	case errors.Is(err, oauth.ErrBadResponse):
		return nil, &Error{Reason: ReasonUpstreamBadResponse, Hop: hop, Message: d.Name + " answered the " + hop + " with an invalid response", Err: err}
	case ue != nil && ue.OAuth != nil: // e.g. 503 temporarily_unavailable
		up := boundedUpstream(ue.OAuth)
		return nil, &Error{Reason: ReasonUpstreamUnavailable, Hop: hop, Upstream: up,
			Message: d.Name + " is unavailable for the " + hop + ": " + upstreamText(up), Err: err}
	default: // oauth.ErrUnavailable, deadlines, anything else on the wire
		return nil, &Error{Reason: ReasonUpstreamUnavailable, Hop: hop, Message: d.Name + " is unavailable for the " + hop, Err: err}
	}
}

// hopSpanName is "chainbroker.hop." + hop, without building the string
// for the two hops of every chain.
func hopSpanName(hop string) string {
	switch hop {
	case HopTokenExchange:
		return "chainbroker.hop." + HopTokenExchange
	case HopJWTBearer:
		return "chainbroker.hop." + HopJWTBearer
	}
	return "chainbroker.hop." + hop
}

// recordOutcome tells d's breaker how a call went. Only outages count
// against a domain (errors wrapping oauth.ErrUnavailable: unreachable, timed
// out, 429, 5xx without an OAuth error body, temporarily_unavailable), not
// its refusals, not its invalid answers (retrying would not help), and not a
// caller who gave up (its context ended, not the domain's timeout). One
// chain's failure counts once per domain however many attempts it makes,
// so that one chain's retries cannot open the circuit for everyone; a
// failed half-open probe still reopens it.
func (r *chainRun) recordOutcome(parent context.Context, br *breaker, domain string, err error) {
	outage := err != nil && errors.Is(err, oauth.ErrUnavailable)
	switch {
	case parent.Err() != nil, errors.Is(err, oauth.ErrConfig): // no verdict on the domain
		br.release()
	case outage && slices.Contains(r.breakerCounted, domain):
		br.repeatFailure(r.b.now())
	case outage:
		r.breakerCounted = append(r.breakerCounted, domain)
		br.record(false, r.b.now())
	default:
		br.record(true, r.b.now())
	}
}

// boundedUpstream is the server's OAuth error as the caller and the audit
// see it: code and URI bounded like any echoed text (128 bytes), the
// description to MaxUpstreamDescriptionBytes (512 bytes), all valid UTF-8.
func boundedUpstream(oe *oauth.Error) *oauth.Error {
	return &oauth.Error{StatusCode: oe.StatusCode, Code: truncate(oe.Code),
		Description: BoundText(oe.Description, MaxUpstreamDescriptionBytes), URI: truncate(oe.URI)}
}

func upstreamText(oe *oauth.Error) string {
	if oe.Description == "" {
		return oe.Code
	}
	return oe.Code + ": " + oe.Description
}
