package interop

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// minioWorld is a sandbox whose domain A MinIO trusts as its OpenID
// provider (both of MinIO's providers, see startMinIO).
type minioWorld struct {
	sb    *sandbox.Sandbox
	minio *minio
}

func newMinIOWorld(t *testing.T) *minioWorld {
	t.Helper()
	requireMinIO(t)
	sb := apptest.StartSandbox(t, sandbox.Options{})
	// Domain A's token exchange may issue tokens for MinIO's client IDs,
	// as a Keycloak audience mapper would.
	sb.A.AllowAudience(minioRoleClientID)
	sb.A.AllowAudience(minioClaimClientID)
	return &minioWorld{sb: sb, minio: startMinIO(t, sb.A.DiscoveryURL())}
}

// useCredentials proves that STS credentials work at MinIO's S3 API: it
// makes a bucket, puts an object and reads it back with minio-go.
func (w *minioWorld) useCredentials(t *testing.T, c stsCredentials, bucket string) {
	t.Helper()
	client, err := miniogo.New(strings.TrimPrefix(w.minio.endpoint, "http://"), &miniogo.Options{
		Creds:  credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, c.SessionToken),
		Region: minioRegion,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := client.MakeBucket(ctx, bucket, miniogo.MakeBucketOptions{Region: minioRegion}); err != nil {
		t.Fatalf("MakeBucket %s with the STS credentials: %v", bucket, err)
	}
	content := []byte("chained into MinIO at " + time.Now().Format(time.RFC3339Nano))
	if _, err := client.PutObject(ctx, bucket, "hello.txt", bytes.NewReader(content), int64(len(content)),
		miniogo.PutObjectOptions{ContentType: "text/plain"}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	obj, err := client.GetObject(ctx, bucket, "hello.txt", miniogo.GetObjectOptions{})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("reading the object: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("object content %q, want %q", got, content)
	}
}

// TestMinIOWebIdentity calls MinIO's AssumeRoleWithWebIdentity with
// domain A's tokens, as the broker's aws targets do, and uses the
// credentials. It also records what MinIO checks and what it does not (the
// broker's own checks cover the rest; docs/interop.md and
// docs/cloud-aws.md).
func TestMinIOWebIdentity(t *testing.T) {
	w := newMinIOWorld(t)
	sb := w.sb
	roleARN := minioRoleARN(minioRoleClientID)

	t.Run("role policy provider", func(t *testing.T) {
		tok := assertionFromA(t, sb, sandbox.Alice, minioRoleClientID)
		r := assumeRoleWithWebIdentity(t, w.minio.endpoint, roleARN, "alice-session", tok, 900)
		if r.status != http.StatusOK {
			t.Fatalf("AssumeRoleWithWebIdentity: HTTP %d: %s", r.status, r.raw)
		}
		if r.creds.AccessKeyID == "" || r.creds.SecretAccessKey == "" || r.creds.SessionToken == "" {
			t.Fatalf("credentials missing: %s", r.raw)
		}
		// DurationSeconds=900 is honoured (MinIO also caps it at the
		// token's exp; domain A's tokens live 300 s).
		if exp := r.creds.expiration(t); exp.After(time.Now().Add(901*time.Second)) || exp.Before(time.Now()) {
			t.Fatalf("Expiration %s: want within 900 s", exp)
		}
		w.useCredentials(t, r.creds, "alice-role")
	})

	t.Run("claim based provider", func(t *testing.T) {
		// The default provider takes the policy from the token's "policy"
		// claim (a Keycloak user attribute mapper in production). MinIO
		// ignores a RoleArn it does not know when a claim-based provider
		// is configured, which lets AWS SDKs (RoleArn required) call it.
		sb.A.SetMisbehaviour(sandbox.Misbehaviour{ExtraClaims: map[string]any{minioPolicyClaim: "readwrite"}})
		tok := assertionFromA(t, sb, sandbox.Bob, minioClaimClientID)
		sb.A.ResetMisbehaviour()
		r := assumeRoleWithWebIdentity(t, w.minio.endpoint, "arn:aws:iam::123456789012:role/ignored-by-minio", "bob-session", tok, 0)
		if r.status != http.StatusOK {
			t.Fatalf("AssumeRoleWithWebIdentity: HTTP %d: %s", r.status, r.raw)
		}
		w.useCredentials(t, r.creds, "bob-claims")

		// Without the claim MinIO refuses to mint credentials.
		tok = assertionFromA(t, sb, sandbox.Bob, minioClaimClientID)
		r = assumeRoleWithWebIdentity(t, w.minio.endpoint, "", "bob-session", tok, 0)
		if r.status != http.StatusBadRequest || r.code != "InvalidParameterValue" || !strings.Contains(r.message, "policy claim missing") {
			t.Fatalf("token without policy claim: HTTP %d %s %q", r.status, r.code, r.message)
		}
	})

	for _, tc := range []struct {
		name  string
		mis   sandbox.Misbehaviour
		aud   string
		code  string
		inMsg string
	}{
		// MinIO's audience check: aud (or azp) must hold the provider's
		// client ID.
		{"audience of another client", sandbox.Misbehaviour{}, minioClaimClientID, "InvalidParameterValue", "must match configured OpenID Client ID"},
		// MinIO answers an expired token with InvalidParameterValue, not
		// AWS's ExpiredTokenException.
		{"expired", sandbox.Misbehaviour{Expired: true}, minioRoleClientID, "InvalidParameterValue", "Token is expired"},
		{"bad signature", sandbox.Misbehaviour{BadSignature: true}, minioRoleClientID, "InvalidParameterValue", "verification error"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			sb.A.SetMisbehaviour(tc.mis)
			tok := assertionFromA(t, sb, sandbox.Alice, tc.aud)
			sb.A.ResetMisbehaviour()
			r := assumeRoleWithWebIdentity(t, w.minio.endpoint, roleARN, "alice-session", tok, 900)
			if r.status == http.StatusOK || r.code != tc.code || !strings.Contains(r.message, tc.inMsg) {
				t.Fatalf("got HTTP %d %s %q, want %s", r.status, r.code, r.message, tc.code)
			}
			t.Logf("MinIO: %s: %s", r.code, r.message)
		})
	}

	// MinIO does not check iss (the key does the work: the token is still
	// signed by domain A's key) nor jti: these are the broker's checks for
	// aws targets, which AWS itself makes (docs/cloud-aws.md).
	t.Run("accepted by MinIO: foreign iss", func(t *testing.T) {
		sb.A.SetMisbehaviour(sandbox.Misbehaviour{Issuer: "https://not-domain-a.example"})
		tok := assertionFromA(t, sb, sandbox.Alice, minioRoleClientID)
		sb.A.ResetMisbehaviour()
		if r := assumeRoleWithWebIdentity(t, w.minio.endpoint, roleARN, "alice-session", tok, 900); r.status != http.StatusOK {
			t.Fatalf("MinIO refused a foreign iss (it did not before): HTTP %d %s %q", r.status, r.code, r.message)
		}
	})
	t.Run("accepted by MinIO: replayed token", func(t *testing.T) {
		tok := assertionFromA(t, sb, sandbox.Alice, minioRoleClientID)
		for i := range 2 {
			if r := assumeRoleWithWebIdentity(t, w.minio.endpoint, roleARN, "alice-session", tok, 900); r.status != http.StatusOK {
				t.Fatalf("presentation %d: HTTP %d %s %q", i+1, r.status, r.code, r.message)
			}
		}
	})
}

// Names of the MinIO targets in the broker's configuration.
const (
	domainMinIO       = "minio"        // the role-policy provider: the aws target that works
	domainMinIOClaims = "minio-claims" // the claim-based provider: tokens without a policy claim are refused
)

// minioBrokerConfig is a broker from domain A to MinIO's STS as two aws
// targets (docs/cloud-aws.md): token exchange at A for MinIO's client ID,
// AssumeRoleWithWebIdentity at MinIO.
func (w *minioWorld) minioBrokerConfig(apiKey string) *config.File {
	sum := sha256.Sum256([]byte(apiKey))
	target := func(name, clientID, roleARN string) config.Domain {
		return config.Domain{
			Name:              name,
			Kind:              "aws",
			TokenEndpoint:     w.minio.endpoint,
			Timeout:           config.Duration(5 * time.Second),
			AllowInsecureHTTP: true, // loopback only
			AWS: config.AWSTarget{
				RoleARN:     roleARN,
				Region:      minioRegion,
				Duration:    config.Duration(15 * time.Minute),
				ProviderURL: w.sb.A.Issuer(),
				ClientIDs:   []string{clientID},
			},
		}
	}
	return &config.File{
		Listen:  config.Listen{ShutdownTimeout: config.Duration(5 * time.Second)},
		Callers: config.Callers{APIKeys: []config.APIKey{{Name: interopCaller, SHA256: hex.EncodeToString(sum[:])}}},
		Log:     config.Log{Level: "debug", Format: "text"},
		Store:   config.Store{Backend: "memory"},
		Domains: []config.Domain{
			sourceDomain(domainA, w.sb),
			target(domainMinIO, minioRoleClientID, minioRoleARN(minioRoleClientID)),
			target(domainMinIOClaims, minioClaimClientID, "arn:aws:iam::123456789012:role/ignored-by-minio"),
		},
		Chains: []config.Chain{
			{Source: domainA, Target: domainMinIO, Audience: minioRoleClientID},
			{Source: domainA, Target: domainMinIOClaims, Audience: minioClaimClientID},
		},
		Policy: []config.PolicyEntry{{
			Caller: interopCaller,
			Roles:  []string{"audit"},
			Chains: []config.PolicyChain{{Source: domainA, Target: domainMinIO}, {Source: domainA, Target: domainMinIOClaims}},
		}},
	}
}

// TestMinIOThroughBroker chains domain A tokens into MinIO through the
// broker (an aws target) and uses the credentials; MinIO checks less than
// AWS (it ignores iss and jti), so the refusals asserted here are the
// broker's own, each before MinIO is called.
func TestMinIOThroughBroker(t *testing.T) {
	requireMinIO(t)
	requireBroker(t)
	w := newMinIOWorld(t)
	apiKey := randomHex(t, 32)
	b := startBroker(t, w.minioBrokerConfig(apiKey), []string{envSecretA + "=" + sandbox.BrokerSecretA}, apiKey)

	t.Run("grpc: credentials that work", func(t *testing.T) {
		resp, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainMinIO})
		if err != nil {
			t.Fatal(err)
		}
		c := resp.GetAwsCredentials()
		if c == nil || resp.AccessToken != "" || resp.ExpiresIn <= 0 || resp.ExpiresIn > 900 {
			t.Fatalf("response %v", resp)
		}
		w.useCredentials(t, stsCredentials{AccessKeyID: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, "alice-broker")
		ev := b.lastEvent(t)
		raw, _ := json.Marshal(ev)
		if ev.Outcome != pb.Outcome_OUTCOME_SUCCESS || ev.TargetDomain != domainMinIO ||
			strings.Contains(string(raw), c.SecretAccessKey) || strings.Contains(string(raw), c.SessionToken) {
			t.Fatalf("audit event %s", raw)
		}
	})

	t.Run("rest: credentials that work", func(t *testing.T) {
		status, body := b.chainREST(t, map[string]any{"subject_token": apptest.SubjectToken(t, w.sb, sandbox.Bob), "target_domain": domainMinIO})
		var out struct {
			AWS struct {
				AccessKeyID     string `json:"access_key_id"`
				SecretAccessKey string `json:"secret_access_key"`
				SessionToken    string `json:"session_token"`
			} `json:"aws_credentials"`
		}
		if err := json.Unmarshal(body, &out); err != nil || status != http.StatusOK {
			t.Fatalf("HTTP %d %s", status, body)
		}
		w.useCredentials(t, stsCredentials{AccessKeyID: out.AWS.AccessKeyID, SecretAccessKey: out.AWS.SecretAccessKey, SessionToken: out.AWS.SessionToken}, "bob-broker")
	})

	t.Run("refused by MinIO: no policy claim", func(t *testing.T) {
		_, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainMinIOClaims})
		code, info := statusInfo(t, err)
		if code != codes.PermissionDenied || info.GetReason() != "AWS_STS_REJECTED" || info.GetMetadata()["error"] != "InvalidParameterValue" ||
			!strings.Contains(info.GetMetadata()["error_description"], "policy claim missing") || info.GetMetadata()["hop"] != "aws_sts" {
			t.Fatalf("%v %v", code, info)
		}
	})

	for _, tc := range []struct {
		name   string
		mis    sandbox.Misbehaviour
		reason string
	}{
		// MinIO would accept these two (TestMinIOWebIdentity): the
		// broker refuses them as AWS would.
		{"foreign iss", sandbox.Misbehaviour{Issuer: "https://not-domain-a.example"}, "AWS_PROVIDER_MISMATCH"},
		{"audience not MinIO's", sandbox.Misbehaviour{ExtraClaims: map[string]any{"aud": "someone-else", "azp": nil}}, "AWS_AUDIENCE_INVALID"},
		{"no sub", sandbox.Misbehaviour{OmitSub: true}, "AWS_SUBJECT_MISSING"},
	} {
		t.Run("refused by the broker: "+tc.name, func(t *testing.T) {
			w.sb.A.SetMisbehaviour(tc.mis)
			defer w.sb.A.ResetMisbehaviour()
			_, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainMinIO})
			code, info := statusInfo(t, err)
			if code != codes.FailedPrecondition || info.GetReason() != tc.reason {
				t.Fatalf("%v %v, want %s", code, info, tc.reason)
			}
			if ev := b.lastEvent(t); len(ev.Hops) != 1 {
				t.Fatalf("MinIO was called: %v", ev.Hops)
			}
		})
	}

	t.Run("refused by the broker: replayed grant", func(t *testing.T) {
		if _, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainMinIO}); err != nil {
			t.Fatal(err)
		}
		// Domain A answers the next exchange with the grant it just issued.
		w.sb.A.SetMisbehaviour(sandbox.Misbehaviour{ReuseAssertion: true})
		defer w.sb.A.ResetMisbehaviour()
		_, err := b.chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: apptest.SubjectToken(t, w.sb, sandbox.Alice), TargetDomain: domainMinIO})
		if code, info := statusInfo(t, err); code != codes.PermissionDenied || info.GetReason() != "ASSERTION_REPLAYED" {
			t.Fatalf("%v %v", code, info)
		}
	})
}
