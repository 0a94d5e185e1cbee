package broker

// The aws target kind: AWS STS AssumeRoleWithWebIdentity
// (docs/cloud-aws.md), through aws-sdk-go-v2's STS client: its Query
// API encoding, XML decoding and typed errors (smithy.APIError) are AWS's
// own, which a hand-written client would only imitate. The SDK's own
// retries are off: the broker's resilience (retries of outages only,
// circuit breaker) applies as to every target.

import (
	"context"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// KindAWS: AWS STS AssumeRoleWithWebIdentity; the answer is temporary AWS
// credentials (Result.AWSCredentials).
const KindAWS TargetKind = "aws"

// AWS STS bounds and defaults.
const (
	// DefaultAWSAudience is the client ID AWS suggests registering on an IAM
	// OIDC provider.
	DefaultAWSAudience = "sts.amazonaws.com"
	// DefaultAWSDuration is DurationSeconds when none is configured (AWS's
	// own default).
	DefaultAWSDuration = time.Hour
	// MinAWSDuration and MaxAWSDuration bound DurationSeconds.
	MinAWSDuration = 15 * time.Minute
	MaxAWSDuration = 12 * time.Hour
	// maxAWSSessionName is RoleSessionName's maximum length.
	maxAWSSessionName = 64
)

// AWSTarget configures a KindAWS domain.
type AWSTarget struct {
	// RoleARN is the role to assume (arn:aws:iam::ACCOUNT:role/NAME).
	RoleARN string
	// Duration is DurationSeconds: MinAWSDuration..MaxAWSDuration, and at
	// most the role's maximum session; 0: DefaultAWSDuration.
	Duration time.Duration
	// ProviderURL is the IAM OIDC provider's URL: the grant's iss must be
	// exactly it. "": the issuer the chain's grant comes from (the source
	// domain, or the broker in issue mode), i.e. not checked again.
	ProviderURL string
	// ClientIDs is the provider's client-id list: the grant's aud (or azp)
	// must hold one; default [DefaultAWSAudience].
	ClientIDs []string
	// Client calls STS: an *sts.Client whose BaseEndpoint is
	// Domain.TokenEndpoint, with anonymous credentials (the call is
	// unsigned) and no retries of its own (NewAWSSTSOptions). Required.
	Client AWSSTS
}

// AWSSTS is the STS operation an aws target calls (*sts.Client).
type AWSSTS interface {
	AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, opts ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error)
}

// AWSSTSOptions are the options of the STS client of an aws target whose
// endpoint is endpoint (from configuration only) and region region: no
// credentials (AssumeRoleWithWebIdentity is unsigned) and no retries of
// the SDK's own. The caller adds the HTTP client.
func AWSSTSOptions(endpoint, region string) sts.Options {
	if region == "" {
		region = "us-east-1"
	}
	return sts.Options{
		Region:           region,
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      aws.AnonymousCredentials{},
		RetryMaxAttempts: 1,
		Retryer:          aws.NopRetryer{},
	}
}

// AWSCredentials are temporary credentials from STS. They are secrets:
// never logged or audited (the audit event records Hash(AccessKeyID)).
type AWSCredentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// setup fills AWSTarget's defaults and builds its STS client; problems are
// returned for New to report.
func (a *AWSTarget) setup() []error {
	var errs []error
	if !strings.HasPrefix(a.RoleARN, "arn:") || len(a.RoleARN) < 20 || len(a.RoleARN) > 2048 {
		errs = append(errs, errors.New("aws.role_arn must be an ARN of 20 to 2048 characters"))
	}
	if a.Duration == 0 {
		a.Duration = DefaultAWSDuration
	}
	if a.Duration < MinAWSDuration || a.Duration > MaxAWSDuration || a.Duration%time.Second != 0 {
		errs = append(errs, errors.New("aws.duration must be whole seconds from 15m to 12h"))
	}
	if len(a.ClientIDs) == 0 {
		a.ClientIDs = []string{DefaultAWSAudience}
	}
	a.ClientIDs = append([]string(nil), a.ClientIDs...)
	if a.Client == nil {
		errs = append(errs, errors.New("kind aws needs an STS client (AWSTarget.Client)"))
	}
	return errs
}

// awsChecks are AWS's checks of the web identity token, each with its own
// reason: iss is the provider's URL, aud (or azp) in its client-id list,
// sub present.
func awsChecks(tok *token.Token, _, tgt *Domain) *Error {
	c, a := &tok.Claims, tgt.AWS
	bad := func(r Reason, msg string) *Error { return &Error{Reason: r, Hop: HopTokenExchange, Message: msg} }
	if a.ProviderURL != "" && c.Issuer != a.ProviderURL {
		return bad(ReasonAWSProviderMismatch, "iss "+quote(c.Issuer)+" is not the URL of "+tgt.Name+"'s IAM OIDC provider "+quote(a.ProviderURL))
	}
	ok := c.AZP != "" && contains(a.ClientIDs, c.AZP)
	for _, v := range c.Audience {
		ok = ok || contains(a.ClientIDs, v)
	}
	if !ok {
		return bad(ReasonAWSAudienceInvalid, "neither aud nor azp of the grant is in the client-id list of "+tgt.Name+"'s IAM OIDC provider ("+strings.Join(a.ClientIDs, ", ")+")")
	}
	if c.Subject == "" {
		return bad(ReasonAWSSubjectMissing, "the grant has no sub; AWS requires one")
	}
	return nil
}

var sessionNameInvalid = regexp.MustCompile(`[^\w+=,.@-]`)

// awsSessionName derives RoleSessionName from the subject: AWS's charset
// ([\w+=,.@-], anything else becomes '-'), 2 to 64 characters.
func awsSessionName(sub string) string {
	s := sessionNameInvalid.ReplaceAllString(sub, "-")
	if len(s) > maxAWSSessionName {
		s = s[:maxAWSSessionName]
	}
	for len(s) < 2 {
		s += "-"
	}
	return s
}

// assumeRole performs hop 2 of an aws target.
func (r *chainRun) assumeRole(ctx context.Context, tgt *Domain, grant string) (*Result, error) {
	a := tgt.AWS
	sub := ""
	if t, err := token.ParseUnverified(grant); err == nil { // verified by validate
		sub = t.Claims.Subject
	}
	var out *sts.AssumeRoleWithWebIdentityOutput
	err := r.cloudCall(ctx, tgt, HopAWSSTS, grantAWS, func(ctx context.Context) *Error {
		var err error
		out, err = a.Client.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
			RoleArn:          aws.String(a.RoleARN),
			RoleSessionName:  aws.String(awsSessionName(sub)),
			WebIdentityToken: aws.String(grant),
			DurationSeconds:  aws.Int32(int32(a.Duration / time.Second)),
		})
		if err != nil {
			return awsError(tgt, err)
		}
		if out.Credentials == nil || aws.ToString(out.Credentials.AccessKeyId) == "" || aws.ToString(out.Credentials.SecretAccessKey) == "" ||
			aws.ToString(out.Credentials.SessionToken) == "" || out.Credentials.Expiration == nil {
			return &Error{Reason: ReasonUpstreamBadResponse, Message: tgt.Name + " answered AssumeRoleWithWebIdentity without complete credentials"}
		}
		return nil
	})
	if n := len(r.ev.Hops); n > 0 && r.ev.Hops[n-1].GrantType == grantAWS {
		r.ev.Hops[n-1].AssertionJTIHash = r.ev.AssertionJTIHash // the grant presented
	}
	if err != nil {
		return nil, err
	}
	c := out.Credentials
	creds := &AWSCredentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expiration:      c.Expiration.UTC(),
	}
	return &Result{
		AWSCredentials: creds,
		ExpiresIn:      max(int64(creds.Expiration.Sub(r.b.now())/time.Second), 0),
	}, nil
}

// awsThrottling are the error codes with which AWS throttles.
var awsThrottling = []string{"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
	"TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}

// awsError maps an STS error: throttling, IDPCommunicationError (AWS
// could not reach the identity provider; AWS advises retrying) and 5xx are
// outages; other API errors are refusals (AWS_STS_REJECTED) with AWS's
// code and message as the upstream error; an answer the SDK cannot decode
// is UPSTREAM_BAD_RESPONSE; anything else on the wire is an outage.
func awsError(tgt *Domain, err error) *Error {
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		status = re.Response.StatusCode
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		up := &oauth.Error{StatusCode: status, Code: truncate(api.ErrorCode()), Description: BoundText(api.ErrorMessage(), MaxUpstreamDescriptionBytes)}
		if contains(awsThrottling, api.ErrorCode()) || api.ErrorCode() == "IDPCommunicationError" || status >= 500 {
			return cloudUnavailable(tgt, HopAWSSTS, up, err)
		}
		return &Error{Reason: ReasonAWSRejected, Upstream: up, Err: err,
			Message: tgt.Name + " refused AssumeRoleWithWebIdentity: " + upstreamText(up)}
	}
	var de *smithy.DeserializationError
	var ne net.Error
	switch {
	case errors.As(err, &de) && !errors.As(err, &ne):
		return &Error{Reason: ReasonUpstreamBadResponse, Message: tgt.Name + " answered AssumeRoleWithWebIdentity with an invalid response", Err: err}
	case status >= 500 || status == 429 || status == 0:
		return cloudUnavailable(tgt, HopAWSSTS, nil, err)
	default:
		return &Error{Reason: ReasonUpstreamBadResponse, Message: tgt.Name + " answered AssumeRoleWithWebIdentity with HTTP " + strconv.Itoa(status), Err: err}
	}
}

// AWSRegionalEndpoint is the STS endpoint of region, the default endpoint
// of an aws target that names a region and no endpoint.
func AWSRegionalEndpoint(region string) string { return "https://sts." + region + ".amazonaws.com/" }
