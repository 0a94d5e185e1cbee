package server_test

// REST and gRPC parity (issue 18): the REST facade calls the service
// implementation directly, so it must do all that a gRPC call does around
// it. Two identical servers get the same calls, one over gRPC, the other
// over REST; their answers (status, message, ErrorInfo, RetryInfo, the
// response), request ids, audit trails, metrics, traces and log lines must
// be the same.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/telemetry"
	"github.com/chainbroker/chainbroker/token"
)

// parityAS is both domains' token endpoint: hop 1 answers a grant signed
// with signer (jti-1, jti-2, ... so that two servers given the same calls
// see the same grants), hop 2 a fixed token.
type parityAS struct {
	signer *token.Signer
	jti    atomic.Int64
}

func (a *parityAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.PostForm.Get("grant_type") != oauth.GrantTypeTokenExchange {
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.c2ln",
			"token_type": "Bearer", "expires_in": 300, "scope": "profile"})
		return
	}
	now := time.Now()
	g, err := a.signer.Sign(map[string]any{
		"iss": edgeIssuerA, "sub": "alice-in-a", "aud": edgeIssuerB, "azp": "chainbroker", "typ": "Bearer",
		"iat": now.Unix(), "exp": now.Add(300 * time.Second).Unix(), "jti": fmt.Sprintf("jti-%d", a.jti.Add(1)),
		"scope": "profile",
	}, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": g, "token_type": "Bearer",
		"issued_token_type": oauth.TokenTypeAccessToken, "expires_in": 300})
}

// panickyObserver records metrics, then panics for the caller "panicker":
// a panic inside the service, which the recovery must turn into INTERNAL.
type panickyObserver struct{ *telemetry.Metrics }

func (o panickyObserver) ChainFinished(ev *store.Event, d time.Duration) {
	o.Metrics.ChainFinished(ev, d)
	if ev.Caller == "panicker" {
		panic("parity test: the observer panics for panicker")
	}
}

// parityLogs is a goroutine-safe log sink.
type parityLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *parityLogs) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *parityLogs) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// parityServer is one server of the comparison, with its own
// authorization server, store, metrics, spans and logs.
type parityServer struct {
	conn    *grpc.ClientConn
	base    string // REST
	http    *http.Client
	asURL   string
	store   *memory.Store
	metrics *telemetry.Metrics
	spans   *tracetest.SpanRecorder
	logs    *parityLogs
	auditID string // of the first chain, for GetAuditEvent
}

// parityPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate naming spiffe://parity/agent.
type parityPKI struct {
	server      tls.Certificate
	client      tls.Certificate
	clientDER   []byte
	pool        *x509.CertPool
	serverTLS   *tls.Config
	clientTLS   *tls.Config // with the client certificate
	noClientTLS *tls.Config // trusts the server, presents no certificate
}

func newParityPKI(t *testing.T) *parityPKI {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parity CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	leaf := func(serial int64, tmpl x509.Certificate) (tls.Certificate, []byte) {
		k := key()
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(serial), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, der
	}
	p := &parityPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server, _ = leaf(2, x509.Certificate{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	spiffe, _ := url.Parse("spiffe://parity/agent")
	p.client, p.clientDER = leaf(3, x509.Certificate{URIs: []*url.URL{spiffe}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	p.serverTLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.VerifyClientCertIfGiven,
		MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	p.clientTLS = &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}, MinVersion: tls.VersionTLS12}
	p.noClientTLS = &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	return p
}

func keyHash(k string) string {
	sum := sha256.Sum256([]byte(k))
	return hex.EncodeToString(sum[:])
}

// startParityServer serves a broker (domain-a -> domain-b) with API key
// callers, a rate limit of 4 calls per caller (no refill within the test),
// metrics, tracing and JSON logs; with pki, both listeners serve TLS and
// accept client certificates.
func startParityServer(t *testing.T, pki *parityPKI) *parityServer {
	t.Helper()
	signer, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := token.PublicJWKS(signer)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		t.Fatal(err)
	}
	asSrv := httptest.NewServer(&parityAS{signer: signer})
	t.Cleanup(asSrv.Close)

	ps := &parityServer{asURL: asSrv.URL, store: memory.New(memory.Options{}), metrics: telemetry.NewMetrics("domain-a", "domain-b"),
		spans: tracetest.NewSpanRecorder(), logs: &parityLogs{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ps.spans))
	log := slog.New(slog.NewJSONHandler(ps.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	creds := oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "parity-secret"}
	chainGrant := []broker.ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}}}
	br, err := broker.New(broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: edgeIssuerA, TokenEndpoint: asSrv.URL + "/a/token", Keys: keys, Creds: creds, Timeout: time.Minute},
			{Name: "domain-b", Issuer: edgeIssuerB, TokenEndpoint: asSrv.URL + "/b/token", Creds: creds, Timeout: time.Minute},
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: oauth.NewClient(oauth.ClientOptions{Timeout: time.Minute}),
		Replay:   ps.store,
		Audit:    ps.store,
		Observer: panickyObserver{ps.metrics},
		Logger:   log,
		Tracer:   tp,
		Policy: broker.Policy{Callers: []broker.CallerGrant{
			{Caller: "agent", Chains: chainGrant},
			{Caller: "agent-bad", Chains: chainGrant},
			{Caller: "panicker", Chains: chainGrant},
			{Caller: "spiffe://parity/agent", Chains: chainGrant},
			{Caller: "auditor", Roles: []string{broker.RoleAudit}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var apiKeys []auth.APIKey
	for _, c := range []string{"agent", "agent-bad", "panicker", "auditor", "outsider", "greedy"} {
		apiKeys = append(apiKeys, auth.APIKey{Name: c, SHA256: keyHash(c + "-key")})
	}
	authn, err := auth.New(auth.Config{APIKeys: apiKeys, MTLS: pki != nil})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Broker: br, Audit: ps.store, Auth: authn, Metrics: ps.metrics, Tracer: tp, Logger: log,
		RateLimit: server.RateLimit{Rate: 1e-6, Burst: 4}, ShutdownTimeout: 5 * time.Second}
	scheme, dialCreds := "http", insecure.NewCredentials()
	ps.http = &http.Client{Timeout: 30 * time.Second}
	if pki != nil {
		cfg.GRPCTLS, cfg.HTTPTLS = pki.serverTLS, pki.serverTLS
		scheme, dialCreds = "https", credentials.NewTLS(pki.clientTLS)
		ps.http.Transport = &http.Transport{TLSClientConfig: pki.clientTLS, ForceAttemptHTTP2: true}
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLis, httpLis) }()
	ps.conn, err = grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(dialCreds))
	if err != nil {
		t.Fatal(err)
	}
	ps.base = scheme + "://" + httpLis.Addr().String()
	t.Cleanup(func() {
		ps.conn.Close()
		ps.http.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := ps.http.Get(ps.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ps
}

// parityCall is one call, made over gRPC to one server and over REST to
// the other.
type parityCall struct {
	name       string
	fullMethod string
	req        func(ps *parityServer) proto.Message
	newResp    func() proto.Message
	httpMethod string
	path       func(ps *parityServer) string // with the query
	md         []string                      // metadata / header pairs
	// What the call must answer (checked on the gRPC side; REST must
	// answer the same).
	code   codes.Code
	reason string
}

// want sets what the call must answer.
func (c parityCall) want(code codes.Code, reason string) parityCall {
	c.code, c.reason = code, reason
	return c
}

// parityAnswer is what a call answered, in a form that compares across
// transports: the gRPC status as JSON (code, message with the rate limit's
// wait masked, details with RetryInfo's delay zeroed), the response as
// JSON (volatile fields cleared), and the request id echoed.
type parityAnswer struct {
	status    string
	resp      string
	requestID string
	retry     bool // REST: a Retry-After header; gRPC: a RetryInfo
}

var reRetryIn = regexp.MustCompile(`retry in [0-9.]+[a-zµ0-9.]*`)

func statusJSON(t *testing.T, st *status.Status) string {
	t.Helper()
	if st == nil {
		st = status.New(codes.OK, "")
	}
	p := st.Proto()
	p.Message = reRetryIn.ReplaceAllString(p.Message, "retry in …")
	for i, d := range p.Details {
		m, err := d.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if ri, ok := m.(*errdetails.RetryInfo); ok {
			ri.RetryDelay = nil
			if err := p.Details[i].MarshalFrom(ri); err != nil {
				t.Fatal(err)
			}
		}
	}
	return protojson.Format(p)
}

// normalize clears what differs between two servers given the same calls:
// audit ids and times, durations, page tokens, the authorization servers'
// URLs.
func (ps *parityServer) normalize(t *testing.T, m proto.Message) string {
	t.Helper()
	m = proto.Clone(m)
	hops := func(hs []*pb.Hop) {
		for _, h := range hs {
			h.Duration, h.Endpoint = nil, strings.ReplaceAll(h.Endpoint, ps.asURL, "{as}")
		}
	}
	event := func(e *pb.AuditEvent) {
		if e != nil {
			e.Id, e.Time = "", nil
			hops(e.Hops)
		}
	}
	switch m := m.(type) {
	case *pb.ChainResponse:
		m.AuditId = ""
		hops(m.Hops)
	case *pb.ListAuditEventsResponse:
		m.NextPageToken = ""
		for _, e := range m.Events {
			event(e)
		}
	case *pb.GetAuditEventResponse:
		event(m.Event)
	case *pb.ListDomainsResponse:
		for _, d := range m.Domains {
			d.TokenEndpoint = strings.ReplaceAll(d.TokenEndpoint, ps.asURL, "{as}")
		}
	}
	return protojson.Format(m)
}

func (ps *parityServer) grpcCall(t *testing.T, c parityCall) parityAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, c.md...)
	resp := c.newResp()
	var header metadata.MD
	err := ps.conn.Invoke(ctx, c.fullMethod, c.req(ps), resp, grpc.Header(&header))
	st := status.Convert(err)
	a := parityAnswer{status: statusJSON(t, st)}
	if v := header.Get("x-request-id"); len(v) > 0 {
		a.requestID = v[0]
	}
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			a.retry = true
		}
	}
	if err == nil {
		a.resp = ps.normalize(t, resp)
		if r, ok := resp.(*pb.ChainResponse); ok && ps.auditID == "" {
			ps.auditID = r.AuditId
		}
	}
	return a
}

func (ps *parityServer) restCall(t *testing.T, c parityCall) (parityAnswer, int) {
	t.Helper()
	var body io.Reader
	if c.httpMethod == http.MethodPost {
		b, err := protojson.Marshal(c.req(ps))
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(c.httpMethod, ps.base+c.path(ps), body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(c.md); i += 2 {
		req.Header.Set(c.md[i], c.md[i+1])
	}
	resp, err := ps.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := parityAnswer{requestID: resp.Header.Get("Grpc-Metadata-X-Request-Id"), retry: resp.Header.Get("Retry-After") != ""}
	if resp.StatusCode != http.StatusOK {
		var sp statuspb.Status
		if err := protojson.Unmarshal(raw, &sp); err != nil {
			t.Fatalf("%s: HTTP %d, not a status: %v: %.300s", c.name, resp.StatusCode, err, raw)
		}
		a.status = statusJSON(t, status.FromProto(&sp))
		return a, resp.StatusCode
	}
	a.status = statusJSON(t, status.New(codes.OK, ""))
	out := c.newResp()
	if err := protojson.Unmarshal(raw, out); err != nil {
		t.Fatalf("%s: %v: %.300s", c.name, err, raw)
	}
	a.resp = ps.normalize(t, out)
	if r, ok := out.(*pb.ChainResponse); ok && ps.auditID == "" {
		ps.auditID = r.AuditId
	}
	return a, resp.StatusCode
}

// parityCalls: a chain; refused as a bad request, by policy, for lack of
// credentials (API key, bearer), by a panic; a caller over its rate limit;
// the audit listing without and with the audit role, filtered, one event,
// a bad page size.
func parityCalls() []parityCall {
	chain := func(name, key string, req *pb.ChainRequest, md ...string) parityCall {
		return parityCall{name: name, fullMethod: pb.ChainService_Chain_FullMethodName,
			req:     func(*parityServer) proto.Message { return req },
			newResp: func() proto.Message { return &pb.ChainResponse{} }, httpMethod: http.MethodPost,
			path: func(*parityServer) string { return "/v1/chain" }, md: append([]string{"x-api-key", key}, md...)}
	}
	ok := &pb.ChainRequest{SubjectToken: "opaque-subject", SourceDomain: "domain-a", TargetDomain: "domain-b", Scope: []string{"profile"}}
	domains := func(name string) parityCall {
		return parityCall{name: name, fullMethod: pb.ChainService_ListDomains_FullMethodName,
			req:     func(*parityServer) proto.Message { return &pb.ListDomainsRequest{} },
			newResp: func() proto.Message { return &pb.ListDomainsResponse{} }, httpMethod: http.MethodGet,
			path: func(*parityServer) string { return "/v1/domains" }, md: []string{"x-api-key", "greedy-key"}}
	}
	list := func(name, key string, req *pb.ListAuditEventsRequest, query string) parityCall {
		return parityCall{name: name, fullMethod: pb.AuditService_ListAuditEvents_FullMethodName,
			req:     func(*parityServer) proto.Message { return req },
			newResp: func() proto.Message { return &pb.ListAuditEventsResponse{} }, httpMethod: http.MethodGet,
			path: func(*parityServer) string { return "/v1/audit/events" + query }, md: []string{"x-api-key", key}}
	}
	bearer := chain("chain, bearer not accepted", "", ok)
	bearer.md = []string{"authorization", "Bearer not-a-jwt"}
	event := parityCall{name: "audit event", fullMethod: pb.AuditService_GetAuditEvent_FullMethodName,
		req:     func(ps *parityServer) proto.Message { return &pb.GetAuditEventRequest{Id: ps.auditID} },
		newResp: func() proto.Message { return &pb.GetAuditEventResponse{} }, httpMethod: http.MethodGet,
		path: func(ps *parityServer) string { return "/v1/audit/events/" + url.PathEscape(ps.auditID) }, md: []string{"x-api-key", "auditor-key"}}
	return []parityCall{
		chain("chain", "agent-key", ok, "x-request-id", "parity-request-1"),
		chain("chain, bad request", "agent-bad-key", &pb.ChainRequest{SourceDomain: "domain-a", TargetDomain: "domain-b"}).
			want(codes.InvalidArgument, "REQUEST_INVALID"),
		chain("chain, unknown domain", "agent-bad-key", &pb.ChainRequest{SubjectToken: "opaque-subject", SourceDomain: "domain-a", TargetDomain: "domain-z"}).
			want(codes.InvalidArgument, "DOMAIN_UNKNOWN"),
		chain("chain, refused by policy", "outsider-key", ok).want(codes.PermissionDenied, "CHAIN_NOT_ALLOWED"),
		chain("chain, bad API key", "nope", ok).want(codes.Unauthenticated, "UNAUTHENTICATED"),
		bearer.want(codes.Unauthenticated, "UNAUTHENTICATED"),
		chain("chain, panic in the service", "panicker-key", ok).want(codes.Internal, "INTERNAL"),
		domains("domains 1"), domains("domains 2"), domains("domains 3"), domains("domains 4"),
		domains("domains, rate limited").want(codes.ResourceExhausted, "RATE_LIMITED"),
		list("audit without the role", "agent-key", &pb.ListAuditEventsRequest{}, "").want(codes.PermissionDenied, "AUDIT_NOT_ALLOWED"),
		list("audit listing", "auditor-key", &pb.ListAuditEventsRequest{PageSize: 20}, "?page_size=20"),
		list("audit listing, filtered", "auditor-key", &pb.ListAuditEventsRequest{Caller: "agent", Outcome: pb.Outcome_OUTCOME_SUCCESS},
			"?caller=agent&outcome=success"),
		event,
		list("audit listing, bad page size", "auditor-key", &pb.ListAuditEventsRequest{PageSize: -1}, "?page_size=-1").
			want(codes.InvalidArgument, "REQUEST_INVALID"),
	}
}

// metricLines are the server's chainbroker_* series: counters and
// histogram counts (durations differ between runs).
func (ps *parityServer) metricLines(t *testing.T) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	ps.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var out []string
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		name, _, _ := strings.Cut(line, "{")
		if strings.HasPrefix(line, "chainbroker_") && !strings.HasSuffix(name, "_bucket") && !strings.HasSuffix(name, "_sum") {
			out = append(out, line)
		}
	}
	return out
}

// auditTrail is the store's trail, normalized.
func (ps *parityServer) auditTrail(t *testing.T) []string {
	t.Helper()
	events, _, err := ps.store.List(context.Background(), store.Filter{}, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		e.ID, e.Time = "", time.Time{}
		for i := range e.Hops {
			e.Hops[i].Duration, e.Hops[i].Endpoint = 0, strings.ReplaceAll(e.Hops[i].Endpoint, ps.asURL, "{as}")
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// serverSpans are the service methods' server spans, summarised: name,
// status, the rpc.* attributes, the step events, and whether the chain's
// span is its child; sorted.
func (ps *parityServer) serverSpans(t *testing.T, want int) []string {
	t.Helper()
	var spans []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		spans = ps.spans.Ended()
		n := 0
		for _, s := range spans {
			if s.SpanKind() == trace.SpanKindServer && strings.HasPrefix(s.Name(), "chainbroker.v1.") {
				n++
			}
		}
		if n >= want || time.Now().After(deadline) { // gRPC ends its span once the answer is sent
			break
		}
	}
	var out []string
	for _, s := range spans {
		if s.SpanKind() != trace.SpanKindServer || !strings.HasPrefix(s.Name(), "chainbroker.v1.") {
			continue
		}
		attrs := map[attribute.Key]string{}
		for _, a := range s.Attributes() {
			if strings.HasPrefix(string(a.Key), "rpc.") {
				attrs[a.Key] = a.Value.String()
			}
		}
		var events []string
		for _, e := range s.Events() {
			events = append(events, e.Name)
		}
		child := false
		for _, c := range spans {
			if c.Name() == "chainbroker.Chain" && c.Parent().SpanID() == s.SpanContext().SpanID() {
				child = true
			}
		}
		out = append(out, fmt.Sprintf("%s status=%s %q attrs=%v events=%v chain=%v", s.Name(), s.Status().Code, s.Status().Description,
			attrs, events, child))
	}
	slices.Sort(out)
	return out
}

// logLines are the log lines' level, message and identifying attributes
// (request ids the server generated masked), sorted.
func (ps *parityServer) logLines(t *testing.T) []string {
	t.Helper()
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(ps.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "serving" {
			continue // the listeners' addresses
		}
		id, _ := m["request_id"].(string)
		if id != "" && id != "parity-request-1" {
			id = "generated"
		}
		out = append(out, fmt.Sprintf("%v %v method=%v caller=%v reason=%v outcome=%v request_id=%s",
			m["level"], m["msg"], m["method"], m["caller"], m["reason"], m["outcome"], id))
	}
	slices.Sort(out)
	return out
}

func diffLines(t *testing.T, what string, grpcSide, restSide []string) {
	t.Helper()
	if !slices.Equal(grpcSide, restSide) {
		t.Errorf("%s differ:\ngRPC:\n  %s\nREST:\n  %s", what, strings.Join(grpcSide, "\n  "), strings.Join(restSide, "\n  "))
	}
}

func TestRESTParity(t *testing.T) {
	g, r := startParityServer(t, nil), startParityServer(t, nil)
	calls := parityCalls()
	for _, c := range calls {
		ga := g.grpcCall(t, c)
		ra, httpStatus := r.restCall(t, c)
		t.Run(c.name, func(t *testing.T) {
			var sp statuspb.Status
			if err := protojson.Unmarshal([]byte(ga.status), &sp); err != nil {
				t.Fatal(err)
			}
			reason := ""
			for _, d := range status.FromProto(&sp).Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					reason = info.GetReason()
				}
			}
			if codes.Code(sp.Code) != c.code || reason != c.reason {
				t.Errorf("gRPC answered %s %q, want %s %q", codes.Code(sp.Code), reason, c.code, c.reason)
			}
			if ga.status != ra.status {
				t.Errorf("status differs:\ngRPC: %s\nREST: %s", ga.status, ra.status)
			}
			if ga.resp != ra.resp {
				t.Errorf("response differs:\ngRPC: %s\nREST: %s", ga.resp, ra.resp)
			}
			if want := runtime.HTTPStatusFromCode(codes.Code(sp.Code)); httpStatus != want {
				t.Errorf("HTTP %d for %s, want %d", httpStatus, codes.Code(sp.Code), want)
			}
			if ga.retry != ra.retry {
				t.Errorf("retry hint: gRPC %v, REST %v", ga.retry, ra.retry)
			}
			// Every call gets a request id, the caller's when it sent one.
			for _, id := range []string{ga.requestID, ra.requestID} {
				if slices.Contains(c.md, "x-request-id") && id != "parity-request-1" || id == "" {
					t.Errorf("request id %q (gRPC %q, REST %q)", id, ga.requestID, ra.requestID)
				}
			}
		})
	}
	diffLines(t, "audit trails", g.auditTrail(t), r.auditTrail(t))
	diffLines(t, "metrics", g.metricLines(t), r.metricLines(t))
	diffLines(t, "server spans", g.serverSpans(t, len(calls)), r.serverSpans(t, len(calls)))
	diffLines(t, "log lines", g.logLines(t), r.logLines(t))
}

// A caller's rate limit is one bucket whichever transport it calls over.
func TestRESTParitySharedRateLimit(t *testing.T) {
	ps := startParityServer(t, nil)
	c := parityCalls()[slices.IndexFunc(parityCalls(), func(c parityCall) bool { return c.name == "domains 1" })]
	for range 4 {
		if a := ps.grpcCall(t, c); a.resp == "" {
			t.Fatalf("within the burst: %s", a.status)
		}
	}
	if _, httpStatus := ps.restCall(t, c); httpStatus != http.StatusTooManyRequests {
		t.Errorf("REST after the burst spent over gRPC: HTTP %d, want 429", httpStatus)
	}
}

// Over REST as over gRPC, an mTLS caller is the identity of the client
// certificate its own connection's TLS layer verified; nothing a client
// sends in headers or metadata can pose as one.
func TestRESTParityMTLS(t *testing.T) {
	pki := newParityPKI(t)
	ps := startParityServer(t, pki)
	ok := &pb.ChainRequest{SubjectToken: "opaque-subject", SourceDomain: "domain-a", TargetDomain: "domain-b"}
	caller := func(t *testing.T, auditID string) string {
		t.Helper()
		e, err := ps.store.Get(context.Background(), auditID)
		if err != nil {
			t.Fatal(err)
		}
		return e.Caller
	}
	t.Run("grpc with a client certificate", func(t *testing.T) {
		resp, err := pb.NewChainServiceClient(ps.conn).Chain(context.Background(), ok)
		if err != nil {
			t.Fatal(err)
		}
		if got := caller(t, resp.AuditId); got != "spiffe://parity/agent" {
			t.Errorf("audited caller %q", got)
		}
	})
	t.Run("rest with a client certificate", func(t *testing.T) {
		b, _ := protojson.Marshal(ok)
		resp, err := ps.http.Post(ps.base+"/v1/chain", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out pb.ChainResponse
		if resp.StatusCode != http.StatusOK || protojson.Unmarshal(raw, &out) != nil {
			t.Fatalf("HTTP %d %s", resp.StatusCode, raw)
		}
		if got := caller(t, out.AuditId); got != "spiffe://parity/agent" {
			t.Errorf("audited caller %q", got)
		}
	})
	forged := base64.StdEncoding.EncodeToString(pki.clientDER) // the real certificate, without its key
	t.Run("rest without a certificate, forging one in headers", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.noClientTLS}}
		defer c.CloseIdleConnections()
		b, _ := protojson.Marshal(ok)
		req, _ := http.NewRequest(http.MethodPost, ps.base+"/v1/chain", bytes.NewReader(b))
		for _, h := range []string{"X-Chainbroker-Client-Cert", "Grpc-Metadata-X-Chainbroker-Client-Cert", "X-Client-Cert",
			"X-Forwarded-Client-Cert", "Ssl-Client-Cert"} {
			req.Header.Set(h, forged)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("HTTP %d, want 401", resp.StatusCode)
		}
	})
	t.Run("grpc without a certificate, forging one in metadata", func(t *testing.T) {
		conn, err := grpc.NewClient(strings.TrimPrefix(ps.conn.Target(), "dns:///"), grpc.WithTransportCredentials(credentials.NewTLS(pki.noClientTLS)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-chainbroker-client-cert", forged, "x-forwarded-client-cert", forged)
		if _, err := pb.NewChainServiceClient(conn).Chain(ctx, ok); status.Code(err) != codes.Unauthenticated {
			t.Errorf("got %v, want UNAUTHENTICATED", err)
		}
	})
}
