package app_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/testutil"
)

// grpcHealth is the gRPC health of one service ("" is the server's own).
func grpcHealth(t *testing.T, e *apptest.Env, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	h, err := e.Health.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health %q: %v", service, err)
	}
	return h.Status
}

// Issue #22.1 (docs/design.md §5): liveness is not readiness. With Redis stopped,
// /readyz answers 503 and the services' gRPC health NOT_SERVING (balancers
// stop sending), but /healthz stays 200 and gRPC health "" SERVING: a
// liveness probe must not restart a healthy process because Redis is
// away. With Redis back, the broker is ready again without a restart.
func TestLivenessIndependentOfStore(t *testing.T) {
	e := apptest.StartWith(t, apptest.Options{Redis: true, Mutate: func(f *config.File) {
		f.Listen.ReadinessInterval = config.Duration(100 * time.Millisecond)
	}})
	probes := func(when string, wantReady bool) {
		t.Helper()
		if code, _ := e.Get(t, "/healthz"); code != http.StatusOK {
			t.Errorf("/healthz = %d %s, want 200", code, when)
		}
		if st := grpcHealth(t, e, ""); st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf(`gRPC health "" = %v %s, want SERVING`, st, when)
		}
		wantCode, wantSt := http.StatusOK, healthpb.HealthCheckResponse_SERVING
		if !wantReady {
			wantCode, wantSt = http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING
		}
		if code, body := e.Get(t, "/readyz"); code != wantCode {
			t.Errorf("/readyz = %d %s %s, want %d", code, body, when, wantCode)
		}
		for _, svc := range []string{"chainbroker.v1.ChainService", "chainbroker.v1.AuditService"} {
			if st := grpcHealth(t, e, svc); st != wantSt {
				t.Errorf("gRPC health %s = %v %s, want %v", svc, st, when, wantSt)
			}
		}
	}
	probes("with Redis up", true)

	e.Redis.Stop()
	e.WaitHealth(t, healthpb.HealthCheckResponse_NOT_SERVING)
	probes("with Redis stopped", false)

	e.Redis.Restart()
	e.WaitHealth(t, healthpb.HealthCheckResponse_SERVING)
	probes("with Redis back", true)
}

// Issue #14.6: while a domain's keys are missing (its JWKS answers 503),
// /readyz used to force a JWKS fetch on every call (300 calls, ~300
// fetches). It answers the readiness watcher's last result now, and the
// watcher's check respects the verifier's refresh floor: the fetches stay
// a handful however often the probes ask.
func TestReadyzDoesNotFetchJWKSPerCall(t *testing.T) {
	var fetches atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer jwks.Close()
	e := apptest.StartWith(t, apptest.Options{Mutate: func(f *config.File) {
		f.Domains[1].JWKSURI = jwks.URL + "/certs"
		f.Listen.ReadinessInterval = config.Duration(50 * time.Millisecond)
	}})
	const calls = 300
	for i := range calls {
		code, body := e.Get(t, "/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "jwks:"+e.Sandbox.B.Name()) {
			t.Fatalf("/readyz call %d = %d %s, want 503 naming jwks:%s", i, code, body, e.Sandbox.B.Name())
		}
	}
	// Let the watcher (every 50 ms) run some twenty times more: its check
	// respects the verifier's refresh floor (30 s), so it does not fetch
	// either. Expected: the start-up check's fetch, nothing per call or
	// per tick.
	time.Sleep(time.Second)
	if n := fetches.Load(); n > 5 {
		t.Errorf("%d /readyz calls made %d JWKS fetches, want a handful", calls, n)
	}
	t.Logf("%d /readyz calls, %d JWKS fetches", calls, fetches.Load())
}

// Issue #14.2: with listen.admin, the operator endpoints (/healthz,
// /readyz, /metrics, /openapi.json) are served on the admin listener and
// no longer on the API's REST listener, which keeps serving the API.
func TestAdminListener(t *testing.T) {
	e := startServeEnv(t, serveEnvOptions{drain: 5 * time.Second, admin: true})
	defer e.Close()
	testutil.WaitFor(t, 10*time.Second, "the broker to serve", func() bool {
		return testutil.Health(t, e.GRPCAddr) == healthpb.HealthCheckResponse_SERVING
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		if code, body := httpGet(t, "http://"+e.AdminAddr+path); code != http.StatusOK {
			t.Errorf("admin %s = %d %s, want 200", path, code, body)
		}
		if code, _ := httpGet(t, "http://"+e.HTTPAddr+path); code != http.StatusNotFound {
			t.Errorf("REST %s = %d, want 404 with an admin listener", path, code)
		}
	}
	if code, body := httpGet(t, "http://"+e.HTTPAddr+"/v1/domains"); code != http.StatusOK {
		t.Errorf("REST /v1/domains = %d %s", code, body)
	}
	if code, _ := httpGet(t, "http://"+e.AdminAddr+"/v1/domains"); code != http.StatusNotFound {
		t.Errorf("admin /v1/domains = %d, want 404: the API is not on the admin listener", code)
	}
	conn, err := grpc.NewClient(e.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewChainServiceClient(conn).ListDomains(ctxT(t), &pb.ListDomainsRequest{}); err != nil {
		t.Errorf("gRPC ListDomains: %v", err)
	}
}

// Without listen.admin, the REST listener serves the operator endpoints
// (today's behaviour).
func TestOperatorEndpointsOnRESTWithoutAdmin(t *testing.T) {
	e := startServeEnv(t, serveEnvOptions{drain: 5 * time.Second})
	defer e.Close()
	testutil.WaitFor(t, 10*time.Second, "the broker to serve", func() bool {
		return testutil.Health(t, e.GRPCAddr) == healthpb.HealthCheckResponse_SERVING
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/domains"} {
		if code, body := httpGet(t, "http://"+e.HTTPAddr+path); code != http.StatusOK {
			t.Errorf("REST %s = %d %s, want 200", path, code, body)
		}
	}
}
