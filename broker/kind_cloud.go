package broker

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// Cloud targets (docs/cloud-aws.md): hop 2 presents the grant to a cloud's
// token service instead of an RFC 7523 token endpoint. Each kind checks the
// grant first as its cloud will (kindChecks, called by checkClaims), each
// failure with its own reason, then calls the cloud (twoHops dispatches on
// Domain.Kind).

// Reasons of cloud targets.
const (
	// ReasonAWSProviderMismatch: the grant's iss is not the IAM OIDC
	// provider's URL (AWSTarget.ProviderURL).
	ReasonAWSProviderMismatch Reason = "AWS_PROVIDER_MISMATCH"
	// ReasonAWSAudienceInvalid: neither the grant's aud nor its azp is in
	// the provider's client-id list (AWSTarget.ClientIDs).
	ReasonAWSAudienceInvalid Reason = "AWS_AUDIENCE_INVALID"
	// ReasonAWSSubjectMissing: the grant has no sub.
	ReasonAWSSubjectMissing Reason = "AWS_SUBJECT_MISSING"
	// ReasonAWSRejected: AWS STS refused AssumeRoleWithWebIdentity
	// (InvalidIdentityToken, ExpiredTokenException, IDPRejectedClaim,
	// AccessDenied, ValidationError...; the code is in Error.Upstream).
	ReasonAWSRejected Reason = "AWS_STS_REJECTED"
)

// Hop names of cloud targets (hop 2), as reported in errors, logs and audit
// events; the audit event's grant type is the hop's operation.
const (
	HopAWSSTS = "aws_sts"
	// grantAWS is the audit event's grant_type of the AWS hop.
	grantAWS = "aws:AssumeRoleWithWebIdentity"
)

// isCloud reports whether k is one of the cloud kinds.
func (k TargetKind) isCloud() bool { return k == KindAWS || k == KindAzure || k == KindGCP }

// kindChecks applies the target kind's own checks to a verified grant,
// before the generic ones (checkClaims); nil for KindOAuth.
func kindChecks(tok *token.Token, src, tgt *Domain) *Error {
	switch tgt.Kind {
	case KindAWS:
		return awsChecks(tok, src, tgt)
	case KindAzure:
		return azureChecks(tok, src, tgt)
	case KindGCP:
		return gcpChecks(tok, src, tgt)
	}
	return nil
}

// defaultCloudAudience is the generic check's audience list for a cloud
// kind: the kind's own list, checked first by kindChecks.
func (d *Domain) defaultCloudAudience() []string {
	switch d.Kind {
	case KindAWS:
		return d.AWS.ClientIDs
	case KindAzure:
		return []string{d.Azure.Audience}
	case KindGCP:
		return d.GCP.AllowedAudiences
	}
	return nil
}

// cloudCall runs one call to a cloud's token service as call does for
// token endpoints: the domain's timeout, a span, the circuit breaker, the
// hop in the audit event, the observer. fn returns the cloud's error
// already mapped to an *Error whose Err wraps oauth.ErrUnavailable for
// outages (what the breaker counts and resilience retries).
func (r *chainRun) cloudCall(ctx context.Context, d *Domain, hop, grantType string, fn func(ctx context.Context) *Error) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	ctx, span := r.b.tracer.Start(ctx, "chainbroker.hop."+hop, trace.WithAttributes(
		attribute.String("chainbroker.domain", d.Name), attribute.String("chainbroker.kind", string(d.Kind))))
	defer span.End()
	br := r.b.breakers[d.Name]
	if !br.allow(r.b.now()) {
		return &Error{Reason: ReasonUpstreamCircuitOpen, Hop: hop,
			Message: d.Name + " is failing; calls to it are suspended for up to " + d.Resilience.BreakerCooldown.String()}
	}
	start := time.Now()
	e := fn(ctx)
	elapsed := time.Since(start)
	r.ev.Hops = append(r.ev.Hops, store.Hop{Domain: d.Name, Endpoint: d.TokenEndpoint, GrantType: grantType, Duration: elapsed})
	upstream := ""
	if e != nil && e.Upstream != nil {
		upstream = e.Upstream.Code
	}
	r.b.observer.HopFinished(d.Name, hop, elapsed, upstream)
	var err error
	if e != nil {
		err = e
	}
	r.recordOutcome(parent, br, d.Name, err)
	if e == nil {
		return nil
	}
	span.SetStatus(codes.Error, "cloud token service call failed")
	if parent.Err() != nil && e.Reason == ReasonUpstreamUnavailable {
		return &Error{Reason: EndedReason(parent.Err()), Hop: hop, Message: "the call ended during the " + hop + " at " + d.Name, Err: e.Err}
	}
	e.Hop = hop
	return e
}

// cloudUnavailable is an outage of a cloud's token service: retryable.
func cloudUnavailable(d *Domain, hop string, up *oauth.Error, cause error) *Error {
	msg := d.Name + " is unavailable for the " + hop
	if up != nil {
		msg += ": " + upstreamText(up)
	}
	return &Error{Reason: ReasonUpstreamUnavailable, Upstream: up, Message: msg, Err: errors.Join(oauth.ErrUnavailable, cause)}
}

// CloudIssuer is the issuer identifier of a cloud target named name whose
// configuration gives none: it names the target in audit events and
// replay keys, and matches no token.
func CloudIssuer(k TargetKind, name string) string {
	return "urn:chainbroker:" + string(k) + ":" + name
}

// subjectAsGrant is the grant of a ModeSubjectToken chain: the subject
// token itself, validated as a grant from the source would be (signature
// with the source's keys, then the cloud's checks and the generic ones)
// and marked against replay. There is no hop 1.
func (r *chainRun) subjectAsGrant(ctx context.Context, src, tgt *Domain) (string, error) {
	tok, err := r.validate(ctx, src, tgt, r.req.SubjectToken)
	if err != nil {
		return "", err
	}
	r.recordActor(tok)
	if err := r.markReplay(ctx, tgt, tok); err != nil {
		return "", err
	}
	return r.req.SubjectToken, nil
}
