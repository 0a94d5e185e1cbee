package apptest

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/sandbox"
)

func refused(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// A broker on a sandbox: a chain over gRPC and over REST, its audit event;
// a second broker on the same sandbox; Close stops the broker and the
// sandbox it started, not a shared one.
func TestStart(t *testing.T) {
	var mutated bool
	e := Start(t, func(f *config.File) {
		mutated = f.Listen.GRPC != "" && f.Listen.HTTP != ""
	})
	if !mutated {
		t.Error("mutate did not see the listen addresses")
	}
	if e.App.Config.Listen.GRPC != e.GRPCAddr || e.App.Config.Listen.HTTP != e.HTTPAddr {
		t.Errorf("the configuration's listen %+v is not where the broker serves (%s, %s)", e.App.Config.Listen, e.GRPCAddr, e.HTTPAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: sandbox.DomainBName})
	if err != nil {
		t.Fatal(err)
	}
	if c := e.CheckBToken(t, resp.AccessToken); c.Subject != sandbox.AliceSubB {
		t.Errorf("sub %q", c.Subject)
	}
	if ev := e.LastEvent(t); ev.Id != resp.AuditId {
		t.Errorf("last event %s, want %s", ev.Id, resp.AuditId)
	}
	status, body := e.Post(t, "/v1/chain", map[string]any{"subject_token": e.SubjectToken(t, sandbox.Bob), "target_domain": sandbox.DomainBName})
	if status != http.StatusOK {
		t.Fatalf("REST chain: %d %s", status, body)
	}

	second := StartWith(t, Options{Sandbox: e.Sandbox})
	if status, _ := second.Get(t, "/v1/domains"); status != http.StatusOK {
		t.Errorf("second broker: /v1/domains %d", status)
	}
	if err := second.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if !refused(t, second.GRPCAddr) || refused(t, hostOf(t, e.Sandbox.A.Issuer())) {
		t.Error("the second broker's Close left it serving, or closed the shared sandbox")
	}

	if err := e.Close(); err != nil || e.ServeErr() != nil {
		t.Errorf("Close: %v, ServeOn: %v", err, e.ServeErr())
	}
	if !refused(t, e.GRPCAddr) || !refused(t, e.HTTPAddr) || !refused(t, hostOf(t, e.Sandbox.A.Issuer())) {
		t.Error("Close left the broker or its sandbox serving")
	}
}

func hostOf(t *testing.T, u string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req.URL.Host
}

// With ConfigFile the broker reads app.SandboxFile, changed by Mutate
// before defaults, from its file, and reloads what WriteConfig writes.
func TestStartFromConfigFile(t *testing.T) {
	var defaulted bool
	e := StartWith(t, Options{ConfigFile: true, Mutate: func(f *config.File) {
		defaulted = f.Listen.ShutdownTimeout != 0
		f.Log.Level = "warn"
	}})
	if defaulted {
		t.Error("Mutate saw the configuration after defaults, not the file")
	}
	if e.ConfigPath == "" || e.App.Config.Log.Level != "warn" || e.App.Config.Listen.GRPC != e.GRPCAddr {
		t.Errorf("the broker did not start from the file %q: %+v", e.ConfigPath, e.App.Config.Log)
	}
	chain := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: e.SubjectToken(t, sandbox.Alice), TargetDomain: sandbox.DomainBName})
		return err
	}
	if err := chain(); err != nil {
		t.Fatal(err)
	}
	e.WriteConfig(t, func(f *config.File) { f.Policy[0].Chains = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.App.Reload(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := e.App.Current(); cfg.Log.Level != "warn" || len(cfg.Policy[0].Chains) != 0 {
		t.Errorf("after the reload: log %+v, policy %+v", cfg.Log, cfg.Policy)
	}
	if err := chain(); err == nil {
		t.Error("a chain the reloaded policy no longer grants succeeded")
	}
}
