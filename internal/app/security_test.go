package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/token"
)

// callerIssuer is a JWKS server for caller JWTs, counting its hits.
type callerIssuer struct {
	signer *token.Signer
	url    string
	hits   atomic.Int64
}

func newCallerIssuer(t *testing.T) *callerIssuer {
	t.Helper()
	s, err := token.GenerateSigner("ES256")
	if err != nil {
		t.Fatal(err)
	}
	ci := &callerIssuer{signer: s}
	jwks, err := token.PublicJWKS(s)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ci.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	ci.url = srv.URL
	return ci
}

const callerIssuerName = "https://callers.test"

func (ci *callerIssuer) token(t *testing.T, sub, aud string, exp time.Duration) string {
	t.Helper()
	now := time.Now()
	s, err := ci.signer.Sign(map[string]any{
		"iss": callerIssuerName, "sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(exp).Unix(),
	}, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// securedConfig: no anonymous callers; API keys "agent", "viewer" and JWT
// callers from ci; agent may chain with scope profile, svc-1 may chain with
// any scope and read the audit trail, viewer may do nothing.
func securedConfig(ci *callerIssuer) func(*config.File) {
	return func(f *config.File) {
		f.Callers = config.Callers{
			APIKeys: []config.APIKey{
				{Name: "agent", SHA256: auth.HashAPIKey("agent-key")},
				{Name: "viewer", SHA256: auth.HashAPIKey("viewer-key")},
			},
			JWT: &config.CallerJWT{Issuer: callerIssuerName, JWKSURI: ci.url, Audience: "chainbroker", AllowInsecureHTTP: true},
		}
		f.Policy = []config.PolicyEntry{
			{Caller: "agent", Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"profile"}}}},
			{Caller: "svc-1", Roles: []string{"audit"}, Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"}}}},
			{Caller: "viewer"},
		}
	}
}

func withMD(t *testing.T, kv ...string) context.Context {
	return metadata.NewOutgoingContext(ctxT(t), metadata.Pairs(kv...))
}

func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

func TestCallerAuthenticationAndPolicy(t *testing.T) {
	ci := newCallerIssuer(t)
	e := apptest.Start(t, securedConfig(ci))
	subject := e.SubjectToken(t, sandbox.Alice)
	req := func(scopes ...string) *pb.ChainRequest {
		return &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: scopes}
	}
	svc := "Bearer " + ci.token(t, "svc-1", "chainbroker", time.Minute)

	tests := []struct {
		name   string
		ctx    context.Context
		req    *pb.ChainRequest
		code   codes.Code
		reason string
		caller string // audited caller of a success or policy refusal
	}{
		{"no credentials", ctxT(t), req(), codes.Unauthenticated, "UNAUTHENTICATED", ""},
		{"bad API key", withMD(t, "x-api-key", "agent-key-wrong"), req(), codes.Unauthenticated, "UNAUTHENTICATED", ""},
		{"expired caller JWT", withMD(t, "authorization", "Bearer "+ci.token(t, "svc-1", "chainbroker", -time.Minute)), req(), codes.Unauthenticated, "UNAUTHENTICATED", ""},
		{"caller JWT for another audience", withMD(t, "authorization", "Bearer "+ci.token(t, "svc-1", "someone-else", time.Minute)), req(), codes.Unauthenticated, "UNAUTHENTICATED", ""},
		{"not a bearer scheme", withMD(t, "authorization", "Basic YWdlbnQ6a2V5"), req(), codes.Unauthenticated, "UNAUTHENTICATED", ""},
		{"API key", withMD(t, "x-api-key", "agent-key"), req("profile"), codes.OK, "", "agent"},
		{"scope not allowed", withMD(t, "x-api-key", "agent-key"), req("profile", "admin"), codes.PermissionDenied, "SCOPE_NOT_ALLOWED", "agent"},
		{"chain not allowed", withMD(t, "x-api-key", "viewer-key"), req(), codes.PermissionDenied, "CHAIN_NOT_ALLOWED", "viewer"},
		{"caller JWT", withMD(t, "authorization", svc), req("anything"), codes.OK, "", "svc-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aCalls := e.Sandbox.A.ExchangeCount()
			resp, err := e.Chain.Chain(tt.ctx, tt.req)
			if status.Code(err) != tt.code || reason(err) != tt.reason {
				t.Fatalf("got %v %q (%v), want %v %q", status.Code(err), reason(err), err, tt.code, tt.reason)
			}
			if tt.code != codes.OK {
				if resp != nil || e.Sandbox.A.ExchangeCount() != aCalls {
					t.Error("a refused call reached domain A or returned a token")
				}
			}
			if tt.caller == "" {
				return
			}
			ev, err := e.Audit.ListAuditEvents(withMD(t, "authorization", svc), &pb.ListAuditEventsRequest{PageSize: 1})
			if err != nil || len(ev.Events) != 1 {
				t.Fatalf("audit: %v", err)
			}
			if got := ev.Events[0]; got.Caller != tt.caller || got.Reason != tt.reason {
				t.Errorf("audit event caller %q reason %q, want %q %q", got.Caller, got.Reason, tt.caller, tt.reason)
			}
		})
	}

	t.Run("audit needs the audit role", func(t *testing.T) {
		_, err := e.Audit.ListAuditEvents(withMD(t, "x-api-key", "agent-key"), &pb.ListAuditEventsRequest{})
		if status.Code(err) != codes.PermissionDenied || reason(err) != "AUDIT_NOT_ALLOWED" {
			t.Errorf("got %v %q", status.Code(err), reason(err))
		}
		_, err = e.Audit.GetAuditEvent(withMD(t, "x-api-key", "agent-key"), &pb.GetAuditEventRequest{Id: "1-0"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("GetAuditEvent without the role: %v", err)
		}
		if _, err := e.Audit.ListAuditEvents(ctxT(t), &pb.ListAuditEventsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("anonymous audit: %v", err)
		}
	})
	t.Run("ListDomains shows only the caller's chains", func(t *testing.T) {
		d, err := e.Chain.ListDomains(withMD(t, "x-api-key", "viewer-key"), &pb.ListDomainsRequest{})
		if err != nil || len(d.Chains) != 0 || len(d.Domains) != 0 {
			t.Errorf("viewer sees %v, %v", d, err)
		}
		d, err = e.Chain.ListDomains(withMD(t, "x-api-key", "agent-key"), &pb.ListDomainsRequest{})
		if err != nil || len(d.Chains) != 1 || len(d.Domains) != 2 {
			t.Errorf("agent sees %v, %v", d, err)
		}
	})
	t.Run("health needs no credentials", func(t *testing.T) {
		if status, _ := e.Get(t, "/healthz"); status != 200 {
			t.Errorf("/healthz = %d", status)
		}
	})
	t.Run("rest", func(t *testing.T) {
		body := map[string]any{"subject_token": subject, "target_domain": "domain-b"}
		for _, tc := range []struct {
			name   string
			header http.Header
			want   int
		}{
			{"no credentials", nil, http.StatusUnauthorized},
			{"bad API key", http.Header{"X-Api-Key": {"nope"}}, http.StatusUnauthorized},
			// A client cannot pose as the gateway's forwarded mTLS identity.
			{"forged forwarded certificate", http.Header{"Grpc-Metadata-X-Chainbroker-Client-Cert": {base64.StdEncoding.EncodeToString([]byte("x"))},
				"X-Chainbroker-Client-Cert": {"x"}}, http.StatusUnauthorized},
			{"API key", http.Header{"X-Api-Key": {"agent-key"}}, http.StatusOK},
			{"bearer", http.Header{"Authorization": {svc}}, http.StatusOK},
			{"no role for audit", http.Header{"X-Api-Key": {"viewer-key"}}, http.StatusForbidden},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b, _ := json.Marshal(body)
				r, _ := http.NewRequest(http.MethodPost, e.HTTPURL+"/v1/chain", bytes.NewReader(b))
				if tc.name == "no role for audit" {
					r, _ = http.NewRequest(http.MethodGet, e.HTTPURL+"/v1/audit/events", nil)
				}
				for k, v := range tc.header {
					r.Header[k] = v
				}
				resp, err := e.HTTP.Do(r)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
				}
			})
		}
	})
}

func TestRateLimit(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		f.RateLimit = config.RateLimit{RequestsPerSecond: 0.2, Burst: 2}
	}})
	for i := range 2 {
		if _, err := e.Chain.ListDomains(ctxT(t), &pb.ListDomainsRequest{}); err != nil {
			t.Fatalf("call %d within the burst: %v", i, err)
		}
	}
	_, err := e.Chain.ListDomains(ctxT(t), &pb.ListDomainsRequest{})
	if status.Code(err) != codes.ResourceExhausted || reason(err) != "RATE_LIMITED" {
		t.Fatalf("over the limit: %v", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 {
		t.Errorf("no retry hint: %v", status.Convert(err).Details())
	}
	resp, err := e.HTTP.Get(e.HTTPURL + "/v1/domains")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("REST over the limit: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// Subject tokens are checked against domain A's configured keys before hop
// 1: a bad one never costs a call to domain A.
func TestSubjectTokenCheckedBeforeHop1(t *testing.T) {
	e := apptest.Start(t, nil)
	now := time.Now().Unix()
	claims := func(iss string, exp int64) map[string]any {
		return map[string]any{"iss": iss, "sub": sandbox.AliceSubA, "aud": []string{"chainbroker", "account"}, "azp": sandbox.AgentClientID,
			"iat": now - 10, "exp": exp, "jti": "s1", "typ": "Bearer"}
	}
	expired, err := e.Sandbox.A.SignToken(claims(e.Sandbox.A.Issuer(), now-5), "JWT")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := token.GenerateSigner("RS256")
	forged, _ := otherKey.Sign(claims(e.Sandbox.A.Issuer(), now+300), token.SignOptions{Kid: e.Sandbox.A.KeyID()})
	wrongIss, _ := e.Sandbox.A.SignToken(claims("http://127.0.0.1:1/realms/other", now+300), "JWT")
	for _, tt := range []struct {
		name, token, source, reason string
	}{
		{"expired", expired, "", "SUBJECT_TOKEN_EXPIRED"},
		{"signed by another key", forged, "", "SUBJECT_TOKEN_INVALID"},
		{"other issuer, source named", wrongIss, "domain-a", "SUBJECT_TOKEN_INVALID"},
		{"other issuer, source inferred", wrongIss, "", "SOURCE_UNDETERMINED"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Sandbox.A.ExchangeCount()
			_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: tt.token, SourceDomain: tt.source, TargetDomain: "domain-b"})
			if status.Code(err) != codes.InvalidArgument || reason(err) != tt.reason {
				t.Fatalf("got %v %q, want InvalidArgument %s", status.Code(err), reason(err), tt.reason)
			}
			if e.Sandbox.A.ExchangeCount() != before {
				t.Error("domain A was called with a subject token the broker refused")
			}
			if ev := e.LastEvent(t); ev.Reason != tt.reason {
				t.Errorf("audit reason %q", ev.Reason)
			}
		})
	}
}

// No URL the broker calls comes from a token: an iss or jku naming another
// server leads to no request to it.
func TestNoOutboundCallFromTokenURLs(t *testing.T) {
	var hits atomic.Int64
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "trap", http.StatusTeapot)
	}))
	defer trap.Close()
	e := apptest.Start(t, nil)
	now := time.Now().Unix()
	withHeader := func(t *testing.T, tok string, extra map[string]any) string {
		parts := strings.Split(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
		h := map[string]any{}
		json.Unmarshal(raw, &h)
		for k, v := range extra {
			h[k] = v
		}
		hb, _ := json.Marshal(h)
		return base64.RawURLEncoding.EncodeToString(hb) + "." + parts[1] + "." + parts[2]
	}
	good := e.SubjectToken(t, sandbox.Alice)
	foreignIss, _ := e.Sandbox.A.SignToken(map[string]any{"iss": trap.URL, "sub": "x", "exp": now + 60}, "JWT")
	cases := map[string]*pb.ChainRequest{
		"subject iss names the trap": {SubjectToken: foreignIss, TargetDomain: "domain-b"},
		"subject jku names the trap": {SubjectToken: withHeader(t, good, map[string]any{"jku": trap.URL + "/jwks", "kid": "new-kid"}), TargetDomain: "domain-b"},
		"subject x5u names the trap": {SubjectToken: withHeader(t, good, map[string]any{"x5u": trap.URL + "/cert"}), SourceDomain: "domain-a", TargetDomain: "domain-b"},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := e.Chain.Chain(ctxT(t), req); err == nil {
				t.Fatal("chain succeeded")
			}
		})
	}
	t.Run("assertion iss and jku name the trap", func(t *testing.T) {
		e.Sandbox.A.SetMisbehaviour(sandbox.Misbehaviour{Issuer: trap.URL})
		defer e.Sandbox.A.ResetMisbehaviour()
		_, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: good, TargetDomain: "domain-b"})
		if reason(err) != "ASSERTION_ISSUER_UNTRUSTED" {
			t.Errorf("got %v", err)
		}
	})
	if n := hits.Load(); n != 0 {
		t.Fatalf("the broker sent %d request(s) to a URL taken from a token", n)
	}
}

// pki is a throwaway CA with server and client certificates on disk.
type pki struct {
	dir                           string
	caPool                        *x509.CertPool
	caCert                        *x509.Certificate
	caKey                         *ecdsa.PrivateKey
	caFile, serverCert, serverKey string
	client, untrusted             tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	p.caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &p.caKey.PublicKey, p.caKey)
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.caCert)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.serverCert, p.serverKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server.key")
	p.writeServer(t, 2)
	spiffe, _ := url.Parse("spiffe://test/agent")
	p.client = p.issue(t, p.caCert, p.caKey, &x509.Certificate{URIs: []*url.URL{spiffe}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCA := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "other CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	p.untrusted = p.issue(t, otherCA, otherKey, &x509.Certificate{URIs: []*url.URL{spiffe}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return p
}

func (p *pki) issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = serial, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// writeServer (re)writes the server certificate with the given serial.
func (p *pki) writeServer(t *testing.T, serial int64) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "chainbroker"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, p.serverKey, "PRIVATE KEY", keyDER)
	writePEM(t, p.serverCert, "CERTIFICATE", der)
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *pki) clientTLS(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.caPool, Certificates: certs, MinVersion: tls.VersionTLS12}
}

func TestMTLSAndCertificateReload(t *testing.T) {
	p := newPKI(t)
	tlsCfg := p.clientTLS(p.client)
	e := apptest.StartWith(t, apptest.Options{
		Mutate: func(f *config.File) {
			f.TLS = config.TLS{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile}
			f.Callers = config.Callers{MTLS: true}
			f.Policy = []config.PolicyEntry{{Caller: "spiffe://test/agent", Roles: []string{"audit"},
				Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"}}}}}
		},
		GRPCCreds:  credentials.NewTLS(tlsCfg),
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}},
	})
	subject := e.SubjectToken(t, sandbox.Alice)

	t.Run("grpc with a client certificate", func(t *testing.T) {
		resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := e.Audit.GetAuditEvent(ctxT(t), &pb.GetAuditEventRequest{Id: resp.AuditId})
		if err != nil || ev.Event.Caller != "spiffe://test/agent" {
			t.Errorf("audited caller: %v %v", ev, err)
		}
	})
	dial := func(t *testing.T, cfg *tls.Config) error {
		conn, err := grpc.NewClient(e.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = pb.NewChainServiceClient(conn).ListDomains(ctxT(t), &pb.ListDomainsRequest{})
		return err
	}
	t.Run("grpc without a client certificate", func(t *testing.T) {
		if err := dial(t, p.clientTLS()); status.Code(err) != codes.Unauthenticated {
			t.Errorf("got %v", err)
		}
	})
	t.Run("grpc with an untrusted client certificate", func(t *testing.T) {
		if err := dial(t, p.clientTLS(p.untrusted)); err == nil {
			t.Error("a certificate from an unknown CA was accepted")
		}
	})
	t.Run("rest with a client certificate", func(t *testing.T) {
		status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": subject, "target_domain": "domain-b"})
		if status != http.StatusOK {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("rest without a client certificate", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS()}}
		resp, err := c.Get(e.HTTPURL + "/v1/domains")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("certificate reload without restart", func(t *testing.T) {
		serial := func() int64 {
			conn, err := tls.Dial("tcp", strings.TrimPrefix(e.HTTPURL, "https://"), p.clientTLS())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		}
		if got := serial(); got != 2 {
			t.Fatalf("serial %d before reload", got)
		}
		p.writeServer(t, 3)
		future := time.Now().Add(2 * time.Second)
		os.Chtimes(p.serverCert, future, future) // a distinct mtime even on coarse clocks
		os.Chtimes(p.serverKey, future, future)
		deadline := time.Now().Add(10 * time.Second)
		for serial() != 3 {
			if time.Now().After(deadline) {
				t.Fatal("the new certificate was not served")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}
