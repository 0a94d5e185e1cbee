package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

// fuzzLivenessEvery is how many FuzzChainJSON calls a process makes between
// two checks that the server still answers GET /v1/domains.
const fuzzLivenessEvery = 256

// FuzzChainJSON posts fuzzed bodies to POST /v1/chain of a real server (REST
// gateway, in-process gRPC, interceptors, broker, memory store), started once
// on loopback with anonymous callers allowed and granted every chain. Its
// three domains' token endpoints are a closed loopback port, so no chain can
// complete: a call that gets past the request checks fails with
// UPSTREAM_UNAVAILABLE. Whatever the body:
//   - the server answers, with a JSON body, and never 200 (nothing can
//     succeed) nor a 5xx other than 503 (an unreachable domain): no panic,
//     no INTERNAL;
//   - the answer never contains the request's subject_token or actor_token;
//   - the server stays up (GET /v1/domains answers 200 every
//     fuzzLivenessEvery calls and after the seeds).
func FuzzChainJSON(f *testing.F) {
	fx := startFuzzServer(f)

	for _, body := range []string{
		`{"subject_token":"eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2EuZXhhbXBsZSJ9.c2ln","target_domain":"domain-b","source_domain":"domain-a"}`,
		`{"subject_token":"` + fx.subject + `","target_domain":"domain-b"}`,
		`{"subject_token":"` + fx.subject + `","target_domain":"domain-b","source_domain":"domain-c","scope":["profile"]}`,
		`{"subject_token":"` + fx.subject + `","target_domain":"domain-b","source_domain":"domain-c","scope":["admin"]}`,
		`{"subjectToken":"opaque-token-value","targetDomain":"domain-b","sourceDomain":"domain-a","scope":["openid","profile"],"resource":["https://api.example/x"],"audience":"https://b.example","actorToken":"actor-token-value","actorTokenType":"urn:ietf:params:oauth:token-type:access_token"}`,
		`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a","scope":["has space"]}`,
		`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a","resource":["not a uri#frag"]}`,
		`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a","actor_token":"x"}`,
		`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a","scope":[` + strings.Repeat(`"s",`, 40) + `"s"]}`,
		`{"subject_token":"opaque","target_domain":"domain-x","source_domain":"domain-a"}`,
		`{"subject_token":"opaque","target_domain":"domain-a","source_domain":"domain-b"}`,
		`{"subject_token":"opaque","target_domain":"domain-b"}`,
		`{"subject_token":"","target_domain":"domain-b"}`,
		`{"subject_token":"opaque","target_domain":"` + strings.Repeat("é", 70) + `"}`,
		`{"subject_token":"opaque","target_domain":"domain-b","scope":"profile"}`,
		`{"subject_token":7,"target_domain":null}`,
		`{"subject_token":"a","subject_token":"b","target_domain":"domain-b","source_domain":"domain-a"}`,
		`{"unknown_field":1}`,
		`{"subject_token":"\ud800","target_domain":"domain-b"}`,
		`{"subject_token":"opaque","target_domain":"domain-b","hops":[{"domain":"x"}]}`,
		`{}`,
		`[]`,
		`null`,
		`"subject_token"`,
		``,
		`{"subject_token":"` + strings.Repeat("A", token.MaxTokenBytes+1) + `","target_domain":"domain-b"}`,
		`{"subject_token":"` + strings.Repeat("A", server.MaxRequestBytes) + `","target_domain":"domain-b"}`,
		strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000),
	} {
		f.Add([]byte(body))
	}

	var calls atomic.Int64
	f.Cleanup(func() { fx.checkAlive(f) })
	f.Fuzz(func(t *testing.T, body []byte) {
		status, resp, err := fx.post("/v1/chain", body)
		if err != nil {
			t.Fatalf("POST /v1/chain: no answer: %v\nserver log:\n%s", err, fx.logs())
		}
		switch {
		case status == http.StatusOK:
			t.Fatalf("a chain succeeded although every domain is down: %.500s", resp)
		case status >= 500 && status != http.StatusServiceUnavailable:
			t.Fatalf("HTTP %d: %.500s\nserver log:\n%s", status, resp, fx.logs())
		case !json.Valid(resp):
			t.Fatalf("HTTP %d with a body that is not JSON: %.500q", status, resp)
		}
		for _, secret := range requestTokens(body) {
			if bytes.Contains(resp, []byte(secret)) {
				t.Fatalf("HTTP %d answer contains a token of the request: %.500s", status, resp)
			}
		}
		if calls.Add(1)%fuzzLivenessEvery == 0 {
			fx.checkAlive(t)
		}
	})
}

type fuzzServer struct {
	base    string
	client  *http.Client
	subject string // a subject token signed by the source domains' key
	logBuf  *syncBuffer
}

func startFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	signer, keys, err := domainKeys("ES256")
	if err != nil {
		f.Fatal(err)
	}
	subject, err := signer.Sign(map[string]any{
		"iss": "https://c.example/realms/c", "sub": "alice", "azp": "agent",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "jti": "subject-1",
	}, token.SignOptions{})
	if err != nil {
		f.Fatal(err)
	}

	// A port nobody listens on: every token request is refused at once.
	down := "http://" + testutil.FreeAddr(f)

	st := memory.New(memory.Options{MaxEvents: 10_000})
	domain := func(name string) broker.Domain {
		return broker.Domain{
			Name: name, Issuer: "https://" + strings.TrimPrefix(name, "domain-") + ".example/realms/" + strings.TrimPrefix(name, "domain-"),
			TokenEndpoint: down + "/realms/" + name + "/protocol/openid-connect/token",
			Creds:         oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "fuzz-client-secret"},
			Keys:          keys,
			Timeout:       5 * time.Second,
		}
	}
	a, b, c := domain("domain-a"), domain("domain-b"), domain("domain-c")
	c.VerifySubjectToken = true
	logBuf := &syncBuffer{}
	srv := newServer(f, broker.Config{
		Domains:  []broker.Domain{a, b, c},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b"}, {Source: "domain-c", Target: "domain-b"}},
		Endpoint: oauth.NewClient(oauth.ClientOptions{Timeout: 5 * time.Second}),
		Replay:   st,
		Audit:    st,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{
			Caller: auth.Anonymous,
			Roles:  []string{broker.RoleAudit},
			Chains: []broker.ChainGrant{
				{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}},
				{Source: "domain-c", Target: "domain-b", Scopes: []string{"profile"}, SubjectAZP: []string{"agent"}},
			},
		}}},
	}, server.Config{Audit: st, Logger: slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelError}))})
	served := serve(f, srv)
	fx := &fuzzServer{
		base:    served.base,
		client:  &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		subject: subject,
		logBuf:  logBuf,
	}
	f.Cleanup(fx.client.CloseIdleConnections)
	served.waitREST(f)
	return fx
}

func (fx *fuzzServer) post(path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, fx.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return fx.do(req)
}

func (fx *fuzzServer) get(path string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, fx.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	return fx.do(req)
}

func (fx *fuzzServer) do(req *http.Request) (int, []byte, error) {
	resp, err := fx.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// checkAlive fails tb unless GET /v1/domains answers 200 with JSON.
func (fx *fuzzServer) checkAlive(tb testing.TB) {
	tb.Helper()
	status, body, err := fx.get("/v1/domains")
	if err != nil || status != http.StatusOK || !json.Valid(body) {
		tb.Fatalf("server down after fuzzing: GET /v1/domains: HTTP %d, %v, %.300q\nserver log:\n%s", status, err, body, fx.logs())
	}
}

func (fx *fuzzServer) logs() string {
	s := fx.logBuf.String()
	if len(s) > 8000 {
		s = "..." + s[len(s)-8000:]
	}
	return s
}

// requestTokens returns the subject and actor tokens of a request body
// (proto or JSON field names) that are long enough to be recognised and
// that no other request field contains: those must never be echoed.
func requestTokens(body []byte) []string {
	var req map[string]any
	if json.Unmarshal(body, &req) != nil {
		return nil
	}
	var out []string
	for _, name := range []string{"subject_token", "subjectToken", "actor_token", "actorToken"} {
		tok, ok := req[name].(string)
		if !ok || len(tok) < 16 {
			continue
		}
		elsewhere := false
		for other, v := range req {
			if other != name && strings.Contains(fmt.Sprint(v), tok) {
				elsewhere = true
			}
		}
		if !elsewhere {
			out = append(out, tok)
		}
	}
	return out
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		b.buf.Reset() // keep the tail only
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
