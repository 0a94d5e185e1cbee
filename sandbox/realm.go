package sandbox

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 64 << 10

// Grant type and token type URIs.
const (
	grantPassword      = "password"
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"

	tokenTypeAccess = "urn:ietf:params:oauth:token-type:access_token"

	clientAssertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Realm is what every domain shares: the URL layout, the signing key, the
// registered clients, client authentication and the response-level
// misbehaviour. DomainA embeds it, and DomainB and DomainC through their
// receiver.
type Realm struct {
	name     string
	issuer   string
	signer   *token.Signer
	jwks     []byte
	lifetime time.Duration
	log      *slog.Logger

	// Fixed before serving.
	clients     map[string]*client
	grants      map[string]grantFunc
	faultGrant  string                 // the grant response-level misbehaviour applies to
	countGrant  func(grantType string) // counts requests per grant; may be nil
	discoGrants []string

	mu         sync.Mutex
	mis        Misbehaviour
	clientKeys map[string]*token.Verifier // private_key_jwt keys by client id
	grantsOff  map[string]bool            // grants switched off at run time

	clientJTIs replayMemory // client assertion replay memory

	dpop       dpopState      // DPoP (RFC 9449): proof replay memory and nonce (dpop.go)
	mux        *http.ServeMux // routes; domains add theirs before serving
	discoExtra map[string]any // more discovery metadata (e.g. userinfo_endpoint)

	http      *http.Server
	transport *http.Transport // for the realm's own outgoing calls
	done      chan struct{}   // closed at shutdown: cuts delays short
	wg        sync.WaitGroup
}

// client is a registered OAuth client.
type client struct {
	id           string
	secret       string // "" for public clients
	public       bool
	directAccess bool // password grant
	exchange     bool // standard token exchange
	jwtGrant     bool // JWT authorization grant
}

// grantFunc serves one grant type for an authenticated client.
type grantFunc func(w http.ResponseWriter, r *http.Request, form url.Values, c *client)

func newRealm(name string, ln net.Listener, addr string, lifetime time.Duration, log *slog.Logger) (*Realm, error) {
	signer, err := token.GenerateSigner("RS256")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: signing key: %w", name, err)
	}
	jwks, err := token.PublicJWKS(signer)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: JWKS: %w", name, err)
	}
	base := issuerBase(addr, ln)
	rl := &Realm{
		name:       name,
		issuer:     base + "/realms/" + name,
		signer:     signer,
		jwks:       jwks,
		lifetime:   lifetime,
		log:        log,
		clients:    map[string]*client{},
		clientKeys: map[string]*token.Verifier{},
		grants:     map[string]grantFunc{},
		grantsOff:  map[string]bool{},
		transport:  http.DefaultTransport.(*http.Transport).Clone(),
		done:       make(chan struct{}),
	}
	prefix := "/realms/" + name
	mux := http.NewServeMux()
	rl.mux = mux
	mux.HandleFunc("GET "+prefix+"/.well-known/openid-configuration", rl.handleDiscovery)
	mux.HandleFunc("GET "+prefix+"/protocol/openid-connect/certs", rl.handleJWKS)
	mux.HandleFunc("POST "+prefix+"/protocol/openid-connect/token", rl.handleToken)
	rl.http = newHTTPServer(rl.logRequests(mux), log)
	return rl, nil
}

// newHTTPServer is the server of a sandbox listener (a realm, the cloud
// imitations): bounded reads and headers, its errors logged at warn.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Name returns the realm name ("domain-a" or "domain-b").
func (rl *Realm) Name() string { return rl.name }

// Issuer returns the realm's issuer, http://host:port/realms/<name>.
func (rl *Realm) Issuer() string { return rl.issuer }

// TokenEndpoint returns Issuer() + "/protocol/openid-connect/token".
func (rl *Realm) TokenEndpoint() string { return rl.issuer + "/protocol/openid-connect/token" }

// JWKSURI returns Issuer() + "/protocol/openid-connect/certs".
func (rl *Realm) JWKSURI() string { return rl.issuer + "/protocol/openid-connect/certs" }

// DiscoveryURL returns Issuer() + "/.well-known/openid-configuration".
func (rl *Realm) DiscoveryURL() string { return rl.issuer + "/.well-known/openid-configuration" }

// JWKS returns the realm's public JWKS document, as served at JWKSURI.
func (rl *Realm) JWKS() []byte { return append([]byte(nil), rl.jwks...) }

// KeyID returns the kid of the realm's (only) signing key.
func (rl *Realm) KeyID() string { return rl.signer.KeyID() }

// SignToken signs arbitrary claims with the realm's published key (JOSE
// typ "" means JWT), for tests that need a validly signed token with
// hand-picked claims.
func (rl *Realm) SignToken(claims map[string]any, typ string) (string, error) {
	return rl.signer.Sign(claims, token.SignOptions{Typ: typ})
}

// RegisterClientKey enables private_key_jwt (RFC 7523 §2.2) for a
// confidential client: jwks is the client's public JWKS (or PEM public
// key). The client's secret keeps working.
func (rl *Realm) RegisterClientKey(clientID string, jwks []byte) error {
	c, ok := rl.clients[clientID]
	if !ok || c.public {
		return fmt.Errorf("sandbox: %s: no confidential client %q", rl.name, clientID)
	}
	v, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		return fmt.Errorf("sandbox: %s: client %q keys: %w", rl.name, clientID, err)
	}
	rl.mu.Lock()
	rl.clientKeys[clientID] = v
	rl.mu.Unlock()
	return nil
}

// SetMisbehaviour makes the realm misbehave from the next request on (see
// Misbehaviour for which fields each domain honours). The zero value
// restores normal behaviour. Safe for concurrent use.
func (rl *Realm) SetMisbehaviour(m Misbehaviour) {
	m.ExtraClaims = cloneMap(m.ExtraClaims)
	rl.mu.Lock()
	rl.mis = m
	rl.mu.Unlock()
}

// ResetMisbehaviour restores normal behaviour.
func (rl *Realm) ResetMisbehaviour() { rl.SetMisbehaviour(Misbehaviour{}) }

// setGrantEnabled switches a grant type off (answered like an unknown one:
// 400 unsupported_grant_type, and left out of the discovery document) or
// back on.
func (rl *Realm) setGrantEnabled(grantType string, on bool) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if on {
		delete(rl.grantsOff, grantType)
	} else {
		rl.grantsOff[grantType] = true
	}
}

func (rl *Realm) grantEnabled(grantType string) bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return !rl.grantsOff[grantType]
}

func (rl *Realm) misbehaviour() Misbehaviour {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.mis
}

// httpClient returns a client for the realm's own outgoing calls; its idle
// connections are closed at shutdown.
func (rl *Realm) httpClient() *http.Client {
	return &http.Client{Transport: rl.transport, Timeout: 10 * time.Second}
}

func (rl *Realm) serve(ln net.Listener) {
	rl.wg.Add(1)
	go func() {
		defer rl.wg.Done()
		if err := rl.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rl.log.Error("serve", "err", err)
		}
	}()
}

func (rl *Realm) shutdown() error {
	close(rl.done)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := rl.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, rl.http.Close())
	}
	rl.wg.Wait()
	rl.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("sandbox: %s: shutdown: %w", rl.name, err)
	}
	return nil
}

// handleDiscovery serves the OpenID Provider metadata (the parts that exist:
// there is no authorization endpoint).
func (rl *Realm) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	grants := make([]string, 0, len(rl.discoGrants))
	for _, g := range rl.discoGrants {
		if rl.grantEnabled(g) {
			grants = append(grants, g)
		}
	}
	writeJSON(w, http.StatusOK, merge(map[string]any{
		"issuer":                                rl.issuer,
		"token_endpoint":                        rl.TokenEndpoint(),
		"jwks_uri":                              rl.JWKSURI(),
		"grant_types_supported":                 grants,
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": token.DefaultAllowedAlgs,
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"subject_types_supported":                          []string{"public"},
		"response_types_supported":                         []string{"none"},
		"scopes_supported":                                 []string{"openid", "profile", "email"},
		"claims_supported":                                 []string{"iss", "sub", "aud", "exp", "iat", "jti", "azp", "scope", "preferred_username"},
		"dpop_signing_alg_values_supported":                token.DefaultAllowedAlgs,
	}, rl.discoExtra))
}

// handleJWKS serves the realm's public keys.
func (rl *Realm) handleJWKS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(rl.jwks)
}

// handleToken is the token endpoint: body bounds, parameter checks, grant
// type, counting and response-level misbehaviour, client authentication,
// then the grant.
func (rl *Realm) handleToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			rl.writeError(w, newError(http.StatusRequestEntityTooLarge, errInvalidRequest, DescBodyTooLarge))
			return
		}
		rl.writeError(w, badRequest("Malformed form body"))
		return
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 && k != "audience" && k != "resource" {
			rl.writeError(w, badRequest(DescDuplicatedParameter))
			return
		}
	}
	if rec, ok := w.(*statusRecorder); ok {
		rec.grantType = form.Get("grant_type")
	}
	grantType := form.Get("grant_type")
	if grantType == "" {
		rl.writeError(w, badRequest(DescMissingGrantType))
		return
	}
	if rl.countGrant != nil {
		rl.countGrant(grantType)
	}
	if grantType == rl.faultGrant && rl.fault(w, r) {
		return
	}
	c, oerr := rl.authenticateClient(r, form)
	if oerr != nil {
		rl.writeError(w, oerr)
		return
	}
	grant, ok := rl.grants[grantType]
	if !ok || !rl.grantEnabled(grantType) {
		rl.writeError(w, newError(http.StatusBadRequest, errUnsupportedGrantType, DescUnsupportedGrantType))
		return
	}
	if r, ok = rl.acceptDPoP(w, r); !ok {
		return
	}
	grant(w, r, form, c)
}

// fault applies the response-level misbehaviour; true when it answered.
func (rl *Realm) fault(w http.ResponseWriter, r *http.Request) bool {
	m := rl.misbehaviour()
	if m.Delay > 0 {
		t := time.NewTimer(m.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return true
		case <-rl.done:
			rl.writeError(w, newError(http.StatusServiceUnavailable, errTemporarilyUnavail, "shutting down"))
			return true
		}
	}
	switch {
	case m.Body != "":
		status := m.Status
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(m.Body))
		return true
	case m.Status != 0 || m.Error != "":
		status, code := m.Status, m.Error
		if status == 0 {
			status = http.StatusBadRequest
		}
		if code == "" {
			code = errInvalidRequest
			if status >= 500 {
				code = errServerError
			}
		}
		rl.writeError(w, newError(status, code, m.ErrorDescription))
		return true
	}
	return false
}

// authenticateClient identifies and authenticates the client (RFC 6749
// §2.3): client_secret_basic, client_secret_post, private_key_jwt, or
// none for public clients. One method per request.
func (rl *Realm) authenticateClient(r *http.Request, form url.Values) (*client, *oauthError) {
	basicID, basicSecret, hasBasic := r.BasicAuth()
	_, hasPostSecret := form["client_secret"]
	_, hasAssertion := form["client_assertion"]
	methods := 0
	for _, used := range []bool{hasBasic, hasPostSecret, hasAssertion} {
		if used {
			methods++
		}
	}
	if methods > 1 {
		return nil, badRequest(DescMultipleClientAuth)
	}
	formID := form.Get("client_id")
	switch {
	case hasBasic:
		id, secret := formUnescape(basicID), formUnescape(basicSecret)
		if formID != "" && formID != id {
			return nil, badClient(DescInvalidClient)
		}
		return rl.checkSecret(id, secret)
	case hasPostSecret:
		return rl.checkSecret(formID, form.Get("client_secret"))
	case hasAssertion:
		return rl.checkClientAssertion(r.Context(), form)
	}
	c, ok := rl.clients[formID]
	if !ok || !c.public {
		return nil, badClient(DescInvalidClient)
	}
	return c, nil
}

// formUnescape undoes RFC 6749 §2.3.1's form encoding of Basic credentials.
func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func (rl *Realm) checkSecret(id, secret string) (*client, *oauthError) {
	c, ok := rl.clients[id]
	if !ok || c.public || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		return nil, badClient(DescInvalidClient)
	}
	return c, nil
}

// Client assertion policy: Keycloak's defaults for JWT client
// authentication (15 s clock skew, 60 s maximum expiration).
const (
	clientAssertionSkew   = 15
	clientAssertionMaxExp = 60
)

// checkClientAssertion authenticates with private_key_jwt (RFC 7523 §3):
// iss = sub = client_id, aud the issuer or the token endpoint (one value),
// exp, iat window, a jti never seen before, and the signature with the
// client's registered keys. Every refusal is 401 invalid_client.
func (rl *Realm) checkClientAssertion(ctx context.Context, form url.Values) (*client, *oauthError) {
	if form.Get("client_assertion_type") != clientAssertionTypeJWT {
		return nil, badClient("Parameter client_assertion_type has value '" + truncate(form.Get("client_assertion_type")) +
			"' but expected is '" + clientAssertionTypeJWT + "'")
	}
	raw := form.Get("client_assertion")
	t, err := parseJWT(raw)
	if err != nil {
		return nil, badClient("The client assertion is not a valid JWT")
	}
	cl := &t.claims
	if cl.Sub == "" {
		return nil, badClient("Token sub claim is required")
	}
	c, ok := rl.clients[cl.Sub]
	if !ok || c.public || cl.Iss != cl.Sub {
		return nil, badClient(DescInvalidClient)
	}
	if id := form.Get("client_id"); id != "" && id != c.id {
		return nil, badClient("client_id parameter does not match authenticated client")
	}
	rl.mu.Lock()
	keys := rl.clientKeys[c.id]
	rl.mu.Unlock()
	if keys == nil {
		return nil, badClient("Unable to load public key")
	}
	if !allowedAlg(t.alg, token.DefaultAllowedAlgs) {
		return nil, badClient(DescInvalidSignatureAlg)
	}
	if _, err := keys.Verify(ctx, raw); err != nil {
		return nil, badClient("Signature on JWT token failed validation")
	}
	if !containsAny(cl.Aud, rl.issuer, rl.TokenEndpoint()) {
		return nil, badClient(DescInvalidAudience)
	}
	if len(cl.Aud) > 1 {
		return nil, badClient(DescMultipleAudiences)
	}
	now := time.Now()
	if d := checkTimes(cl, now.Unix(), timePolicy{skew: clientAssertionSkew, maxExp: clientAssertionMaxExp}); d != "" {
		return nil, badClient(d)
	}
	if cl.JTI == "" {
		return nil, badClient(DescJTIRequired)
	}
	until := time.Unix(*cl.Exp+clientAssertionSkew+1, 0)
	if !rl.clientJTIs.mark(c.id+"\x00"+cl.JTI, until, now) {
		return nil, badClient(DescTokenReuse)
	}
	return c, nil
}

func allowedAlg(alg string, allowed []string) bool {
	for _, a := range allowed {
		if a == alg {
			return true
		}
	}
	return false
}

// containsAny reports whether list holds one of the wanted values.
func containsAny(list []string, want ...string) bool {
	for _, v := range list {
		for _, w := range want {
			if v == w {
				return true
			}
		}
	}
	return false
}

// truncate bounds a client-supplied string echoed in a description.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// tokenResponse is a successful token endpoint answer, with Keycloak's
// fields (no refresh token: the sandbox issues none).
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
	TokenType        string `json:"token_type"`
	NotBeforePolicy  int64  `json:"not-before-policy"`
	Scope            string `json:"scope,omitempty"`
	IssuedTokenType  string `json:"issued_token_type,omitempty"`
	IDToken          string `json:"id_token,omitempty"`
}

// accessClaims are the claims of an access token the realm issues for user
// u to client azp (Keycloak's: typ Bearer, the user's preferred_username).
func (rl *Realm) accessClaims(u *user, aud any, azp, scope string, now, exp time.Time) map[string]any {
	return map[string]any{
		"iss":                rl.issuer,
		"sub":                u.sub,
		"aud":                aud,
		"azp":                azp,
		"typ":                "Bearer",
		"iat":                now.Unix(),
		"exp":                exp.Unix(),
		"jti":                newUUID(),
		"scope":              scope,
		"preferred_username": u.username,
	}
}

// userWithSub finds the user with the given sub among users, or nil.
func userWithSub(users map[string]*user, sub string) *user {
	for _, u := range users {
		if u.sub == sub {
			return u
		}
	}
	return nil
}

// statusRecorder remembers what was answered, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status     int
	grantType  string
	oauthError string
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs one debug line per request: never a token, form value
// or header, only the grant type and the OAuth error code.
func (rl *Realm) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if !rl.log.Enabled(r.Context(), slog.LevelDebug) {
			return
		}
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start)}
		if rec.grantType != "" {
			attrs = append(attrs, "grant_type", truncate(rec.grantType))
		}
		if rec.oauthError != "" {
			attrs = append(attrs, "error", rec.oauthError)
		}
		rl.log.Debug("request", attrs...)
	})
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
