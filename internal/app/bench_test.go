package app_test

// End-to-end benchmarks of the whole stack in one process: the sandbox's
// two authorization servers on loopback HTTP, the broker built by Build
// from SandboxConfig (the demo's configuration: verify_subject_token on,
// anonymous callers, memory store unless noted) and served on loopback gRPC
// and REST listeners, and a client. Everything shares the process, so
// ns/op and allocs/op include both domains (which sign two RS256 JWTs per
// chain, most of the cost) and the client: these benchmarks catch
// regressions of the whole path; cmd/chainbench runs the parts in separate
// processes and measures the broker's own CPU and allocations.
//
// Custom metrics: hop1-µs and hop2-µs are the broker's mean hop durations
// as reported in the responses; allocs/chain is the process's mallocs per
// chain (runtime.MemStats), the same as allocs/op but counted around the
// loop only.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

type benchEnv struct {
	grpc    pb.ChainServiceClient
	restURL string
	http    *http.Client
	subject string
	target  string // the target domain chained into
}

func newBenchEnv(b *testing.B, redis bool, target string) *benchEnv {
	b.Helper()
	var sbOpts sandbox.Options
	if target != sandbox.DomainBName {
		sbOpts.CloudAddr = "127.0.0.1:0" // a cloud target: the sandbox's imitations
	}
	env := apptest.StartWith(b, apptest.Options{Redis: redis, SandboxOptions: sbOpts})
	e := &benchEnv{
		grpc:    env.Chain,
		restURL: env.HTTPURL + "/v1/chain",
		http:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		subject: env.SubjectToken(b, sandbox.Alice),
		target:  target,
	}
	b.Cleanup(e.http.CloseIdleConnections)
	ctx := context.Background()
	// Up and warm: JWKS fetched, connections open.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, err := e.chainREST(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("broker not up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, _, err := e.chainGRPC(ctx); err != nil {
		b.Fatal(err)
	}
	return e
}

// chainGRPC runs one chain and returns its two hop durations.
func (e *benchEnv) chainGRPC(ctx context.Context) (time.Duration, time.Duration, error) {
	resp, err := e.grpc.Chain(ctx, &pb.ChainRequest{SubjectToken: e.subject, TargetDomain: e.target})
	if err != nil {
		return 0, 0, err
	}
	hops := resp.GetHops()
	if (resp.GetAccessToken() == "" && resp.GetAwsCredentials() == nil) || len(hops) != 2 {
		return 0, 0, fmt.Errorf("unexpected answer: %d hops, token %v", len(hops), resp.GetAccessToken() != "")
	}
	return hops[0].GetDuration().AsDuration(), hops[1].GetDuration().AsDuration(), nil
}

func (e *benchEnv) chainREST(ctx context.Context) (time.Duration, time.Duration, error) {
	body := `{"subject_token":"` + e.subject + `","target_domain":"` + e.target + `"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.restURL, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("HTTP %d: %.300s", resp.StatusCode, raw)
	}
	var out struct {
		AccessToken string          `json:"access_token"`
		AWS         json.RawMessage `json:"aws_credentials"`
		Hops        []struct {
			Duration string `json:"duration"`
		} `json:"hops"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, 0, err
	}
	if (out.AccessToken == "" && len(out.AWS) == 0) || len(out.Hops) != 2 {
		return 0, 0, fmt.Errorf("unexpected answer: %.300s", raw)
	}
	h1, err1 := time.ParseDuration(out.Hops[0].Duration)
	h2, err2 := time.ParseDuration(out.Hops[1].Duration)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("hop durations %q, %q", out.Hops[0].Duration, out.Hops[1].Duration)
	}
	return h1, h2, nil
}

func benchChain(b *testing.B, rest, redis bool) { benchChainTo(b, rest, redis, sandbox.DomainBName) }

func benchChainTo(b *testing.B, rest, redis bool, target string) {
	e := newBenchEnv(b, redis, target)
	do := e.chainGRPC
	if rest {
		do = e.chainREST
	}
	ctx := context.Background()
	var hop1, hop2 time.Duration
	var before, after runtime.MemStats
	n := 0
	b.ReportAllocs()
	runtime.ReadMemStats(&before)
	for b.Loop() {
		h1, h2, err := do(ctx)
		if err != nil {
			b.Fatal(err)
		}
		hop1 += h1
		hop2 += h2
		n++
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/chain")
	b.ReportMetric(float64(hop1.Microseconds())/float64(n), "hop1-µs")
	b.ReportMetric(float64(hop2.Microseconds())/float64(n), "hop2-µs")
}

// BenchmarkChainGRPC is a chain over gRPC through the whole stack.
func BenchmarkChainGRPC(b *testing.B) { benchChain(b, false, false) }

// BenchmarkChainREST is a chain over REST (gateway) through the whole stack.
func BenchmarkChainREST(b *testing.B) { benchChain(b, true, false) }

// BenchmarkChainGRPCRedis is BenchmarkChainGRPC with the Redis store (a
// throwaway redis-server; skipped without one, unless CI is set).
func BenchmarkChainGRPCRedis(b *testing.B) { benchChain(b, false, true) }

// BenchmarkChainGRPCAWS is BenchmarkChainGRPC into the sandbox's aws target
// (its AWS STS imitation, through aws-sdk-go-v2's STS client): a cloud chain
// beside the plain one.
func BenchmarkChainGRPCAWS(b *testing.B) { benchChainTo(b, false, false, app.SandboxAWSTarget) }
