package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// DefaultCloudAddr is the listen address of the cloud imitations in the
// demo (`chainbroker sandbox --cloud-addr`).
const DefaultCloudAddr = "127.0.0.1:8484"

// Cloud imitates the token services of three clouds on one listener, each
// under its own path prefix, so that chains into cloud targets run against
// the same rules (and the same error answers) as the real services, on
// loopback:
//
//   - /aws/: AWS STS, the Query API action AssumeRoleWithWebIdentity
//     (CloudAWS);
//   - /gcp/v1/token: Google Security Token Service, and
//     /gcp/iamcredentials/v1/projects/-/serviceAccounts/{email}:generateAccessToken:
//     IAM Credentials service account impersonation (CloudGCP);
//   - /azure/{tenant}/oauth2/v2.0/token: the Microsoft Entra token endpoint,
//     client credentials with a federated assertion (CloudAzure).
//
// Each trusts OpenID providers by issuer URL: the keys come from the
// issuer's discovery document (jwks_uri) unless a JWKS URL is configured,
// as the clouds do. Where the clouds' documentation gives the wording of an
// error, the imitation uses it; elsewhere the wording is the sandbox's own
// and the doc comment of the constant says so.
//
// The imitations never log a token or a credential.
type Cloud struct {
	// AWS is the AWS STS imitation.
	AWS *CloudAWS
	// GCP is the Google STS and IAM Credentials imitation.
	GCP *CloudGCP
	// Azure is the Microsoft Entra imitation.
	Azure *CloudAzure

	base      string
	log       *slog.Logger
	http      *http.Server
	transport *http.Transport
	wg        sync.WaitGroup
}

// Request bounds of the imitations.
const (
	// cloudMaxBody bounds a request body (the clouds' own limits are
	// larger; the sandbox's tokens are at most token.MaxTokenBytes).
	cloudMaxBody = 64 << 10
	// cloudMaxDiscovery bounds a discovery document.
	cloudMaxDiscovery = 64 << 10
)

func newCloud(ln net.Listener, addr string, log *slog.Logger) (*Cloud, error) {
	c := &Cloud{
		base:      issuerBase(addr, ln),
		log:       log,
		transport: http.DefaultTransport.(*http.Transport).Clone(),
	}
	var err error
	if c.AWS, err = newCloudAWS(c); err != nil {
		return nil, err
	}
	if c.GCP, err = newCloudGCP(c); err != nil {
		return nil, err
	}
	if c.Azure, err = newCloudAzure(c); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/aws", c.AWS.handle)
	mux.HandleFunc("/aws/", c.AWS.handle)
	mux.HandleFunc("POST /gcp/v1/token", c.GCP.handleToken)
	mux.HandleFunc("POST /gcp/iamcredentials/v1/projects/{project}/serviceAccounts/{sa}", c.GCP.handleGenerateAccessToken)
	mux.HandleFunc("POST /azure/{tenant}/oauth2/v2.0/token", c.Azure.handleToken)
	mux.HandleFunc("GET /azure/{tenant}/discovery/v2.0/keys", c.Azure.handleKeys)
	c.http = newHTTPServer(c.logRequests(mux), log)
	return c, nil
}

// URL returns the base URL of the listener, e.g. http://127.0.0.1:8484.
func (c *Cloud) URL() string { return c.base }

func (c *Cloud) serve(ln net.Listener) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := c.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("serve", "err", err)
		}
	}()
}

func (c *Cloud) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, c.http.Close())
	}
	c.wg.Wait()
	c.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("sandbox: cloud: shutdown: %w", err)
	}
	return nil
}

func (c *Cloud) httpClient() *http.Client {
	return &http.Client{
		Transport: c.transport,
		Timeout:   5 * time.Second,
		// Discovery and keys come from the configured URLs only.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// logRequests logs one debug line per request: method, path, status and
// the cloud's error code, never a parameter or header.
func (c *Cloud) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if !c.log.Enabled(r.Context(), slog.LevelDebug) {
			return
		}
		attrs := []any{"method", r.Method, "path", truncate(r.URL.Path), "status", rec.status, "duration", time.Since(start)}
		if rec.oauthError != "" {
			attrs = append(attrs, "error", rec.oauthError)
		}
		c.log.Debug("cloud request", attrs...)
	})
}

// noteError records the error code for the request log line.
func noteError(w http.ResponseWriter, code string) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.oauthError = truncate(code)
	}
}

// throttle is a count of requests still to be answered with the cloud's
// throttling error (SetThrottle on each cloud).
type throttle struct{ n atomic.Int64 }

func (t *throttle) set(n int) { t.n.Store(int64(max(n, 0))) }

// take reports whether this request is throttled, consuming one.
func (t *throttle) take() bool {
	for {
		n := t.n.Load()
		if n <= 0 {
			return false
		}
		if t.n.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// keyProblem classifies why a token's signature could not be checked.
type keyProblem int

const (
	keyOK          keyProblem = iota
	keyUnreachable            // discovery or JWKS could not be fetched
	keyUnknown                // no key fits the token's kid and alg
	keyBadSig                 // the signature does not verify (or alg refused)
)

// oidcKeys are the keys of one trusted OpenID provider: from jwksURI, or
// from the jwks_uri of the issuer's discovery document (fetched once, on
// first use, and again after a failure).
type oidcKeys struct {
	cloud   *Cloud
	issuer  string
	jwksURI string
	algs    []string

	mu       sync.Mutex
	verifier *token.Verifier
}

func (c *Cloud) newOIDCKeys(issuer, jwksURI string, algs []string) *oidcKeys {
	k := &oidcKeys{cloud: c, issuer: issuer, jwksURI: jwksURI, algs: algs}
	if jwksURI != "" {
		k.verifier = c.remoteVerifier(jwksURI, algs)
	}
	return k
}

func (c *Cloud) remoteVerifier(jwksURI string, algs []string) *token.Verifier {
	return token.NewRemoteVerifier(token.RemoteKeys{
		URL:                jwksURI,
		HTTPClient:         c.httpClient(),
		MinRefreshInterval: time.Second,
	}, algs)
}

// verify checks compact's signature with the provider's keys.
func (k *oidcKeys) verify(ctx context.Context, compact string) (keyProblem, error) {
	v, err := k.getVerifier(ctx)
	if err != nil {
		return keyUnreachable, err
	}
	_, err = v.Verify(ctx, compact)
	switch {
	case err == nil:
		return keyOK, nil
	case errors.Is(err, token.ErrKeysUnavailable):
		return keyUnreachable, err
	case errors.Is(err, token.ErrKeyUnknown):
		return keyUnknown, err
	default:
		return keyBadSig, err
	}
}

func (k *oidcKeys) getVerifier(ctx context.Context) (*token.Verifier, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.verifier != nil {
		return k.verifier, nil
	}
	uri, err := discoverJWKS(ctx, k.cloud.httpClient(), k.issuer)
	if err != nil {
		return nil, err
	}
	k.verifier = k.cloud.remoteVerifier(uri, k.algs)
	return k.verifier, nil
}

// discoverJWKS reads jwks_uri from issuer's OpenID discovery document,
// whose issuer must be issuer exactly (OpenID Connect Discovery §4.3).
func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cloudMaxDiscovery+1))
	if err != nil || len(body) > cloudMaxDiscovery {
		return "", fmt.Errorf("discovery: unreadable or above %d bytes", cloudMaxDiscovery)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != issuer || doc.JWKSURI == "" {
		return "", fmt.Errorf("discovery: issuer %q or jwks_uri missing", doc.Issuer)
	}
	return doc.JWKSURI, nil
}

// randomString returns n characters drawn from alphabet.
func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

const (
	upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	base64Like = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	urlSafe    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

// hasString reports whether list contains s.
func hasString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// startCloud listens on addr, configures the imitations to trust domain A
// (ConfigureForDomainA) and serves them.
func startCloud(addr string, log *slog.Logger, a *DomainA) (*Cloud, error) {
	ln, err := listen(addr)
	if err != nil {
		return nil, fmt.Errorf("sandbox: cloud: %w", err)
	}
	c, err := newCloud(ln, addr, log)
	if err == nil {
		err = c.ConfigureForDomainA(a)
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	c.serve(ln)
	return c, nil
}

// ConfigureForDomainA sets up the clouds' side of the demo: each trusts
// domain A's issuer (keys from its discovery document), and domain A lets
// the broker ask token exchange for each cloud's audience.
//
//   - AWS: an IAM OIDC provider for A with client ID AWSAudience, and the
//     role AWSRoleARN trusting it for that audience and any subject, with a
//     1 h maximum session.
//   - Google: the provider GCPProviderID in pool GCPPool of project
//     GCPProjectNumber (default audience), and the service account
//     GCPServiceAccount granted to every principal of the pool.
//   - Entra: the application AzureClientID in tenant AzureTenantID, with
//     one federated credential per demo user (alice's and bob's sub at A,
//     audience AzureAudience).
func (c *Cloud) ConfigureForDomainA(a *DomainA) error {
	iss := a.Issuer()
	if err := c.AWS.AddOIDCProvider(AWSProvider{URL: iss, ClientIDs: []string{AWSAudience}}); err != nil {
		return err
	}
	if err := c.AWS.AddRole(AWSRole{ARN: AWSRoleARN, Provider: iss, Audience: AWSAudience}); err != nil {
		return err
	}
	if err := c.GCP.AddProvider(GCPProvider{ProjectNumber: GCPProjectNumber, Pool: GCPPool, Provider: GCPProviderID, Issuer: iss}); err != nil {
		return err
	}
	if err := c.GCP.AddServiceAccount(GCPServiceAccountConfig{
		Email: GCPServiceAccount, Pool: "projects/" + GCPProjectNumber + "/locations/global/workloadIdentityPools/" + GCPPool,
		Subjects: []string{"*"},
	}); err != nil {
		return err
	}
	if err := c.Azure.AddApp(AzureTenantID, AzureClientID,
		AzureFederatedCredential{Name: "domain-a-alice", Issuer: iss, Subject: AliceSubA},
		AzureFederatedCredential{Name: "domain-a-bob", Issuer: iss, Subject: BobSubA},
	); err != nil {
		return err
	}
	a.AllowAudience(AWSAudience)
	a.AllowAudience(GCPAudience(GCPProjectNumber, GCPPool, GCPProviderID))
	a.AllowAudience(AzureAudience)
	return nil
}

// clip bounds s to n bytes for an error message.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
