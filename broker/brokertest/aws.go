package brokertest

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
)

// AWSHandler answers the nth (from 1) AssumeRoleWithWebIdentity call.
type AWSHandler func(ctx context.Context, n int, in *sts.AssumeRoleWithWebIdentityInput) (*sts.AssumeRoleWithWebIdentityOutput, error)

// AWSSTS answers AssumeRoleWithWebIdentity in process, for aws targets
// (broker.AWSTarget.Client); Handler nil answers AWSCredentials(time.Hour).
type AWSSTS struct {
	Handler AWSHandler
	n       atomic.Int64
}

// AssumeRoleWithWebIdentity counts the call and runs Handler.
func (s *AWSSTS) AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, _ ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error) {
	n := int(s.n.Add(1))
	h := s.Handler
	if h == nil {
		h = AWSCredentials(time.Hour)
	}
	return h(ctx, n, in)
}

// Calls returns the number of calls.
func (s *AWSSTS) Calls() int { return int(s.n.Load()) }

// AWSCredentials answers credentials (ASIA<n>) expiring after life.
func AWSCredentials(life time.Duration) AWSHandler {
	return func(_ context.Context, n int, _ *sts.AssumeRoleWithWebIdentityInput) (*sts.AssumeRoleWithWebIdentityOutput, error) {
		return &sts.AssumeRoleWithWebIdentityOutput{Credentials: &ststypes.Credentials{
			AccessKeyId:     aws.String("ASIATEST" + strconv.Itoa(n)),
			SecretAccessKey: aws.String("secret-" + strconv.Itoa(n)),
			SessionToken:    aws.String("session-" + strconv.Itoa(n)),
			Expiration:      aws.Time(time.Now().Add(life).UTC().Truncate(time.Second)),
		}}, nil
	}
}

// AWSRefuse answers an STS error with code and message (a client fault).
func AWSRefuse(code, message string) AWSHandler {
	return func(context.Context, int, *sts.AssumeRoleWithWebIdentityInput) (*sts.AssumeRoleWithWebIdentityOutput, error) {
		return nil, &smithy.GenericAPIError{Code: code, Message: message, Fault: smithy.FaultClient}
	}
}
