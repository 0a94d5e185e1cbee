package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// TestAWSChain chains alice's domain A token into the sandbox's aws target
// (its AWS STS imitation) over gRPC and REST: the answer is AWS credentials
// that the imitation issued, and never an access token; refusals of STS
// and throttling reach the caller with their reasons.
func TestAWSChain(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{SandboxOptions: sandbox.Options{CloudAddr: "127.0.0.1:0"}})
	aws := e.Sandbox.Cloud.AWS

	t.Run("grpc", func(t *testing.T) {
		subject := e.SubjectToken(t, sandbox.Alice)
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: app.SandboxAWSTarget})
		if err != nil {
			t.Fatal(err)
		}
		c := resp.AwsCredentials
		if c == nil || resp.AccessToken != "" || resp.ExpiresIn < 3500 || resp.ExpiresIn > 3600 {
			t.Fatalf("response %v", resp)
		}
		issued, ok := aws.Credentials(c.AccessKeyId)
		if !ok || issued.SecretAccessKey != c.SecretAccessKey || issued.SessionToken != c.SessionToken ||
			!issued.Expiration.Equal(c.Expiration.AsTime()) || issued.Subject != sandbox.AliceSubA || issued.RoleARN != sandbox.AWSRoleARN {
			t.Fatalf("credentials %v, issued %+v", c, issued)
		}
		if len(resp.Hops) != 2 || resp.Hops[1].Domain != app.SandboxAWSTarget || resp.Hops[1].GrantType != "aws:AssumeRoleWithWebIdentity" ||
			resp.Hops[1].AssertionJtiHash == "" || resp.Hops[1].AssertionJtiHash != resp.Hops[0].AssertionJtiHash {
			t.Fatalf("hops %v", resp.Hops)
		}
		ev := e.LastEvent(t)
		raw, _ := json.Marshal(ev)
		for _, secret := range []string{c.SecretAccessKey, c.SessionToken, c.AccessKeyId} {
			if strings.Contains(string(raw), secret) {
				t.Fatal("the audit event holds a credential")
			}
		}
		if ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || ev.TargetDomain != app.SandboxAWSTarget || ev.Subject != sandbox.AliceSubA {
			t.Fatalf("audit event %v", ev)
		}
	})

	t.Run("rest", func(t *testing.T) {
		subject := e.SubjectToken(t, sandbox.Bob)
		st, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": app.SandboxAWSTarget})
		var out struct {
			AccessToken    string `json:"access_token"`
			AWSCredentials struct {
				AccessKeyID     string    `json:"access_key_id"`
				SecretAccessKey string    `json:"secret_access_key"`
				SessionToken    string    `json:"session_token"`
				Expiration      time.Time `json:"expiration"`
			} `json:"aws_credentials"`
		}
		if err := json.Unmarshal(body, &out); err != nil || st != http.StatusOK {
			t.Fatalf("HTTP %d %s", st, body)
		}
		if issued, ok := aws.Credentials(out.AWSCredentials.AccessKeyID); !ok || issued.SecretAccessKey != out.AWSCredentials.SecretAccessKey ||
			issued.Subject != sandbox.BobSubA || out.AccessToken != "" || !issued.Expiration.Equal(out.AWSCredentials.Expiration) {
			t.Fatalf("answer %s", body)
		}
	})

	t.Run("throttled once, retried", func(t *testing.T) {
		before := aws.Requests()
		aws.SetThrottle(1)
		subject := e.SubjectToken(t, sandbox.Alice)
		if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: app.SandboxAWSTarget}); err != nil {
			t.Fatal(err)
		}
		if n := aws.Requests() - before; n != 2 {
			t.Fatalf("%d STS requests, want 2", n)
		}
	})

	t.Run("refused by STS", func(t *testing.T) {
		aws.RevokeSubject(sandbox.BobSubA)
		subject := e.SubjectToken(t, sandbox.Bob)
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: app.SandboxAWSTarget})
		st := status.Convert(err)
		var info *errdetails.ErrorInfo
		for _, d := range st.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if st.Code() != codes.PermissionDenied || info == nil || info.Reason != "AWS_STS_REJECTED" || info.Metadata["error"] != "IDPRejectedClaim" || info.Metadata["hop"] != "aws_sts" {
			t.Fatalf("error %v %v", st, info)
		}
	})

	t.Run("domain B chains unchanged", func(t *testing.T) {
		subject := e.SubjectToken(t, sandbox.Alice)
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
		if err != nil || resp.AccessToken == "" || resp.AwsCredentials != nil {
			t.Fatalf("%v %v", resp, err)
		}
	})
}

// TestAzureChain chains alice's domain A token into the sandbox's azure
// target (its Entra imitation): an Entra access token for the application;
// a user without a federated credential is refused by the broker before
// Entra is called, and Entra's own refusal reaches the caller.
func TestAzureChain(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{SandboxOptions: sandbox.Options{CloudAddr: "127.0.0.1:0"}})
	az := e.Sandbox.Cloud.Azure
	v, err := az.Verifier()
	if err != nil {
		t.Fatal(err)
	}

	subject := e.SubjectToken(t, sandbox.Alice)
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: app.SandboxAzureTarget})
	if err != nil {
		t.Fatal(err)
	}
	at, err := v.Verify(ctxT(t), resp.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if appid, _ := at.StringClaim("appid"); appid != sandbox.AzureClientID || resp.ExpiresIn != 3599 || resp.AwsCredentials != nil ||
		len(resp.Hops) != 2 || resp.Hops[1].GrantType != "azure:client_credentials" {
		t.Fatalf("response %v, claims %+v", resp, at.Claims)
	}

	st, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": e.SubjectToken(t, sandbox.Bob), "target_domain": app.SandboxAzureTarget})
	if st != http.StatusOK || !strings.Contains(string(body), `"access_token":"ey`) {
		t.Fatalf("REST: HTTP %d %s", st, body)
	}

	reasonOf := func(err error) (codes.Code, *errdetails.ErrorInfo) {
		s := status.Convert(err)
		for _, d := range s.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				return s.Code(), i
			}
		}
		return s.Code(), nil
	}
	// A subject without a federated credential: the broker's check.
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraClaims: map[string]any{"sub": "someone-else"}})
	before := az.Requests()
	_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: app.SandboxAzureTarget})
	e.Sandbox.A.ResetMisbehaviour()
	if code, info := reasonOf(err); code != codes.FailedPrecondition || info.GetReason() != "AZURE_SUBJECT_MISMATCH" || az.Requests() != before {
		t.Fatalf("%v %v (Entra requests %d -> %d)", code, info, before, az.Requests())
	}
	// Entra throttles once: retried.
	az.SetThrottle(1)
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: app.SandboxAzureTarget}); err != nil {
		t.Fatalf("after a 429: %v", err)
	}
	// Entra's own refusal: the application no longer exists.
	e.Sandbox.Cloud.Azure.RemoveApp(sandbox.AzureTenantID, sandbox.AzureClientID)
	_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: app.SandboxAzureTarget})
	if code, info := reasonOf(err); code != codes.PermissionDenied || info.GetReason() != "AZURE_TOKEN_REJECTED" ||
		!strings.HasPrefix(info.GetMetadata()["error_description"], "AADSTS700016") {
		t.Fatalf("%v %v", code, info)
	}
}

// TestGCPChain chains alice's domain A token into the sandbox's gcp target:
// Google STS (its imitation), then the service account's token from IAM
// Credentials; the refusals of either reach the caller with their reasons.
func TestGCPChain(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{SandboxOptions: sandbox.Options{CloudAddr: "127.0.0.1:0"}})
	gcp := e.Sandbox.Cloud.GCP
	code := func(err error) (codes.Code, *errdetails.ErrorInfo) {
		s := status.Convert(err)
		for _, d := range s.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				return s.Code(), i
			}
		}
		return s.Code(), nil
	}

	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: app.SandboxGCPTarget})
	if err != nil {
		t.Fatal(err)
	}
	at, ok := gcp.AccessToken(resp.AccessToken)
	if !ok || at.ServiceAccount != sandbox.GCPServiceAccount || at.Subject != sandbox.AliceSubA || resp.ExpiresIn < 3500 ||
		len(resp.Hops) != 3 || resp.Hops[1].GrantType != "gcp:token-exchange" || resp.Hops[2].GrantType != "gcp:generateAccessToken" {
		t.Fatalf("response %v, token %+v", resp, at)
	}

	// STS throttles once: retried from hop 1.
	gcp.SetThrottle(1)
	if _, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Bob), TargetDomain: app.SandboxGCPTarget}); err != nil {
		t.Fatalf("after a 429: %v", err)
	}

	// The provider's attribute condition refuses bob: Google STS's refusal.
	if err := gcp.AddProvider(sandbox.GCPProvider{ProjectNumber: sandbox.GCPProjectNumber, Pool: sandbox.GCPPool, Provider: sandbox.GCPProviderID,
		Issuer: e.Sandbox.A.Issuer(), AllowedSubjects: []string{sandbox.AliceSubA}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Bob), TargetDomain: app.SandboxGCPTarget})
	if c, info := code(err); c != codes.PermissionDenied || info.GetReason() != "GCP_STS_REJECTED" || info.GetMetadata()["error"] != "unauthorized_client" {
		t.Fatalf("%v %v", c, info)
	}

	// The service account is granted to bob only: IAM Credentials refuses alice.
	if err := gcp.AddServiceAccount(sandbox.GCPServiceAccountConfig{Email: sandbox.GCPServiceAccount,
		Pool: "projects/" + sandbox.GCPProjectNumber + "/locations/global/workloadIdentityPools/" + sandbox.GCPPool, Subjects: []string{sandbox.BobSubA}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: app.SandboxGCPTarget})
	if c, info := code(err); c != codes.PermissionDenied || info.GetReason() != "GCP_IMPERSONATION_REJECTED" || info.GetMetadata()["error"] != "PERMISSION_DENIED" {
		t.Fatalf("%v %v", c, info)
	}

	// A grant for another audience: the broker's check, before Google.
	before := gcp.STSRequests()
	e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraClaims: map[string]any{"aud": "https://elsewhere.example"}})
	_, err = e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: app.SandboxGCPTarget})
	e.Sandbox.A.ResetMisbehaviour()
	if c, info := code(err); c != codes.FailedPrecondition || info.GetReason() != "GCP_AUDIENCE_INVALID" || gcp.STSRequests() != before {
		t.Fatalf("%v %v", c, info)
	}
}
