package sandbox

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// The sandbox's AWS account, role and OpenID provider audience.
const (
	// AWSAccountID is the sandbox's AWS account.
	AWSAccountID = "111122223333"
	// AWSRoleName is the role the demo assumes.
	AWSRoleName = "chainbroker-sandbox"
	// AWSRoleARN is AWSRoleName's ARN.
	AWSRoleARN = "arn:aws:iam::" + AWSAccountID + ":role/" + AWSRoleName
	// AWSAudience is the client ID (token audience) registered on the IAM
	// OIDC provider for domain A: AWS's customary sts.amazonaws.com.
	AWSAudience = "sts.amazonaws.com"
	// AWSVersion is the only Query API version of STS.
	AWSVersion = "2011-06-15"
)

// AWS STS error codes (the Code element of an ErrorResponse) the imitation
// answers with, as AWS documents them for AssumeRoleWithWebIdentity and
// for every Query API action.
const (
	AWSInvalidIdentityToken  = "InvalidIdentityToken"  // 400
	AWSExpiredToken          = "ExpiredTokenException" // 400
	AWSIDPRejectedClaim      = "IDPRejectedClaim"      // 403
	AWSIDPCommunicationError = "IDPCommunicationError" // 400
	AWSAccessDenied          = "AccessDenied"          // 403
	AWSValidationError       = "ValidationError"       // 400
	AWSThrottling            = "Throttling"            // 400
	AWSInvalidAction         = "InvalidAction"         // 400
	AWSMissingAction         = "MissingAction"         // 400
)

// AWS STS error messages. AWS's own wording where it is documented or
// commonly seen; "sandbox" marks the imitation's own.
const (
	// AWSMsgNotJWT: InvalidIdentityToken, the token is not a JWT.
	AWSMsgNotJWT = "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)"
	// AWSMsgNoProvider prefixes the token's iss: InvalidIdentityToken.
	AWSMsgNoProvider = "No OpenIDConnect provider found in your account for "
	// AWSMsgAudience: InvalidIdentityToken, no aud (or azp) value is in the
	// provider's client-id list.
	AWSMsgAudience = "Incorrect token audience"
	// AWSMsgKeysUnreachable: IDPCommunicationError, the provider's
	// discovery document or JWKS could not be fetched.
	AWSMsgKeysUnreachable = "Couldn't retrieve verification key from your identity provider,  please reference AssumeRoleWithWebIdentity documentation for requirements"
	// AWSMsgSignature (sandbox): InvalidIdentityToken, no key fits or the
	// signature does not verify.
	AWSMsgSignature = "Couldn't verify the signature of the web identity token with the keys of your identity provider"
	// AWSMsgNoSubject (sandbox): InvalidIdentityToken, no sub claim.
	AWSMsgNoSubject = "The web identity token has no sub claim"
	// AWSMsgExpired prefixes ExpiredTokenException's message.
	AWSMsgExpired = "Token expired: current date/time "
	// AWSMsgRejected (sandbox): IDPRejectedClaim, the subject was revoked
	// (CloudAWS.RevokeSubject).
	AWSMsgRejected = "The identity provider reported that the claim has been revoked"
	// AWSMsgNotAuthorized: AccessDenied, no such role or its trust policy
	// does not allow this token.
	AWSMsgNotAuthorized = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
	// AWSMsgDurationExceeds: ValidationError, DurationSeconds above the
	// role's MaxSessionDuration.
	AWSMsgDurationExceeds = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
	// AWSMsgRateExceeded: Throttling.
	AWSMsgRateExceeded = "Rate exceeded"
)

// AWS STS parameter bounds (API reference of AssumeRoleWithWebIdentity).
const (
	awsMinDuration    = 900
	awsMaxDuration    = 43200
	awsMinSessionName = 2
	awsMaxSessionName = 64
	awsMinRoleARN     = 20
	awsMaxRoleARN     = 2048
	awsMinToken       = 4
	awsMaxToken       = 20000
)

// awsSessionNamePattern is RoleSessionName's documented pattern.
var awsSessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]*$`)

// AWSProvider is an IAM OIDC identity provider.
type AWSProvider struct {
	// URL is the issuer: a token's iss must equal it exactly. AWS stores
	// it without the scheme and requires https; the sandbox keeps the
	// whole URL, so that http loopback issuers work.
	URL string
	// ClientIDs is the provider's audience list: a token's aud (or azp)
	// must hold one of them.
	ClientIDs []string
	// JWKSURI, when set, is where the keys are; "" means the jwks_uri of
	// URL's discovery document, as AWS does.
	JWKSURI string
}

// AWSRole is an IAM role whose trust policy allows
// sts:AssumeRoleWithWebIdentity for one OIDC provider.
type AWSRole struct {
	// ARN is arn:aws:iam::ACCOUNT:role/NAME.
	ARN string
	// Provider is the URL of the trusted provider (the policy's
	// Principal.Federated).
	Provider string
	// Audience, when set, is the condition "<provider>:aud" StringEquals.
	Audience string
	// Subjects, when set, is the condition "<provider>:sub" StringLike:
	// patterns with * and ?.
	Subjects []string
	// MaxSessionDuration is the role's maximum session, 1 h to 12 h; 0
	// means AWS's default, 1 h.
	MaxSessionDuration time.Duration
}

// AWSCredentials are temporary credentials the imitation issued.
type AWSCredentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 time.Time
	// RoleARN, SessionName and Subject say for whom.
	RoleARN, SessionName, Subject string
}

// CloudAWS imitates AWS STS's AssumeRoleWithWebIdentity (Query API, XML
// answers) at Cloud.URL()+"/aws/": unsigned requests, GET or POST, the
// checks AWS documents and its ErrorResponse shapes.
type CloudAWS struct {
	cloud *Cloud

	throttle throttle
	requests atomic.Int64

	mu        sync.Mutex
	providers map[string]*awsProvider // by URL
	roles     map[string]*AWSRole     // by ARN
	revoked   map[string]bool         // subjects (IDPRejectedClaim)
	issued    map[string]AWSCredentials
}

type awsProvider struct {
	AWSProvider
	keys *oidcKeys
}

// awsAlgs are the algorithms AWS accepts for OIDC tokens.
var awsAlgs = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}

func newCloudAWS(c *Cloud) (*CloudAWS, error) {
	return &CloudAWS{
		cloud:     c,
		providers: map[string]*awsProvider{},
		roles:     map[string]*AWSRole{},
		revoked:   map[string]bool{},
		issued:    map[string]AWSCredentials{},
	}, nil
}

// Endpoint returns the STS endpoint URL, ending in "/aws/".
func (a *CloudAWS) Endpoint() string { return a.cloud.base + "/aws/" }

// AddOIDCProvider registers (or replaces) an IAM OIDC provider.
func (a *CloudAWS) AddOIDCProvider(p AWSProvider) error {
	if p.URL == "" || len(p.ClientIDs) == 0 {
		return fmt.Errorf("sandbox: aws: an OIDC provider needs a URL and at least one client ID")
	}
	p.ClientIDs = append([]string(nil), p.ClientIDs...)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.providers[p.URL] = &awsProvider{AWSProvider: p, keys: a.cloud.newOIDCKeys(p.URL, p.JWKSURI, awsAlgs)}
	return nil
}

// AddRole registers (or replaces) a role.
func (a *CloudAWS) AddRole(r AWSRole) error {
	if !strings.HasPrefix(r.ARN, "arn:aws:iam::") || !strings.Contains(r.ARN, ":role/") {
		return fmt.Errorf("sandbox: aws: role ARN %q is not arn:aws:iam::ACCOUNT:role/NAME", r.ARN)
	}
	if r.MaxSessionDuration == 0 {
		r.MaxSessionDuration = time.Hour
	}
	if r.MaxSessionDuration < time.Hour || r.MaxSessionDuration > 12*time.Hour {
		return fmt.Errorf("sandbox: aws: MaxSessionDuration %s is not within 1h..12h", r.MaxSessionDuration)
	}
	r.Subjects = append([]string(nil), r.Subjects...)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roles[r.ARN] = &r
	return nil
}

// RevokeSubject makes the provider reject tokens of sub: they are
// answered IDPRejectedClaim (403).
func (a *CloudAWS) RevokeSubject(sub string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.revoked[sub] = true
}

// SetThrottle answers the next n requests with Throttling ("Rate
// exceeded"), as STS does above an account's request rate.
func (a *CloudAWS) SetThrottle(n int) { a.throttle.set(n) }

// Requests returns the number of requests received.
func (a *CloudAWS) Requests() int64 { return a.requests.Load() }

// Credentials returns the credentials issued under accessKeyID.
func (a *CloudAWS) Credentials(accessKeyID string) (AWSCredentials, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.issued[accessKeyID]
	return c, ok
}

// IssuedCount returns the number of credentials issued.
func (a *CloudAWS) IssuedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.issued)
}

// awsError is an STS error answer.
type awsError struct {
	status        int
	code, message string
}

func (e *awsError) Error() string { return e.code + ": " + e.message }

func awsErr(status int, code, msg string) *awsError {
	return &awsError{status: status, code: code, message: msg}
}

// awsValidation is a ValidationError for one parameter constraint, in AWS's
// words: "1 validation error detected: Value 'x' at 'roleSessionName'
// failed to satisfy constraint: Member must ...".
func awsValidation(value *string, member, constraint string) *awsError {
	v := "null"
	if value != nil {
		v = *value
		if len(v) > awsMaxRoleARN {
			v = v[:awsMaxRoleARN] + "..."
		}
		v = "'" + v + "'"
	}
	return awsErr(http.StatusBadRequest, AWSValidationError,
		fmt.Sprintf("1 validation error detected: Value %s at '%s' failed to satisfy constraint: Member must %s", v, member, constraint))
}

func (a *CloudAWS) handle(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		a.writeError(w, awsErr(http.StatusMethodNotAllowed, "InvalidHttpRequest", "The HTTP method is not supported"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, cloudMaxBody)
	if err := r.ParseForm(); err != nil {
		a.writeError(w, awsErr(http.StatusBadRequest, "MalformedQueryString", "The request body could not be parsed"))
		return
	}
	if a.throttle.take() {
		a.writeError(w, awsErr(http.StatusBadRequest, AWSThrottling, AWSMsgRateExceeded))
		return
	}
	creds, res, aerr := a.assume(r.Context(), r.Form)
	if aerr != nil {
		a.writeError(w, aerr)
		return
	}
	a.writeResult(w, creds, res)
}

// assumeResult is the rest of a successful answer.
type assumeResult struct {
	subject, audience, provider, assumedARN, assumedID string
}

// assume checks the request in AWS's order: action and version, parameter
// validation, the token (provider by iss, audience, signature, expiry,
// subject), the role's trust policy and session duration.
func (a *CloudAWS) assume(ctx context.Context, form map[string][]string) (*AWSCredentials, *assumeResult, *awsError) {
	get := func(name string) *string {
		if v, ok := form[name]; ok && len(v) > 0 {
			return &v[0]
		}
		return nil
	}
	action := get("Action")
	if action == nil || *action == "" {
		return nil, nil, awsErr(http.StatusBadRequest, AWSMissingAction, "Missing Action")
	}
	version := get("Version")
	if *action != "AssumeRoleWithWebIdentity" || version == nil || *version != AWSVersion {
		v := ""
		if version != nil {
			v = *version
		}
		return nil, nil, awsErr(http.StatusBadRequest, AWSInvalidAction,
			fmt.Sprintf("Could not find operation %s for version %s", truncate(*action), truncate(v)))
	}

	roleARN, session, tok := get("RoleArn"), get("RoleSessionName"), get("WebIdentityToken")
	switch {
	case roleARN == nil:
		return nil, nil, awsValidation(nil, "roleArn", "not be null")
	case len(*roleARN) < awsMinRoleARN:
		return nil, nil, awsValidation(roleARN, "roleArn", fmt.Sprintf("have length greater than or equal to %d", awsMinRoleARN))
	case len(*roleARN) > awsMaxRoleARN:
		return nil, nil, awsValidation(roleARN, "roleArn", fmt.Sprintf("have length less than or equal to %d", awsMaxRoleARN))
	case session == nil:
		return nil, nil, awsValidation(nil, "roleSessionName", "not be null")
	case len(*session) < awsMinSessionName:
		return nil, nil, awsValidation(session, "roleSessionName", fmt.Sprintf("have length greater than or equal to %d", awsMinSessionName))
	case len(*session) > awsMaxSessionName:
		return nil, nil, awsValidation(session, "roleSessionName", fmt.Sprintf("have length less than or equal to %d", awsMaxSessionName))
	case !awsSessionNamePattern.MatchString(*session):
		return nil, nil, awsValidation(session, "roleSessionName", `satisfy regular expression pattern: [\w+=,.@-]*`)
	case tok == nil:
		return nil, nil, awsValidation(nil, "webIdentityToken", "not be null")
	case len(*tok) < awsMinToken:
		return nil, nil, awsValidation(nil, "webIdentityToken", fmt.Sprintf("have length greater than or equal to %d", awsMinToken))
	case len(*tok) > awsMaxToken:
		// AWS does not echo a token in its messages.
		return nil, nil, awsValidation(nil, "webIdentityToken", fmt.Sprintf("have length less than or equal to %d", awsMaxToken))
	}
	duration := int64(3600)
	if d := get("DurationSeconds"); d != nil {
		n, err := strconv.ParseInt(*d, 10, 64)
		switch {
		case err != nil:
			return nil, nil, awsErr(http.StatusBadRequest, "InvalidParameterValue",
				fmt.Sprintf("Value (%s) for parameter DurationSeconds is invalid. Expected an integer.", truncate(*d)))
		case n < awsMinDuration:
			return nil, nil, awsValidation(d, "durationSeconds", fmt.Sprintf("have value greater than or equal to %d", awsMinDuration))
		case n > awsMaxDuration:
			return nil, nil, awsValidation(d, "durationSeconds", fmt.Sprintf("have value less than or equal to %d", awsMaxDuration))
		}
		duration = n
	}

	parsed, err := token.ParseUnverified(*tok)
	if err != nil {
		return nil, nil, awsErr(http.StatusBadRequest, AWSInvalidIdentityToken, AWSMsgNotJWT)
	}
	cl := parsed.Claims
	a.mu.Lock()
	prov := a.providers[cl.Issuer]
	a.mu.Unlock()
	if prov == nil {
		return nil, nil, awsErr(http.StatusBadRequest, AWSInvalidIdentityToken, AWSMsgNoProvider+clip(cl.Issuer, 512))
	}
	aud := ""
	for _, v := range append(append([]string(nil), cl.Audience...), cl.AZP) {
		if v != "" && hasString(prov.ClientIDs, v) {
			aud = v
			break
		}
	}
	if aud == "" {
		return nil, nil, awsErr(http.StatusBadRequest, AWSInvalidIdentityToken, AWSMsgAudience)
	}
	switch problem, _ := prov.keys.verify(ctx, *tok); problem {
	case keyUnreachable:
		return nil, nil, awsErr(http.StatusBadRequest, AWSIDPCommunicationError, AWSMsgKeysUnreachable)
	case keyUnknown, keyBadSig:
		return nil, nil, awsErr(http.StatusBadRequest, AWSInvalidIdentityToken, AWSMsgSignature)
	}
	now := time.Now()
	if cl.Expiry.IsZero() || !now.Before(cl.Expiry) {
		exp := int64(0)
		if !cl.Expiry.IsZero() {
			exp = cl.Expiry.Unix()
		}
		return nil, nil, awsErr(http.StatusBadRequest, AWSExpiredToken,
			fmt.Sprintf("%s%d must be before the expiration date/time %d", AWSMsgExpired, now.Unix(), exp))
	}
	if cl.Subject == "" {
		return nil, nil, awsErr(http.StatusBadRequest, AWSInvalidIdentityToken, AWSMsgNoSubject)
	}
	a.mu.Lock()
	revoked := a.revoked[cl.Subject]
	role := a.roles[*roleARN]
	a.mu.Unlock()
	if revoked {
		return nil, nil, awsErr(http.StatusForbidden, AWSIDPRejectedClaim, AWSMsgRejected)
	}
	if role == nil || role.Provider != prov.URL || (role.Audience != "" && role.Audience != aud) ||
		(len(role.Subjects) > 0 && !matchAnyGlob(role.Subjects, cl.Subject)) {
		return nil, nil, awsErr(http.StatusForbidden, AWSAccessDenied, AWSMsgNotAuthorized)
	}
	if time.Duration(duration)*time.Second > role.MaxSessionDuration {
		return nil, nil, awsErr(http.StatusBadRequest, AWSValidationError, AWSMsgDurationExceeds)
	}

	roleName := role.ARN[strings.LastIndex(role.ARN, "/")+1:]
	account := strings.SplitN(strings.TrimPrefix(role.ARN, "arn:aws:iam::"), ":", 2)[0]
	creds := AWSCredentials{
		AccessKeyID:     "ASIA" + randomString(upperAlnum, 16),
		SecretAccessKey: randomString(base64Like, 40),
		SessionToken:    "IQoJb3JpZ2luX2VjE" + randomString(base64Like, 300),
		Expiration:      now.Add(time.Duration(duration) * time.Second).UTC().Truncate(time.Second),
		RoleARN:         role.ARN,
		SessionName:     *session,
		Subject:         cl.Subject,
	}
	a.mu.Lock()
	a.issued[creds.AccessKeyID] = creds
	a.mu.Unlock()
	roleID := "AROA" + strings.ToUpper(fmt.Sprintf("%x", roleName))[:min(17, 2*len(roleName))]
	return &creds, &assumeResult{
		subject:    cl.Subject,
		audience:   aud,
		provider:   strings.TrimPrefix(strings.TrimPrefix(prov.URL, "https://"), "http://"),
		assumedARN: "arn:aws:sts::" + account + ":assumed-role/" + roleName + "/" + *session,
		assumedID:  roleID + ":" + *session,
	}, nil
}

// matchAnyGlob reports whether s matches one of IAM's StringLike patterns
// (* any run, ? one character).
func matchAnyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if globMatch(p, s) {
			return true
		}
	}
	return false
}

func globMatch(p, s string) bool {
	// Iterative wildcard matching with backtracking on the last *.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

const awsXMLNS = "https://sts.amazonaws.com/doc/" + AWSVersion + "/"

type awsErrorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

type awsAssumeResponse struct {
	XMLName xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Result  struct {
		SubjectFromWebIdentityToken string `xml:"SubjectFromWebIdentityToken"`
		Audience                    string `xml:"Audience"`
		AssumedRoleUser             struct {
			Arn           string `xml:"Arn"`
			AssumedRoleID string `xml:"AssumedRoleId"`
		} `xml:"AssumedRoleUser"`
		Credentials struct {
			SessionToken    string `xml:"SessionToken"`
			SecretAccessKey string `xml:"SecretAccessKey"`
			Expiration      string `xml:"Expiration"`
			AccessKeyID     string `xml:"AccessKeyId"`
		} `xml:"Credentials"`
		Provider string `xml:"Provider"`
	} `xml:"AssumeRoleWithWebIdentityResult"`
	ResponseMetadata struct {
		RequestID string `xml:"RequestId"`
	} `xml:"ResponseMetadata"`
}

func (a *CloudAWS) writeError(w http.ResponseWriter, e *awsError) {
	noteError(w, e.code)
	var body awsErrorResponse
	body.XMLNS = awsXMLNS
	body.Error.Type = "Sender"
	body.Error.Code = e.code
	body.Error.Message = e.message
	body.RequestID = newUUID()
	writeXML(w, e.status, body.RequestID, body)
}

func (a *CloudAWS) writeResult(w http.ResponseWriter, c *AWSCredentials, res *assumeResult) {
	var body awsAssumeResponse
	body.XMLNS = awsXMLNS
	body.Result.SubjectFromWebIdentityToken = res.subject
	body.Result.Audience = res.audience
	body.Result.AssumedRoleUser.Arn = res.assumedARN
	body.Result.AssumedRoleUser.AssumedRoleID = res.assumedID
	body.Result.Credentials.SessionToken = c.SessionToken
	body.Result.Credentials.SecretAccessKey = c.SecretAccessKey
	body.Result.Credentials.Expiration = c.Expiration.Format(time.RFC3339)
	body.Result.Credentials.AccessKeyID = c.AccessKeyID
	body.Result.Provider = res.provider
	body.ResponseMetadata.RequestID = newUUID()
	writeXML(w, http.StatusOK, body.ResponseMetadata.RequestID, body)
}

func writeXML(w http.ResponseWriter, status int, requestID string, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("x-amzn-RequestId", requestID)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}

// errAWS is returned by ParseAWSError for a body that is not an STS
// ErrorResponse.
var errAWS = errors.New("sandbox: not an STS ErrorResponse")

// ParseAWSError reads an STS ErrorResponse body (for tests and tools):
// the error code and message.
func ParseAWSError(body []byte) (code, message string, err error) {
	var e awsErrorResponse
	if xml.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		return "", "", errAWS
	}
	return e.Error.Code, e.Error.Message, nil
}
