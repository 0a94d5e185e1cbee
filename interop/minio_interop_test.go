package interop

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

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
	sb := startSandbox(t)
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
