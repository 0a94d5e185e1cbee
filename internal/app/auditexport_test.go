package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
	"github.com/chainbroker/chainbroker/store"
)

func fileExport(path string) func(*config.File) {
	return func(f *config.File) {
		f.AuditExport = config.AuditExport{Sink: "file", File: path, ConsumerName: "test"}
		f.SetDefaults()
	}
}

// exportedLines reads the JSON lines of path (none while it is missing).
func exportedLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1] // a line still being written is left out
	var out []map[string]any
	for line := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func pollLines(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if l := exportedLines(t, path); len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d exported lines", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A real chain's audit event reaches the file sink, with hashes and no raw
// token; the lag metric is exposed: with the Redis store and with the
// memory store.
func TestAuditExportOfAChain(t *testing.T) {
	for _, backend := range []string{"redis", "memory"} {
		t.Run(backend, func(t *testing.T) { testAuditExportOfAChain(t, backend == "redis") })
	}
}

func testAuditExportOfAChain(t *testing.T, redis bool) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	e := apptest.StartWith(t, apptest.Options{Redis: redis, Mutate: fileExport(path)})
	if got := e.App.Config.Store.Backend; redis != (got == "redis") {
		t.Fatalf("store.backend %q", got)
	}
	if !app.HasAuditExport(e.App) {
		t.Fatal("audit_export configured, no exporter built")
	}

	subject := e.SubjectToken(t, sandbox.Alice)
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if err != nil {
		t.Fatal(err)
	}
	lines := pollLines(t, path, 1)
	var got map[string]any
	for _, l := range lines {
		if l["id"] == resp.AuditId {
			got = l
		}
	}
	if got == nil {
		t.Fatalf("audit event %s not exported: %v", resp.AuditId, lines)
	}
	if got["subject"] != sandbox.AliceSubA || got["outcome"] != float64(store.OutcomeSuccess) || got["subject_token_hash"] == nil {
		t.Errorf("exported event = %v", got)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte(subject)) || bytes.Contains(raw, []byte(resp.AccessToken)) {
		t.Error("the export holds a raw token")
	}
	rec := httptest.NewRecorder()
	e.App.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "chainbroker_audit_export_lag_seconds ") {
		t.Error("chainbroker_audit_export_lag_seconds not exposed")
	}
}

// App.ServeOn (under Serve) runs the exporter and stops it when the
// server has drained; stdout is the default sink's writer.
func TestAuditExportRunsWithServe(t *testing.T) {
	pr, pw := io.Pipe()
	e := apptest.StartWith(t, apptest.Options{Redis: true, Stdout: pw, Mutate: func(f *config.File) {
		f.AuditExport = config.AuditExport{Sink: "stdout", ConsumerName: "serve"}
		f.SetDefaults()
	}})
	ctx := ctxT(t)
	id, err := e.App.Store.Append(ctx, &store.Event{Subject: "serve-test", Outcome: store.OutcomeFailure, Reason: "POLICY_DENIED"})
	if err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			line <- sc.Text()
		}
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, `"id":"`+id+`"`) || !strings.Contains(l, `"reason":"POLICY_DENIED"`) {
			t.Errorf("stdout line %q", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no line on stdout")
	}
	e.Stop()
	select {
	case <-e.Served():
		if err := e.ServeErr(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Serve did not return (exporter not stopped?)")
	}
	_ = pw.Close()
	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// With sink: otlp, a chain's audit event reaches a loopback OTLP/HTTP
// receiver as a log record carrying its id and hashes.
func TestAuditExportOTLP(t *testing.T) {
	got := make(chan *collogspb.ExportLogsServiceRequest, 16)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collogspb.ExportLogsServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		got <- &req
	}))
	defer recv.Close()
	e := apptest.StartWith(t, apptest.Options{Redis: true, Mutate: func(f *config.File) {
		f.AuditExport = config.AuditExport{Sink: "otlp", OTLPEndpoint: recv.URL + "/v1/logs"}
		f.SetDefaults()
	}})
	subject := e.SubjectToken(t, sandbox.Alice)
	resp, err := e.Chain.Chain(ctxT(t), &pb.ChainRequest{SubjectToken: subject, TargetDomain: sandbox.DomainBName})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(60 * time.Second)
	for {
		select {
		case req := <-got:
			for _, rl := range req.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					for _, rec := range sl.LogRecords {
						attrs := map[string]string{}
						for _, kv := range rec.Attributes {
							attrs[kv.Key] = kv.Value.GetStringValue()
						}
						if attrs["chainbroker.audit.id"] != resp.AuditId {
							continue
						}
						if attrs["chainbroker.audit.subject"] != sandbox.AliceSubA || attrs["chainbroker.audit.subject_token_hash"] == "" {
							t.Errorf("attributes %v", attrs)
						}
						if strings.Contains(rec.Body.GetStringValue(), subject) {
							t.Error("a raw token in the log record")
						}
						return
					}
				}
			}
		case <-deadline:
			t.Fatal("the chain's audit event never reached the OTLP receiver")
		}
	}
}
