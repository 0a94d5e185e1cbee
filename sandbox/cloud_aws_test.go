package sandbox

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// awsReply is a decoded STS answer.
type awsReply struct {
	status        int
	code, message string
	result        awsAssumeResponse
	raw           string
}

func awsCall(t *testing.T, endpoint string, form url.Values) awsReply {
	t.Helper()
	r := post(t, endpoint, form, "", "")
	out := awsReply{status: r.status, raw: r.raw}
	if ct := r.header.Get("Content-Type"); ct != "text/xml" {
		t.Fatalf("Content-Type %q, want text/xml: %s", ct, r.raw)
	}
	if r.header.Get("x-amzn-RequestId") == "" {
		t.Fatalf("no x-amzn-RequestId header")
	}
	if r.status == http.StatusOK {
		if err := xml.Unmarshal([]byte(r.raw), &out.result); err != nil {
			t.Fatalf("result: %v: %s", err, r.raw)
		}
		return out
	}
	var e awsErrorResponse
	if err := xml.Unmarshal([]byte(r.raw), &e); err != nil {
		t.Fatalf("error response: %v: %s", err, r.raw)
	}
	if e.XMLNS != awsXMLNS || e.Error.Type != "Sender" || e.RequestID == "" {
		t.Fatalf("ErrorResponse shape: %s", r.raw)
	}
	out.code, out.message = e.Error.Code, e.Error.Message
	return out
}

func awsForm(role, session, tok string) url.Values {
	return url.Values{
		"Action": {"AssumeRoleWithWebIdentity"}, "Version": {AWSVersion},
		"RoleArn": {role}, "RoleSessionName": {session}, "WebIdentityToken": {tok},
	}
}

func TestCloudAWSDomainA(t *testing.T) {
	sb := startWithCloud(t)
	tok := cloudExchange(t, sb, AWSAudience)
	r := awsCall(t, sb.Cloud.AWS.Endpoint(), awsForm(AWSRoleARN, "alice-session", tok))
	if r.status != http.StatusOK {
		t.Fatalf("AssumeRoleWithWebIdentity: %s", r.raw)
	}
	res := r.result.Result
	c := res.Credentials
	if !strings.HasPrefix(c.AccessKeyID, "ASIA") || len(c.SecretAccessKey) != 40 || c.SessionToken == "" {
		t.Fatalf("credentials: %+v", c)
	}
	exp, err := time.Parse(time.RFC3339, c.Expiration)
	if err != nil || exp.Before(time.Now().Add(59*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
		t.Fatalf("Expiration %q: want about 1 h from now", c.Expiration)
	}
	if res.SubjectFromWebIdentityToken != AliceSubA || res.Audience != AWSAudience ||
		res.AssumedRoleUser.Arn != "arn:aws:sts::"+AWSAccountID+":assumed-role/"+AWSRoleName+"/alice-session" ||
		!strings.HasSuffix(res.AssumedRoleUser.AssumedRoleID, ":alice-session") || r.result.ResponseMetadata.RequestID == "" {
		t.Fatalf("result: %+v", r.result)
	}
	got, ok := sb.Cloud.AWS.Credentials(c.AccessKeyID)
	if !ok || got.SecretAccessKey != c.SecretAccessKey || got.Subject != AliceSubA || got.RoleARN != AWSRoleARN {
		t.Fatalf("issued record: %+v %v", got, ok)
	}
	// GET with the query string works too (the Query API).
	q := awsForm(AWSRoleARN, "alice-get", cloudExchange(t, sb, AWSAudience))
	g := get(t, sb.Cloud.AWS.Endpoint()+"?"+q.Encode())
	if g.status != http.StatusOK {
		t.Fatalf("GET: %v", g)
	}
	// Domain A's subject token (aud chainbroker, account) is not for AWS.
	r = awsCall(t, sb.Cloud.AWS.Endpoint(), awsForm(AWSRoleARN, "alice", subjectToken(t, sb, Alice)))
	if r.code != AWSInvalidIdentityToken || r.message != AWSMsgAudience {
		t.Fatalf("subject token: %s", r.raw)
	}
}

func TestCloudAWSRefusals(t *testing.T) {
	sb := startWithCloud(t)
	ti := newTestIssuer(t)
	aws := sb.Cloud.AWS
	const role = "arn:aws:iam::" + AWSAccountID + ":role/test"
	const roleSubject = "arn:aws:iam::" + AWSAccountID + ":role/only-svc"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(aws.AddOIDCProvider(AWSProvider{URL: ti.url, ClientIDs: []string{"client-a", "client-b"}}))
	must(aws.AddRole(AWSRole{ARN: role, Provider: ti.url}))
	must(aws.AddRole(AWSRole{ARN: roleSubject, Provider: ti.url, Subjects: []string{"svc-*"}, MaxSessionDuration: 2 * time.Hour}))
	dead := deadURL(t)
	must(aws.AddOIDCProvider(AWSProvider{URL: dead, ClientIDs: []string{"client-a"}}))
	must(aws.AddRole(AWSRole{ARN: "arn:aws:iam::" + AWSAccountID + ":role/dead", Provider: dead}))
	aws.RevokeSubject("revoked-user")

	good := func(edit map[string]any) string {
		c := map[string]any{"sub": "user-1", "aud": "client-b"}
		for k, v := range edit {
			c[k] = v
		}
		return ti.token(t, ti.rs, c, token.SignOptions{})
	}
	with := func(f url.Values, kv ...string) url.Values {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "\x00" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	deadTok, err := ti.rs.Sign(map[string]any{"iss": dead, "sub": "u", "aud": "client-a", "exp": time.Now().Add(time.Minute).Unix()}, token.SignOptions{})
	must(err)
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		msg    string // exact, or prefix when it ends in "…"
	}{
		{"ok RS256", awsForm(role, "s1", good(nil)), 200, "", ""},
		{"ok ES256", awsForm(role, "s1", ti.token(t, ti.es, map[string]any{"sub": "u", "aud": "client-a"}, token.SignOptions{})), 200, "", ""},
		{"ok azp as audience", awsForm(role, "s1", good(map[string]any{"aud": "other", "azp": "client-a"})), 200, "", ""},
		{"ok duration within role maximum", with(awsForm(roleSubject, "s1", good(map[string]any{"sub": "svc-1"})), "DurationSeconds", "7200"), 200, "", ""},
		{"missing action", with(awsForm(role, "s1", good(nil)), "Action", "\x00"), 400, AWSMissingAction, "Missing Action"},
		{"unknown action", with(awsForm(role, "s1", good(nil)), "Action", "AssumeRole"), 400, AWSInvalidAction, "Could not find operation AssumeRole for version 2011-06-15"},
		{"wrong version", with(awsForm(role, "s1", good(nil)), "Version", "2010-01-01"), 400, AWSInvalidAction, "Could not find operation AssumeRoleWithWebIdentity for version 2010-01-01"},
		{"no role", with(awsForm(role, "s1", good(nil)), "RoleArn", "\x00"), 400, AWSValidationError,
			"1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"},
		{"role too short", awsForm("arn:aws:iam::1:r", "s1", good(nil)), 400, AWSValidationError,
			"1 validation error detected: Value 'arn:aws:iam::1:r' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20"},
		{"no session name", with(awsForm(role, "s1", good(nil)), "RoleSessionName", "\x00"), 400, AWSValidationError,
			"1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"},
		{"session name too short", awsForm(role, "s", good(nil)), 400, AWSValidationError,
			"1 validation error detected: Value 's' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2"},
		{"session name too long", awsForm(role, strings.Repeat("a", 65), good(nil)), 400, AWSValidationError,
			"1 validation error detected: Value '" + strings.Repeat("a", 65) + "' at 'roleSessionName' failed to satisfy constraint: Member must have length less than or equal to 64"},
		{"session name charset", awsForm(role, "alice smith", good(nil)), 400, AWSValidationError,
			`1 validation error detected: Value 'alice smith' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*`},
		{"no token", with(awsForm(role, "s1", ""), "WebIdentityToken", "\x00"), 400, AWSValidationError,
			"1 validation error detected: Value null at 'webIdentityToken' failed to satisfy constraint: Member must not be null"},
		{"token too short", awsForm(role, "s1", "abc"), 400, AWSValidationError,
			"1 validation error detected: Value null at 'webIdentityToken' failed to satisfy constraint: Member must have length greater than or equal to 4"},
		{"token too long", awsForm(role, "s1", strings.Repeat("a", 20001)), 400, AWSValidationError,
			"1 validation error detected: Value null at 'webIdentityToken' failed to satisfy constraint: Member must have length less than or equal to 20000"},
		{"duration below 900", with(awsForm(role, "s1", good(nil)), "DurationSeconds", "899"), 400, AWSValidationError,
			"1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"},
		{"duration above 43200", with(awsForm(role, "s1", good(nil)), "DurationSeconds", "43201"), 400, AWSValidationError,
			"1 validation error detected: Value '43201' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 43200"},
		{"duration not a number", with(awsForm(role, "s1", good(nil)), "DurationSeconds", "1h"), 400, "InvalidParameterValue",
			"Value (1h) for parameter DurationSeconds is invalid. Expected an integer."},
		{"duration above role maximum", with(awsForm(role, "s1", good(nil)), "DurationSeconds", "3601"), 400, AWSValidationError, AWSMsgDurationExceeds},
		{"not a JWT", awsForm(role, "s1", "not-a-jwt"), 400, AWSInvalidIdentityToken, AWSMsgNotJWT},
		{"wrong iss", awsForm(role, "s1", good(map[string]any{"iss": "https://elsewhere.example"})), 400, AWSInvalidIdentityToken,
			AWSMsgNoProvider + "https://elsewhere.example"},
		{"wrong aud", awsForm(role, "s1", good(map[string]any{"aud": "client-c"})), 400, AWSInvalidIdentityToken, AWSMsgAudience},
		{"no aud", awsForm(role, "s1", good(map[string]any{"aud": nil})), 400, AWSInvalidIdentityToken, AWSMsgAudience},
		{"bad signature", awsForm(role, "s1", ti.token(t, ti.rogue, map[string]any{"sub": "u", "aud": "client-a"}, token.SignOptions{Kid: ti.rs.KeyID()})),
			400, AWSInvalidIdentityToken, AWSMsgSignature},
		{"unknown kid", awsForm(role, "s1", ti.token(t, ti.rogue, map[string]any{"sub": "u", "aud": "client-a"}, token.SignOptions{})),
			400, AWSInvalidIdentityToken, AWSMsgSignature},
		{"keys unreachable", awsForm("arn:aws:iam::"+AWSAccountID+":role/dead", "s1", deadTok), 400, AWSIDPCommunicationError, AWSMsgKeysUnreachable},
		{"expired", awsForm(role, "s1", good(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})), 400, AWSExpiredToken, AWSMsgExpired + "…"},
		{"no exp", awsForm(role, "s1", good(map[string]any{"exp": nil})), 400, AWSExpiredToken, AWSMsgExpired + "…"},
		{"no sub", awsForm(role, "s1", good(map[string]any{"sub": nil})), 400, AWSInvalidIdentityToken, AWSMsgNoSubject},
		{"revoked subject", awsForm(role, "s1", good(map[string]any{"sub": "revoked-user"})), 403, AWSIDPRejectedClaim, AWSMsgRejected},
		{"unknown role", awsForm("arn:aws:iam::"+AWSAccountID+":role/nope", "s1", good(nil)), 403, AWSAccessDenied, AWSMsgNotAuthorized},
		{"role of another provider", awsForm(AWSRoleARN, "s1", good(nil)), 403, AWSAccessDenied, AWSMsgNotAuthorized},
		{"trust policy subject condition", awsForm(roleSubject, "s1", good(nil)), 403, AWSAccessDenied, AWSMsgNotAuthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := awsCall(t, aws.Endpoint(), tc.form)
			if r.status != tc.status || r.code != tc.code {
				t.Fatalf("got HTTP %d %s, want %d %s: %s", r.status, r.code, tc.status, tc.code, r.raw)
			}
			if p, ok := strings.CutSuffix(tc.msg, "…"); ok {
				if !strings.HasPrefix(r.message, p) {
					t.Fatalf("message %q, want prefix %q", r.message, p)
				}
			} else if r.message != tc.msg {
				t.Fatalf("message %q, want %q", r.message, tc.msg)
			}
		})
	}
}

func TestCloudAWSThrottling(t *testing.T) {
	sb := startWithCloud(t)
	tok := cloudExchange(t, sb, AWSAudience)
	sb.Cloud.AWS.SetThrottle(1)
	r := awsCall(t, sb.Cloud.AWS.Endpoint(), awsForm(AWSRoleARN, "s1", tok))
	if r.status != http.StatusBadRequest || r.code != AWSThrottling || r.message != AWSMsgRateExceeded {
		t.Fatalf("throttled: %s", r.raw)
	}
	// The retry, with the same token, succeeds.
	if r = awsCall(t, sb.Cloud.AWS.Endpoint(), awsForm(AWSRoleARN, "s1", tok)); r.status != http.StatusOK {
		t.Fatalf("retry: %s", r.raw)
	}
	if n := sb.Cloud.AWS.Requests(); n != 2 {
		t.Fatalf("Requests() = %d, want 2", n)
	}
	code, msg, err := ParseAWSError([]byte(`<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>`))
	if err != nil || code != AWSThrottling || msg != AWSMsgRateExceeded {
		t.Fatalf("ParseAWSError: %q %q %v", code, msg, err)
	}
	if _, _, err := ParseAWSError([]byte(`{}`)); err == nil {
		t.Fatal("ParseAWSError accepted JSON")
	}
}
