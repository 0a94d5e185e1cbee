package server_test

// Errors at the transport edge, against a real Server on loopback (REST
// gateway and gRPC) whose broker calls a loopback authorization server
// (both domains' token endpoints) over HTTP: the gateway's own refusals
// (#22.8), the caller's deadline (#22.7), audit listing checks (#22.9) and a
// domain's huge error_description (#14.5).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/server"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/telemetry"
	"github.com/chainbroker/chainbroker/token"
)

const (
	edgeIssuerA = "https://a.example/realms/domain-a"
	edgeIssuerB = "https://b.example/realms/domain-b"
)

// Behaviours of the loopback authorization server.
const (
	asOK          = iota // hop 1 answers a signed grant, hop 2 a token
	asHang               // every token request hangs until the caller gives up
	asHugeRefusal        // hop 2 refuses with a 60 KB error_description
)

// fakeAS is both domains' token endpoint.
type fakeAS struct {
	signer *token.Signer
	mode   atomic.Int32
	jti    atomic.Int64
	stop   chan struct{}
}

// hugeDescription is 60 KB of two-byte characters.
var hugeDescription = strings.Repeat("é", 30_000)

func (a *fakeAS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	grant := r.PostForm.Get("grant_type")
	switch mode := a.mode.Load(); {
	case mode == asHang:
		select {
		case <-r.Context().Done():
		case <-a.stop:
		}
	case grant == oauth.GrantTypeTokenExchange:
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
	case mode == asHugeRefusal:
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": hugeDescription})
	default:
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.c2ln",
			"token_type": "Bearer", "expires_in": 300})
	}
}

type edgeServer struct {
	base  string
	http  *http.Client
	chain pb.ChainServiceClient
	audit pb.AuditServiceClient
	as    *fakeAS
	logs  *syncBuffer
}

// startEdgeServer serves a broker (domain-a -> domain-b, anonymous caller
// with the audit role, memory store, metrics, JSON logs) on loopback.
func startEdgeServer(t *testing.T) *edgeServer {
	t.Helper()
	signer, keys, err := domainKeys("ES256")
	if err != nil {
		t.Fatal(err)
	}
	as := &fakeAS{signer: signer, stop: make(chan struct{})}
	asSrv := httptest.NewServer(as)
	t.Cleanup(func() { close(as.stop); asSrv.Close() })

	st := memory.New(memory.Options{})
	metrics := telemetry.NewMetrics()
	creds := oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "edge-secret"}
	logs := &syncBuffer{}
	srv := newServer(t, broker.Config{
		Domains: []broker.Domain{
			{Name: "domain-a", Issuer: edgeIssuerA, TokenEndpoint: asSrv.URL + "/a/token", Keys: keys, Creds: creds, Timeout: time.Minute},
			{Name: "domain-b", Issuer: edgeIssuerB, TokenEndpoint: asSrv.URL + "/b/token", Creds: creds, Timeout: time.Minute},
		},
		Chains:   []broker.Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: oauth.NewClient(oauth.ClientOptions{Timeout: time.Minute}),
		Replay:   st,
		Audit:    st,
		Observer: metrics,
		Policy: broker.Policy{Callers: []broker.CallerGrant{{Caller: auth.Anonymous, Roles: []string{broker.RoleAudit},
			Chains: []broker.ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}}}}}},
	}, server.Config{Audit: st, Metrics: metrics,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	s := serve(t, srv)
	e := &edgeServer{
		base: s.base, http: &http.Client{Timeout: 30 * time.Second},
		chain: s.chain, audit: s.audit, as: as, logs: logs,
	}
	t.Cleanup(e.http.CloseIdleConnections)
	s.waitREST(t)
	return e
}

// restError is the gateway's JSON status body.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type     string            `json:"@type"`
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata"`
	} `json:"details"`
}

func (r *restError) info() (reason string, meta map[string]string) {
	for _, d := range r.Details {
		if d.Domain == server.ErrorDomain {
			return d.Reason, d.Metadata
		}
	}
	return "", nil
}

func (e *edgeServer) do(t *testing.T, method, path, contentType string, body []byte, header ...string) (*http.Response, restError, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var re restError
	_ = json.Unmarshal(raw, &re)
	return resp, re, raw
}

func grpcInfo(t *testing.T, err error) (codes.Code, string, *errdetails.ErrorInfo) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("not a status error: %v", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), st.Message(), info
		}
	}
	t.Fatalf("no ErrorInfo in %v", st)
	return 0, "", nil
}

// #22.8: what the gateway refuses itself has an ErrorInfo with a reason, the
// right HTTP status, a log line and a metric.
func TestGatewayRefusals(t *testing.T) {
	e := startEdgeServer(t)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		reason      string
		field       string
		msg         string // the message contains it
		allow       string // the Allow header
	}{
		{"malformed JSON", "POST", "/v1/chain", "application/json", `{"subject_token":`, 400, "REQUEST_INVALID", "", "not valid JSON", ""},
		{"not JSON at all", "POST", "/v1/chain", "application/json", `subject_token=x`, 400, "REQUEST_INVALID", "", "not valid JSON", ""},
		{"unknown field", "POST", "/v1/chain", "application/json", `{"subject_token":"x","target_domain":"domain-b","bogus":1}`,
			400, "REQUEST_INVALID", "bogus", `unknown field "bogus"`, ""},
		{"wrong type, JSON name", "POST", "/v1/chain", "application/json", `{"subjectToken":7,"target_domain":"domain-b"}`,
			400, "REQUEST_INVALID", "subject_token", "subject_token: invalid value, want a string", ""},
		{"string for a list", "POST", "/v1/chain", "application/json", `{"subject_token":"x","target_domain":"domain-b","scope":"profile"}`,
			400, "REQUEST_INVALID", "", "unexpected value (line 1:", ""},
		{"form-encoded body", "POST", "/v1/chain", "application/x-www-form-urlencoded", `subject_token=x&target_domain=domain-b`,
			415, "MEDIA_TYPE_UNSUPPORTED", "", "application/json", ""},
		{"text body", "POST", "/v1/chain", "text/plain", `subject_token x`,
			415, "MEDIA_TYPE_UNSUPPORTED", "", "application/json", ""},
		// curl -d sends a JSON object as form-urlencoded: decoded as JSON (here
		// refused for its unknown field, so not by its Content-Type).
		{"JSON object labelled form (curl -d)", "POST", "/v1/chain", "application/x-www-form-urlencoded",
			`{"subject_token":"x","target_domain":"domain-b","bogus":1}`, 400, "REQUEST_INVALID", "bogus", `unknown field "bogus"`, ""},
		{"GET on chain", "GET", "/v1/chain", "", "", 405, "METHOD_NOT_ALLOWED", "", "allowed: POST", "POST"},
		{"PUT on domains", "PUT", "/v1/domains", "application/json", `{}`, 405, "METHOD_NOT_ALLOWED", "", "allowed: GET", "GET"},
		{"form POST to a GET route", "POST", "/v1/audit/events", "application/x-www-form-urlencoded", `subject=x`,
			405, "METHOD_NOT_ALLOWED", "", "allowed: GET", "GET"},
		{"DELETE on an event", "DELETE", "/v1/audit/events/1-0", "", "", 405, "METHOD_NOT_ALLOWED", "", "allowed: GET", "GET"},
		{"no such path", "GET", "/v1/nothing", "", "", 404, "NOT_FOUND", "", "no such path", ""},
		{"body over 64 KiB", "POST", "/v1/chain", "application/json",
			`{"subject_token":"` + strings.Repeat("a", 100<<10) + `","target_domain":"domain-b"}`, 413, "REQUEST_TOO_LARGE", "", "65536 bytes", ""},
		{"bad query value", "GET", "/v1/audit/events?page_size=many", "", "", 400, "REQUEST_INVALID", "page_size", "page_size: invalid value", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, re, raw := e.do(t, tt.method, tt.path, tt.contentType, []byte(tt.body))
			reason, meta := re.info()
			if resp.StatusCode != tt.status || reason != tt.reason {
				t.Fatalf("HTTP %d reason %q, want %d %s: %.300s", resp.StatusCode, reason, tt.status, tt.reason, raw)
			}
			if meta["field"] != tt.field {
				t.Errorf("field %q, want %q", meta["field"], tt.field)
			}
			if !strings.Contains(re.Message, tt.msg) {
				t.Errorf("message %q does not contain %q", re.Message, tt.msg)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if strings.Contains(e.logs.String(), `"subject_token":"x"`) || strings.Contains(re.Message, "profile") {
				t.Error("request content echoed")
			}
		})
	}
	// One log line each, with the reason and without body content; a metric.
	logs := e.logs.String()
	for _, want := range []string{`"msg":"rest request refused"`, `"reason":"METHOD_NOT_ALLOWED"`, `"reason":"REQUEST_TOO_LARGE"`,
		`"reason":"MEDIA_TYPE_UNSUPPORTED"`, `"path":"/v1/chain"`, `"status":413`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%.3000s", want, logs)
		}
	}
	if n := strings.Count(logs, `"msg":"rest request refused"`); n != len(tests) {
		t.Errorf("%d log lines for %d refusals", n, len(tests))
	}
	if strings.Contains(logs, "aaaaaaaa") || strings.Contains(logs, "bogus\\\":1") {
		t.Error("a log line holds body content")
	}
	_, _, metrics := e.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{`chainbroker_rest_refused_total{reason="METHOD_NOT_ALLOWED"} 4`, `chainbroker_rest_refused_total{reason="REQUEST_TOO_LARGE"} 1`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The checks let good requests and the health endpoint through.
	if resp, _, raw := e.do(t, "GET", "/healthz?service=chainbroker.v1.ChainService", "", nil); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d %s", resp.StatusCode, raw)
	}
	if resp, _, raw := e.do(t, "POST", "/v1/chain", "application/json; charset=utf-8",
		[]byte(`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a"}`)); resp.StatusCode != 200 {
		t.Errorf("a good chain: %d %s", resp.StatusCode, raw)
	}
	if resp, _, raw := e.do(t, "POST", "/v1/chain", "", []byte(`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a"}`)); resp.StatusCode != 200 {
		t.Errorf("a chain without Content-Type: %d %s", resp.StatusCode, raw)
	}
}

// #22.8: a 5 MB body gets 413 naming the limit. Raw connection: the server
// answers before the client has sent the body, and net/http's client may
// report its write error instead of the answer.
func TestGatewayBodyTooLarge(t *testing.T) {
	e := startEdgeServer(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	const size = 5 << 20
	go func() {
		fmt.Fprintf(conn, "POST /v1/chain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", size)
		chunk := bytes.Repeat([]byte("a"), 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := conn.Write(chunk); err != nil {
				return // the server closed: expected
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	var re restError
	_ = json.Unmarshal(raw, &re)
	reason, meta := re.info()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || reason != "REQUEST_TOO_LARGE" || meta["limit_bytes"] != "65536" ||
		!strings.Contains(re.Message, "65536") {
		t.Errorf("HTTP %d: %s", resp.StatusCode, raw)
	}
}

// #22.7: the caller's deadline running out during a slow hop is
// REQUEST_DEADLINE_EXCEEDED with an ErrorInfo on both transports, and so
// audited.
func TestCallerDeadline(t *testing.T) {
	e := startEdgeServer(t)
	e.as.mode.Store(asHang)
	req := &pb.ChainRequest{SubjectToken: "opaque", TargetDomain: "domain-b", SourceDomain: "domain-a"}

	t.Run("grpc", func(t *testing.T) {
		// 5 s: the broker answers 500 ms early (its headroom), a margin a
		// loaded machine keeps.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := e.chain.Chain(ctx, req)
		code, _, info := grpcInfo(t, err)
		if code != codes.DeadlineExceeded || info.Reason != "REQUEST_DEADLINE_EXCEEDED" || info.Metadata["hop"] != "token_exchange" {
			t.Errorf("%v %s %v", code, info.Reason, info.Metadata)
		}
		list, err := e.audit.ListAuditEvents(context.Background(), &pb.ListAuditEventsRequest{PageSize: 1})
		if err != nil || len(list.Events) != 1 || list.Events[0].Reason != "REQUEST_DEADLINE_EXCEEDED" {
			t.Errorf("audit: %v %v", list, err)
		}
	})
	t.Run("rest", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"subject_token": "opaque", "target_domain": "domain-b", "source_domain": "domain-a"})
		resp, re, raw := e.do(t, "POST", "/v1/chain", "application/json", body, "Grpc-Timeout", "3S")
		reason, _ := re.info()
		if resp.StatusCode != http.StatusGatewayTimeout || re.Code != int(codes.DeadlineExceeded) || reason != "REQUEST_DEADLINE_EXCEEDED" {
			t.Errorf("HTTP %d: %s", resp.StatusCode, raw)
		}
	})
}

// #22.9: the audit listing refuses what it would otherwise ignore or clamp,
// hides its backend, and takes outcomes as chainctl writes them.
func TestAuditListingChecks(t *testing.T) {
	e := startEdgeServer(t)
	ok := &pb.ChainRequest{SubjectToken: "opaque", TargetDomain: "domain-b", SourceDomain: "domain-a"}
	if _, err := e.chain.Chain(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	if _, err := e.chain.Chain(context.Background(), &pb.ChainRequest{SubjectToken: "opaque", TargetDomain: "domain-z"}); err == nil {
		t.Fatal("a chain to an unknown domain succeeded")
	}
	tests := []struct {
		name   string
		query  string
		status int
		reason string
		field  string
		msg    string
	}{
		{"misspelt filter", "?subjet=alice", 400, "REQUEST_INVALID", "subjet", `unknown query parameter "subjet"`},
		{"page size over the maximum", "?page_size=5000", 400, "REQUEST_INVALID", "page_size", "maximum of 1000"},
		{"malformed page token", "?page_token=garbage", 400, "REQUEST_INVALID", "page_token", "page_token: not a page token"},
		{"unknown outcome", "?outcome=maybe", 400, "REQUEST_INVALID", "outcome", "success, failure, cache_hit"},
		{"malformed id", "/garbage", 400, "REQUEST_INVALID", "id", "id: not an audit event id"},
		{"unknown id", "/1-0", 404, "NOT_FOUND", "", "not found"},
		{"query on an event", "/1-0?subject=x", 400, "REQUEST_INVALID", "subject", "takes none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/v1/audit/events" + tt.query
			resp, re, raw := e.do(t, "GET", path, "", nil)
			reason, meta := re.info()
			if resp.StatusCode != tt.status || reason != tt.reason || meta["field"] != tt.field || !strings.Contains(re.Message, tt.msg) {
				t.Errorf("HTTP %d reason %q field %q: %s", resp.StatusCode, reason, meta["field"], raw)
			}
			if strings.Contains(re.Message, "store/") || strings.Contains(re.Message, "memory") {
				t.Errorf("message names the backend: %q", re.Message)
			}
		})
	}
	for q, want := range map[string][]pb.Outcome{
		"?outcome=failure":          {pb.Outcome_OUTCOME_FAILURE},
		"?outcome=success":          {pb.Outcome_OUTCOME_SUCCESS},
		"?outcome=OUTCOME_SUCCESS":  {pb.Outcome_OUTCOME_SUCCESS},
		"?outcome=Cache-Hit":        {},
		"?pageSize=10&outcome=any":  {pb.Outcome_OUTCOME_FAILURE, pb.Outcome_OUTCOME_SUCCESS},
		"?page_size=1000&subject=x": {},
	} {
		resp, _, raw := e.do(t, "GET", "/v1/audit/events"+q, "", nil)
		var out struct {
			Events []struct {
				Outcome string `json:"outcome"`
			} `json:"events"`
		}
		_ = json.Unmarshal(raw, &out)
		var got []string
		for _, ev := range out.Events {
			got = append(got, ev.Outcome)
		}
		var wantS []string
		for _, o := range want {
			wantS = append(wantS, o.String())
		}
		if resp.StatusCode != 200 || strings.Join(got, ",") != strings.Join(wantS, ",") {
			t.Errorf("%s: HTTP %d outcomes %v, want %v: %.300s", q, resp.StatusCode, got, wantS, raw)
		}
	}
	// gRPC lists the valid outcomes too.
	_, err := e.audit.ListAuditEvents(context.Background(), &pb.ListAuditEventsRequest{Outcome: pb.Outcome(7)})
	if code, msg, info := grpcInfo(t, err); code != codes.InvalidArgument || info.Metadata["field"] != "outcome" || !strings.Contains(msg, "OUTCOME_CACHE_HIT") {
		t.Errorf("%v %q %v", code, msg, info)
	}
	// gRPC refuses the oversized page too, naming the maximum.
	_, err = e.audit.ListAuditEvents(context.Background(), &pb.ListAuditEventsRequest{PageSize: 5000})
	if code, msg, info := grpcInfo(t, err); code != codes.InvalidArgument || info.Metadata["field"] != "page_size" || !strings.Contains(msg, "1000") {
		t.Errorf("%v %q %v", code, msg, info)
	}
}

// #14.5: a domain's 60 KB error_description is bounded to 512 bytes in the
// ErrorInfo, the message, the logs and the audit trail, and hop 2's refusal
// says it is about the broker's grant.
func TestHugeUpstreamDescription(t *testing.T) {
	e := startEdgeServer(t)
	e.as.mode.Store(asHugeRefusal)
	req := &pb.ChainRequest{SubjectToken: "opaque", TargetDomain: "domain-b", SourceDomain: "domain-a"}
	_, err := e.chain.Chain(context.Background(), req)
	code, msg, info := grpcInfo(t, err)
	desc := info.Metadata["error_description"]
	if code != codes.PermissionDenied || info.Reason != "JWT_BEARER_REJECTED" || info.Metadata["hop"] != "jwt_bearer" {
		t.Fatalf("%v %s %v", code, info.Reason, info.Metadata["hop"])
	}
	if len(desc) > 512 || len(desc) < 400 || !utf8.ValidString(desc) || !strings.HasPrefix(desc, "éé") {
		t.Errorf("error_description metadata: %d bytes, valid UTF-8 %v", len(desc), utf8.ValidString(desc))
	}
	if len(msg) > 512+200 || !strings.Contains(msg, "domain-b refused the grant the broker obtained from domain-a") || !utf8.ValidString(msg) {
		t.Errorf("message (%d bytes): %.200q", len(msg), msg)
	}
	list, err := e.audit.ListAuditEvents(context.Background(), &pb.ListAuditEventsRequest{PageSize: 1})
	if err != nil || len(list.Events) != 1 {
		t.Fatalf("audit: %v %v", list, err)
	}
	if ev := list.Events[0]; len(ev.UpstreamErrorDescription) > 512 || ev.UpstreamError != "invalid_grant" || len(ev.Message) > 512+200 {
		t.Errorf("audit event: description %d bytes, message %d bytes", len(ev.UpstreamErrorDescription), len(ev.Message))
	}
	resp, _, raw := e.do(t, "POST", "/v1/chain", "application/json",
		[]byte(`{"subject_token":"opaque","target_domain":"domain-b","source_domain":"domain-a"}`))
	if resp.StatusCode != http.StatusForbidden || len(raw) > 4096 {
		t.Errorf("REST: HTTP %d, %d bytes", resp.StatusCode, len(raw))
	}
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s", len(line), line)
		}
	}
}
