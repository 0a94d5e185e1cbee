package interop

import (
	"crypto/sha1"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MinIOVersion is the MinIO server (github.com/minio/minio) these tests and
// docs/interop.md are about: the pseudo-version pinned in minio/go.mod.
// MinIO tags its releases RELEASE.<date>, which are not semantic versions,
// so the Go module proxy serves it as a pseudo-version. The binary under
// test must be built from it (checked through its embedded build
// information).
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// MinIO's identities in the suite.
const (
	minioRootUser     = "interop-root"
	minioRootPassword = "interop-root-secret"
	// minioRegion is the site region (MINIO_SITE_REGION): it appears in
	// the role ARN and in the signatures of S3 requests.
	minioRegion = "us-east-1"
	// minioClaimClientID is the client ID (token audience) of MinIO's
	// claim-based OpenID provider, whose tokens name their policy in the
	// claim minioPolicyClaim.
	minioClaimClientID = "minio-claims"
	minioPolicyClaim   = "policy"
	// minioRoleClientID is the client ID of the role-policy provider
	// ("role"): its tokens get the policy readwrite through the role ARN.
	minioRoleClientID = "minio-role"
	minioRoleProvider = "ROLE"
)

// minioRoleARN is the ARN MinIO derives for a role-policy provider:
// arn:minio:iam:REGION::role/ + base64url(SHA-1(client ID)), stable across
// restarts.
func minioRoleARN(clientID string) string {
	h := sha1.Sum([]byte(clientID))
	return "arn:minio:iam:" + minioRegion + "::role/" + base64.RawURLEncoding.EncodeToString(h[:])
}

// findMinIO returns the MinIO binary's absolute path after checking that it
// is github.com/minio/minio@MinIOVersion.
func findMinIO() (string, error) {
	path := os.Getenv(envMinIOBin)
	if path == "" {
		path = filepath.Join(".bin", "minio")
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no usable MinIO binary at %s: %w", path, err)
	}
	if info.Main.Path != "github.com/minio/minio" || info.Main.Version != MinIOVersion {
		return "", fmt.Errorf("%s is %s@%s, want github.com/minio/minio@%s", path, info.Main.Path, info.Main.Version, MinIOVersion)
	}
	return path, nil
}

// requireMinIO skips the test when MinIO is missing outside CI (TestMain
// has already failed the run in CI).
func requireMinIO(t *testing.T) {
	t.Helper()
	if bins.minioMissing != "" {
		t.Skip(bins.minioMissing)
	}
}

// minio is a running MinIO server.
type minio struct {
	proc     *process
	endpoint string // http://127.0.0.1:PORT, S3 and STS
}

// startMinIO starts MinIO on a free port with a fresh data directory and
// two OpenID providers, both the OpenID provider at configURL (a discovery
// document URL): the default one claim-based (client ID
// minioClaimClientID, policy from the claim "policy"), and ROLE with the
// role policy readwrite (client ID minioRoleClientID, role ARN
// minioRoleARN(minioRoleClientID)). MinIO reads the discovery document at
// start-up, so the provider must be up first.
func startMinIO(t *testing.T, configURL string) *minio {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		port, console := freePort(t), freePort(t)
		env := []string{
			"MINIO_ROOT_USER=" + minioRootUser,
			"MINIO_ROOT_PASSWORD=" + minioRootPassword,
			"MINIO_SITE_REGION=" + minioRegion,
			"MINIO_BROWSER=off",
			"MINIO_UPDATE=off",
			"MINIO_IDENTITY_OPENID_CONFIG_URL=" + configURL,
			"MINIO_IDENTITY_OPENID_CLIENT_ID=" + minioClaimClientID,
			"MINIO_IDENTITY_OPENID_CLAIM_NAME=" + minioPolicyClaim,
			"MINIO_IDENTITY_OPENID_CONFIG_URL_" + minioRoleProvider + "=" + configURL,
			"MINIO_IDENTITY_OPENID_CLIENT_ID_" + minioRoleProvider + "=" + minioRoleClientID,
			"MINIO_IDENTITY_OPENID_ROLE_POLICY_" + minioRoleProvider + "=readwrite",
		}
		p := startProcess(t, "minio", dir, env, bins.minio, "server", "--quiet",
			"--address", loopback(port), "--console-address", loopback(console), data)
		m := &minio{proc: p, endpoint: "http://" + loopback(port)}
		err := p.waitHealthy(m.endpoint + "/minio/health/ready")
		if errors.Is(err, errAddrInUse) && attempt < 3 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m.waitIAM(t)
		return m
	}
}

// waitIAM waits until MinIO's IAM subsystem knows the role ARN: the health
// check answers before it has loaded ("RoleARN ... is not defined", "IAM
// not initialized"). It asks STS with a token that is not one, until the
// answer is about the token.
func (m *minio) waitIAM(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		r := assumeRoleWithWebIdentity(t, m.endpoint, minioRoleARN(minioRoleClientID), "probe", "not-a-token", 0)
		if !strings.Contains(r.message, "is not defined") && !strings.Contains(strings.ToLower(r.message), "not initialized") &&
			r.code != "XMinioIAMNotInitialized" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("MinIO's IAM did not load within %s: %s %s", startTimeout, r.code, r.message)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stsCredentials are the Credentials element of an STS answer.
type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

// stsReply is an STS answer: credentials, or an ErrorResponse.
type stsReply struct {
	status        int
	creds         stsCredentials
	subject       string
	code, message string
	raw           string
}

// assumeRoleWithWebIdentity calls the STS Query API at endpoint.
func assumeRoleWithWebIdentity(t *testing.T, endpoint, roleARN, session, tok string, duration int) stsReply {
	t.Helper()
	form := url.Values{
		"Action":           {"AssumeRoleWithWebIdentity"},
		"Version":          {"2011-06-15"},
		"RoleArn":          {roleARN},
		"RoleSessionName":  {session},
		"WebIdentityToken": {tok},
	}
	if duration > 0 {
		form.Set("DurationSeconds", fmt.Sprint(duration))
	}
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, body := do(t, req)
	r := stsReply{status: status, raw: string(body)}
	if status == http.StatusOK {
		var ok struct {
			Result struct {
				Subject     string         `xml:"SubjectFromWebIdentityToken"`
				Credentials stsCredentials `xml:"Credentials"`
			} `xml:"AssumeRoleWithWebIdentityResult"`
		}
		if err := xml.Unmarshal(body, &ok); err != nil {
			t.Fatalf("STS answer: %v: %s", err, body)
		}
		r.creds, r.subject = ok.Result.Credentials, ok.Result.Subject
		return r
	}
	var e struct {
		Error struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		} `xml:"Error"`
	}
	if err := xml.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("STS error answer is not an ErrorResponse: HTTP %d: %s", status, body)
	}
	r.code, r.message = e.Error.Code, e.Error.Message
	return r
}

// expiration parses an STS Expiration.
func (c stsCredentials) expiration(t *testing.T) time.Time {
	t.Helper()
	exp, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil {
		t.Fatalf("Expiration %q: %v", c.Expiration, err)
	}
	return exp
}
