package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// brokerConfig is the YAML configuration of `chainbroker serve`
// (config.File), limited to the fields these tests set. It is written out
// with every value explicit so that docs/interop.md can show it as is.
type brokerConfig struct {
	Listen  listenConfig   `yaml:"listen"`
	Callers callersConfig  `yaml:"callers"`
	Log     logConfig      `yaml:"log"`
	Store   storeConfig    `yaml:"store"`
	Domains []domainConfig `yaml:"domains"`
	Chains  []chainConfig  `yaml:"chains"`
	Policy  []policyEntry  `yaml:"policy"`
}

type callersConfig struct {
	APIKeys []apiKeyConfig `yaml:"api_keys"`
}

type apiKeyConfig struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

type policyEntry struct {
	Caller string        `yaml:"caller"`
	Roles  []string      `yaml:"roles,omitempty"`
	Chains []policyChain `yaml:"chains"`
}

type policyChain struct {
	Source string   `yaml:"source"`
	Target string   `yaml:"target"`
	Scopes []string `yaml:"scopes,omitempty"`
}

type listenConfig struct {
	GRPC            string `yaml:"grpc"`
	HTTP            string `yaml:"http"`
	ShutdownTimeout string `yaml:"shutdown_timeout"`
}

type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

type storeConfig struct {
	Backend string `yaml:"backend"`
}

type domainConfig struct {
	Name              string          `yaml:"name"`
	Issuer            string          `yaml:"issuer"`
	Discovery         bool            `yaml:"discovery,omitempty"`
	TokenEndpoint     string          `yaml:"token_endpoint,omitempty"`
	JWKSURI           string          `yaml:"jwks_uri,omitempty"`
	Timeout           string          `yaml:"timeout"`
	AllowInsecureHTTP bool            `yaml:"allow_insecure_http"`
	Client            clientConfig    `yaml:"client"`
	Assertion         assertionConfig `yaml:"assertion,omitempty"`
	Kind              string          `yaml:"kind,omitempty"`
	AWS               *awsConfig      `yaml:"aws,omitempty"`
}

// awsConfig is domains[].aws of a kind aws target.
type awsConfig struct {
	RoleARN     string   `yaml:"role_arn"`
	Region      string   `yaml:"region,omitempty"`
	Duration    string   `yaml:"duration,omitempty"`
	ProviderURL string   `yaml:"provider_url,omitempty"`
	ClientIDs   []string `yaml:"client_ids,omitempty"`
}

type clientConfig struct {
	ClientID   string `yaml:"client_id"`
	AuthMethod string `yaml:"auth_method"`
	SecretEnv  string `yaml:"client_secret_env"`
}

type assertionConfig struct {
	Audience    []string `yaml:"audience,omitempty"`
	MaxLifetime string   `yaml:"max_lifetime,omitempty"`
	ClockSkew   string   `yaml:"clock_skew,omitempty"`
}

type chainConfig struct {
	Source        string   `yaml:"source"`
	Target        string   `yaml:"target"`
	Audience      string   `yaml:"audience,omitempty"`
	DefaultScopes []string `yaml:"default_scopes,omitempty"`
}

// domain returns the domain named name; the test fails if there is none.
func (c *brokerConfig) domain(t *testing.T, name string) *domainConfig {
	t.Helper()
	for i := range c.Domains {
		if c.Domains[i].Name == name {
			return &c.Domains[i]
		}
	}
	t.Fatalf("no domain %q in the broker configuration", name)
	return nil
}

// brokerProc is a running `chainbroker serve` and its clients.
type brokerProc struct {
	proc    *process
	httpURL string // http://127.0.0.1:P (REST)
	apiKey  string // the caller's credential, sent as x-api-key
	chain   pb.ChainServiceClient
	audit   pb.AuditServiceClient
}

// startBroker writes cfg (with free loopback ports) to a temporary file,
// runs `chainbroker serve --config FILE` with env (the client secrets), waits
// for /readyz and connects a gRPC client that authenticates every call with
// apiKey (one of cfg.Callers.APIKeys).
func startBroker(t *testing.T, cfg brokerConfig, env []string, apiKey string) *brokerProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		cfg.Listen.GRPC, cfg.Listen.HTTP = loopback(freePort(t)), loopback(freePort(t))
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "chainbroker.yaml")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		p := startProcess(t, "chainbroker", dir, env, bins.broker, "serve", "--config", path)
		bp := &brokerProc{proc: p, httpURL: "http://" + cfg.Listen.HTTP, apiKey: apiKey}
		err = p.waitHealthy(bp.httpURL + "/readyz")
		if errors.Is(err, errAddrInUse) && attempt < 3 {
			continue
		}
		if err != nil {
			t.Fatalf("%v\nconfiguration:\n%s", err, b)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- chainbroker configuration ---\n%s", b)
			}
		})
		withKey := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey), method, req, reply, cc, opts...)
		}
		conn, err := grpc.NewClient(cfg.Listen.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(withKey))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		bp.chain, bp.audit = pb.NewChainServiceClient(conn), pb.NewAuditServiceClient(conn)
		return bp
	}
}

// chainREST calls POST /v1/chain and returns the HTTP status and the body,
// which must be JSON.
func (b *brokerProc) chainREST(t *testing.T, req map[string]any) (int, []byte) {
	t.Helper()
	js, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, b.httpURL+"/v1/chain", bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("X-Api-Key", b.apiKey)
	status, body := do(t, hreq)
	if !json.Valid(body) {
		t.Fatalf("POST /v1/chain: HTTP %d, not JSON: %s", status, body)
	}
	return status, body
}

// lastEvent returns the newest audit event.
func (b *brokerProc) lastEvent(t *testing.T) *pb.AuditEvent {
	t.Helper()
	resp, err := b.audit.ListAuditEvents(ctxT(t), &pb.ListAuditEventsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvents()) != 1 {
		t.Fatalf("ListAuditEvents: %d events, want 1", len(resp.GetEvents()))
	}
	return resp.GetEvents()[0]
}
