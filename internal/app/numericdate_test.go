package app_test

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// TestSubjectTokenStringDates (#14.12): a subject token whose exp, iat or
// nbf is a JSON string ("exp": "1764000000"), signed by the source's own key,
// is SUBJECT_TOKEN_INVALID before hop 1: RFC 7519 NumericDates are numbers.
func TestSubjectTokenStringDates(t *testing.T) {
	e := apptest.Start(t, nil)
	now := time.Now().Unix()
	for _, claim := range []string{"exp", "iat", "nbf"} {
		t.Run(claim, func(t *testing.T) {
			c := map[string]any{"iss": e.Sandbox.A.Issuer(), "sub": sandbox.AliceSubA, "aud": []string{"chainbroker", "account"},
				"azp": sandbox.AgentClientID, "iat": now - 10, "nbf": now - 10, "exp": now + 300, "jti": "s-" + claim, "typ": "Bearer"}
			c[claim] = strconv.FormatInt(c[claim].(int64), 10)
			tok, err := e.Sandbox.A.SignToken(c, "JWT")
			if err != nil {
				t.Fatal(err)
			}
			before := e.Sandbox.A.ExchangeCount()
			_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: tok, SourceDomain: "domain-a", TargetDomain: "domain-b"})
			if status.Code(err) != codes.InvalidArgument || reason(err) != "SUBJECT_TOKEN_INVALID" {
				t.Fatalf("got %v %q, want InvalidArgument SUBJECT_TOKEN_INVALID", status.Code(err), reason(err))
			}
			if e.Sandbox.A.ExchangeCount() != before {
				t.Error("domain A was called with a subject token whose dates are strings")
			}
		})
	}
}
