package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// fakeBroker is a test-only gRPC server implementing the broker's services:
// it records each call's metadata and client certificate, and answers Chain
// with a configured error.
type fakeBroker struct {
	pb.UnimplementedChainServiceServer
	pb.UnimplementedAuditServiceServer
	addr string

	mu       sync.Mutex
	calls    []fakeCall
	chainErr error
	block    bool // Chain waits for the caller's deadline
}

type fakeCall struct {
	method     string
	md         metadata.MD
	clientCert string // CommonName of the verified client certificate
}

func startFake(t *testing.T, opts ...grpc.ServerOption) *fakeBroker {
	t.Helper()
	f := &fakeBroker{}
	s := grpc.NewServer(append(opts, grpc.UnaryInterceptor(f.record))...)
	pb.RegisterChainServiceServer(s, f)
	pb.RegisterAuditServiceServer(s, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return f
}

// record is the interceptor that remembers every call's metadata.
func (f *fakeBroker) record(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	c := fakeCall{method: info.FullMethod}
	c.md, _ = metadata.FromIncomingContext(ctx)
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			c.clientCert = ti.State.VerifiedChains[0][0].Subject.CommonName
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	return h(ctx, req)
}

func (f *fakeBroker) lastCall(t *testing.T) fakeCall {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		t.Fatal("the fake broker received no call")
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeBroker) ListDomains(context.Context, *pb.ListDomainsRequest) (*pb.ListDomainsResponse, error) {
	return &pb.ListDomainsResponse{Domains: []*pb.Domain{{Name: "fake"}}}, nil
}

func (f *fakeBroker) Chain(ctx context.Context, _ *pb.ChainRequest) (*pb.ChainResponse, error) {
	f.mu.Lock()
	err, block := f.chainErr, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return nil, err
	}
	return &pb.ChainResponse{AccessToken: "fake-access-token", TokenType: "Bearer"}, nil
}

func TestCallerCredentials(t *testing.T) {
	t.Parallel()
	f := startFake(t)

	cases := []struct {
		name     string
		env      map[string]string
		args     []string
		apiKey   string // "" = header absent
		authz    string
		noAddrOK bool // --addr comes from CHAINCTL_ADDR
	}{
		{name: "none", args: []string{"domains"}},
		{name: "flags", args: []string{"--api-key", "k-flag", "--token", "t-flag", "domains"},
			apiKey: "k-flag", authz: "Bearer t-flag"},
		{name: "flags after the command", args: []string{"domains", "--api-key=k2", "--token=t2"},
			apiKey: "k2", authz: "Bearer t2"},
		{name: "environment", env: map[string]string{envAPIKey: "k-env", envToken: "t-env"}, args: []string{"domains"},
			apiKey: "k-env", authz: "Bearer t-env"},
		{name: "flags override environment", env: map[string]string{envAPIKey: "k-env", envToken: "t-env"},
			args: []string{"--api-key", "k-flag", "domains", "--token", "t-flag"}, apiKey: "k-flag", authz: "Bearer t-flag"},
		{name: "api key only", args: []string{"audit", "get", "1-0", "--api-key", "k3"}, apiKey: "k3"},
		{name: "address from the environment", env: map[string]string{envAddr: "ADDR", envToken: "t4"}, args: []string{"domains"},
			authz: "Bearer t4", noAddrOK: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = strings.ReplaceAll(v, "ADDR", f.addr)
			}
			args := tc.args
			if !tc.noAddrOK {
				args = append([]string{"--addr", f.addr}, args...)
			}
			r := chainctl(t, env, "", args...)
			if tc.args[0] == "audit" {
				wantCode(t, r, exitError) // the fake does not implement it: UNIMPLEMENTED
			} else {
				wantCode(t, r, exitOK)
			}
			call := f.lastCall(t)
			if got := strings.Join(call.md.Get(mdAPIKey), ","); got != tc.apiKey {
				t.Errorf("x-api-key = %q, want %q", got, tc.apiKey)
			}
			if got := strings.Join(call.md.Get(mdAuthorization), ","); got != tc.authz {
				t.Errorf("authorization = %q, want %q", got, tc.authz)
			}
			if ua := strings.Join(call.md.Get("user-agent"), ","); !strings.HasPrefix(ua, "chainctl") {
				t.Errorf("user-agent = %q", ua)
			}
			noLeak(t, r, tc.apiKey, strings.TrimPrefix(tc.authz, "Bearer "))
		})
	}
}

func TestRunReadsProcessEnvironment(t *testing.T) {
	f := startFake(t)
	t.Setenv(envAddr, f.addr)
	t.Setenv(envAPIKey, "k-process")
	t.Setenv(envToken, "")
	var out, errOut bytes.Buffer
	if code := run(ctxT(t), []string{"domains", "-o", "json"}, strings.NewReader(""), &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	call := f.lastCall(t)
	if got := call.md.Get(mdAPIKey); len(got) != 1 || got[0] != "k-process" {
		t.Errorf("x-api-key = %v", got)
	}
	if got := call.md.Get(mdAuthorization); len(got) != 0 {
		t.Errorf("authorization = %v, want none", got)
	}
	var resp struct {
		Domains []struct{ Name string } `json:"domains"`
	}
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil || len(resp.Domains) != 1 || resp.Domains[0].Name != "fake" {
		t.Errorf("stdout = %s (%v)", out.String(), err)
	}
}

// withInfo builds a status with an ErrorInfo.
func withInfo(code codes.Code, msg, reason string, meta map[string]string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "chainbroker", Metadata: meta})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// fakeSubject is the subject token sent to the fake broker.
const fakeSubject = "eyJhbGciOiJSUzI1NiJ9.fake-subject.sig"

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	f := startFake(t)

	cases := []struct {
		name   string
		err    error
		code   int
		stderr []string
	}{
		{"assertion check", withInfo(codes.FailedPrecondition, "two audiences", "ASSERTION_AUDIENCE_MULTIPLE", nil),
			exitRefused, []string{"chainctl: ASSERTION_AUDIENCE_MULTIPLE: two audiences\n"}},
		{"replayed grant", withInfo(codes.PermissionDenied, "replayed", "ASSERTION_REPLAYED", nil), exitRefused, nil},
		{"target refused the grant", withInfo(codes.PermissionDenied, "domain-b refused", "JWT_BEARER_REJECTED",
			map[string]string{"hop": "jwt_bearer", "error": "invalid_grant", "error_description": "No Identity Provider for provided issuer"}),
			exitRefused, []string{"JWT_BEARER_REJECTED: domain-b refused\n  hop: jwt_bearer\n  error: invalid_grant\n  error_description: No Identity Provider for provided issuer\n"}},
		{"source refused the scope", withInfo(codes.InvalidArgument, "bad scope", "TOKEN_EXCHANGE_REJECTED",
			map[string]string{"hop": "token_exchange", "error": "invalid_scope"}), exitRefused, []string{"hop: token_exchange"}},
		{"broker misconfigured at a domain", withInfo(codes.FailedPrecondition, "client", "TOKEN_EXCHANGE_REJECTED",
			map[string]string{"error": "invalid_client"}), exitRefused, nil},
		{"upstream temporarily unavailable", withInfo(codes.Unavailable, "later", "TOKEN_EXCHANGE_REJECTED",
			map[string]string{"error": "temporarily_unavailable"}), exitUnavailable, nil},
		{"store down", withInfo(codes.Unavailable, "the store is unavailable", "STORE_UNAVAILABLE", nil), exitUnavailable,
			[]string{"STORE_UNAVAILABLE"}},
		{"chain not allowed", withInfo(codes.PermissionDenied, "no chain", "CHAIN_NOT_ALLOWED", nil), exitDenied, nil},
		{"unauthenticated, no ErrorInfo", status.Error(codes.Unauthenticated, "missing credentials"), exitDenied,
			[]string{"chainctl: UNAUTHENTICATED: missing credentials\n"}},
		{"permission denied", status.Error(codes.PermissionDenied, "not yours"), exitDenied, []string{"PERMISSION_DENIED"}},
		{"invalid argument", withInfo(codes.InvalidArgument, "target_domain: required", "REQUEST_INVALID",
			map[string]string{"field": "target_domain", "extra": "x"}), exitInvalid,
			[]string{"REQUEST_INVALID: target_domain: required\n  field: target_domain\n  extra: x\n"}},
		{"not found", status.Error(codes.NotFound, "not found"), exitInvalid, []string{"NOT_FOUND"}},
		{"internal", withInfo(codes.Internal, "internal error", "INTERNAL", nil), exitError, []string{"chainctl: INTERNAL: internal error"}},
		{"unimplemented", status.Error(codes.Unimplemented, "nope"), exitError, []string{"UNIMPLEMENTED"}},
		{"secrets echoed by the server are redacted", withInfo(codes.InvalidArgument,
			"bad token "+fakeSubject+" with key k-secret", "REQUEST_INVALID", map[string]string{"error_description": "Bearer t-secret"}),
			exitInvalid, []string{"bad token [REDACTED] with key [REDACTED]", "error_description: Bearer [REDACTED]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			f.chainErr = tc.err
			f.mu.Unlock()
			r := chainctl(t, nil, fakeSubject, "--addr", f.addr, "--api-key", "k-secret", "--token", "t-secret",
				"chain", "--target", "domain-b")
			wantCode(t, r, tc.code)
			wantStderr(t, r, tc.stderr...)
			noLeak(t, r, fakeSubject, "k-secret", "t-secret")
		})
	}
}

func TestDeadlineExceeded(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	f.mu.Lock()
	f.block = true
	f.mu.Unlock()
	r := chainctl(t, nil, "tok", "--addr", f.addr, "--timeout", "200ms", "chain", "--target", "b")
	wantCode(t, r, exitUnavailable)
	wantStderr(t, r, "chainctl: DEADLINE_EXCEEDED: ", "timeout: 200ms")
}

// testPKI is a CA with a server certificate for chainbroker.test and a client
// certificate, written as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chainctl test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, dns []string) ([]byte, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	der, k := issue(2, "chainbroker.test", x509.ExtKeyUsageServerAuth, []string{"chainbroker.test"})
	p.serverCert, p.serverKey = write("server.pem", "CERTIFICATE", der), writeKey("server-key.pem", k)
	der, k = issue(3, "chainctl-client", x509.ExtKeyUsageClientAuth, nil)
	p.clientCert, p.clientKey = write("client.pem", "CERTIFICATE", der), writeKey("client-key.pem", k)
	return p
}

func TestTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	serverPair, err := tls.LoadX509KeyPair(pki.serverCert, pki.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	// mTLS: the server requires a client certificate from the test CA.
	f := startFake(t, grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{serverPair},
		ClientCAs:    pki.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})))

	t.Run("mutual TLS", func(t *testing.T) {
		r := chainctl(t, nil, "", "--addr", f.addr, "--cacert", pki.caFile, "--server-name", "chainbroker.test",
			"--cert", pki.clientCert, "--key", pki.clientKey, "--token", "t-tls", "domains")
		wantCode(t, r, exitOK)
		call := f.lastCall(t)
		if call.clientCert != "chainctl-client" {
			t.Errorf("server saw client certificate %q, want chainctl-client", call.clientCert)
		}
		if got := call.md.Get(mdAuthorization); len(got) != 1 || got[0] != "Bearer t-tls" {
			t.Errorf("authorization = %v", got)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"plaintext to a TLS broker", nil},
		{"unknown CA", []string{"--tls", "--server-name", "chainbroker.test", "--cert", pki.clientCert, "--key", pki.clientKey}},
		{"wrong server name", []string{"--cacert", pki.caFile, "--server-name", "other.test", "--cert", pki.clientCert, "--key", pki.clientKey}},
		{"no client certificate", []string{"--cacert", pki.caFile, "--server-name", "chainbroker.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chainctl(t, nil, "", append(append([]string{"--addr", f.addr}, tc.args...), "domains")...)
			wantCode(t, r, exitUnavailable)
		})
	}
}

func TestRateLimitedIsRetryable(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	st, err := status.New(codes.ResourceExhausted, "rate limit exceeded for caller \"agent\"; retry in 1.5s").WithDetails(
		&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: "chainbroker"},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)},
	)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.chainErr = st.Err()
	f.mu.Unlock()
	r := chainctl(t, nil, fakeSubject, "--addr", f.addr, "chain", "--target", "b")
	wantCode(t, r, exitUnavailable)
	wantStderr(t, r, "chainctl: RATE_LIMITED: rate limit exceeded", "  retry_after: 1.5s\n")

	// Another RESOURCE_EXHAUSTED (not the rate limit) is not worth a retry.
	f.mu.Lock()
	f.chainErr = status.Error(codes.ResourceExhausted, "too big")
	f.mu.Unlock()
	wantCode(t, chainctl(t, nil, fakeSubject, "--addr", f.addr, "chain", "--target", "b"), exitError)
}
