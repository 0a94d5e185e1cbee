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
// as reported in the responses (not for cache hits, which make no hops);
// allocs/chain is the process's mallocs per chain (runtime.MemStats), the
// same as allocs/op but counted around the loop only.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
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
	hops    int    // in every answer: 2, or 0 for cache hits; -1 any (warming up)
}

func newBenchEnv(b *testing.B, redis bool, target string, mutate func(*config.File)) *benchEnv {
	b.Helper()
	var sbOpts sandbox.Options
	if target != sandbox.DomainBName {
		sbOpts.CloudAddr = "127.0.0.1:0" // a cloud target: the sandbox's imitations
	}
	env := apptest.StartWith(b, apptest.Options{Redis: redis, SandboxOptions: sbOpts, Mutate: mutate})
	e := &benchEnv{
		grpc:    env.Chain,
		restURL: env.HTTPURL + "/v1/chain",
		http:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		subject: env.SubjectToken(b, sandbox.Alice),
		target:  target,
		hops:    -1,
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
	e.hops = 2
	return e
}

// hopDurations returns an answer's two hop durations; a cache hit's answer
// (e.hops 0) has none.
func (e *benchEnv) hopDurations(n int, get func(int) (time.Duration, error)) (time.Duration, time.Duration, error) {
	if e.hops >= 0 && n != e.hops {
		return 0, 0, fmt.Errorf("unexpected answer: %d hops, want %d", n, e.hops)
	}
	if n < 2 {
		return 0, 0, nil
	}
	h1, err1 := get(0)
	h2, err2 := get(1)
	return h1, h2, errors.Join(err1, err2)
}

// chainGRPC runs one chain and returns its two hop durations.
func (e *benchEnv) chainGRPC(ctx context.Context) (time.Duration, time.Duration, error) {
	resp, err := e.grpc.Chain(ctx, &pb.ChainRequest{SubjectToken: e.subject, TargetDomain: e.target})
	if err != nil {
		return 0, 0, err
	}
	hops := resp.GetHops()
	if resp.GetAccessToken() == "" && resp.GetAwsCredentials() == nil {
		return 0, 0, fmt.Errorf("unexpected answer: no token (%d hops)", len(hops))
	}
	return e.hopDurations(len(hops), func(i int) (time.Duration, error) { return hops[i].GetDuration().AsDuration(), nil })
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
	if out.AccessToken == "" && len(out.AWS) == 0 {
		return 0, 0, fmt.Errorf("unexpected answer: %.300s", raw)
	}
	return e.hopDurations(len(out.Hops), func(i int) (time.Duration, error) { return time.ParseDuration(out.Hops[i].Duration) })
}

func benchChain(b *testing.B, rest, redis bool) { benchChainTo(b, rest, redis, sandbox.DomainBName) }

func benchChainTo(b *testing.B, rest, redis bool, target string) {
	benchRun(b, newBenchEnv(b, redis, target, nil), rest)
}

func benchRun(b *testing.B, e *benchEnv, rest bool) {
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
	if e.hops > 0 {
		b.ReportMetric(float64(hop1.Microseconds())/float64(n), "hop1-µs")
		b.ReportMetric(float64(hop2.Microseconds())/float64(n), "hop2-µs")
	}
}

// benchCacheHit measures cache hits: domain B's token cache on, configured
// as cmd/chainbench configures its cache runs (verify_subject_token off,
// the anonymous caller without the audit role), and warm: newBenchEnv's
// first chains fill the entry, so every chain in the loop is a hit (an
// answer without hops; anything else fails the benchmark).
func benchCacheHit(b *testing.B, rest, redis bool) {
	const keyEnv = "CHAINBROKER_BENCH_CACHE_KEY"
	b.Setenv(keyEnv, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	e := newBenchEnv(b, redis, sandbox.DomainBName, func(f *config.File) {
		f.Cache = config.Cache{Keys: []config.CacheKey{{ID: "bench", SecretEnv: keyEnv}}}
		f.Domains[1].Cache.Enabled = true
		f.Domains[0].VerifySubjectToken = false
		f.Policy[0].Roles = nil
	})
	e.hops = 0
	benchRun(b, e, rest)
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

// BenchmarkCacheHitGRPC is a chain answered from domain B's token cache,
// over gRPC through the whole stack (memory store): decoding, the caller's
// authentication, policy, the cache lookup, the audit event, metrics and
// the answer, without hops.
func BenchmarkCacheHitGRPC(b *testing.B) { benchCacheHit(b, false, false) }

// BenchmarkCacheHitREST is BenchmarkCacheHitGRPC over REST.
func BenchmarkCacheHitREST(b *testing.B) { benchCacheHit(b, true, false) }

// BenchmarkCacheHitGRPCRedis is BenchmarkCacheHitGRPC with the Redis store
// (the audit event's XADD; skipped without redis-server, unless CI is set),
// as chainbench's cache runs.
func BenchmarkCacheHitGRPCRedis(b *testing.B) { benchCacheHit(b, false, true) }
