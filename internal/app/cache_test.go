package app_test

import (
	"bytes"
	"encoding/base64"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
)

const cacheKeyEnv = "CHAINBROKER_TEST_CACHE_KEY"

// withCache turns on domain B's token cache with a fixed key, and gives two
// API-key callers the chain.
func withCache(f *config.File) {
	f.Domains[1].Cache = config.DomainCache{Enabled: true}
	f.Cache = config.Cache{Keys: []config.CacheKey{{ID: "k1", SecretEnv: cacheKeyEnv}}}
	f.Callers = config.Callers{APIKeys: []config.APIKey{
		{Name: "agent-1", SHA256: auth.HashAPIKey("key-1")}, {Name: "agent-2", SHA256: auth.HashAPIKey("key-2")},
	}}
	grant := []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"}}}
	f.Policy = []config.PolicyEntry{{Caller: "agent-1", Roles: []string{"audit"}, Chains: grant}, {Caller: "agent-2", Chains: grant}}
}

func TestTokenCache(t *testing.T) {
	t.Setenv(cacheKeyEnv, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	e := apptest.StartWith(t, apptest.Options{Redis: true, Mutate: withCache})
	subject := e.SubjectToken(t, sandbox.Alice)
	as := func(key string, scopes ...string) (*pb.ChainResponse, error) {
		return e.Chain.Chain(withMD(t, "x-api-key", key), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: scopes})
	}
	exchanges := func() int64 { return e.Sandbox.A.ExchangeCount() }

	first, err := as("key-1")
	if err != nil {
		t.Fatal(err)
	}
	n := exchanges()
	hit, err := as("key-1")
	if err != nil {
		t.Fatal(err)
	}
	if hit.AccessToken != first.AccessToken || exchanges() != n || len(hit.Hops) != 0 || hit.ExpiresIn > first.ExpiresIn || hit.ExpiresIn <= 0 {
		t.Fatalf("second call: same token %v, exchanges +%d, hops %d, expires_in %d (first %d)",
			hit.AccessToken == first.AccessToken, exchanges()-n, len(hit.Hops), hit.ExpiresIn, first.ExpiresIn)
	}
	ev, err := e.Audit.GetAuditEvent(withMD(t, "x-api-key", "key-1"), &pb.GetAuditEventRequest{Id: hit.AuditId})
	if err != nil || ev.Event.Outcome != pb.Outcome_OUTCOME_CACHE_HIT || ev.Event.Caller != "agent-1" {
		t.Errorf("hit audit event: %v %v", ev, err)
	}

	// Another caller with the same subject token never gets the first one's token.
	other, err := as("key-2")
	if err != nil {
		t.Fatal(err)
	}
	if other.AccessToken == first.AccessToken || exchanges() != n+1 {
		t.Errorf("another caller got the cached token (or no new chain ran)")
	}
	// Other scopes: another entry.
	if r, err := as("key-1", "profile"); err != nil || r.AccessToken == first.AccessToken {
		t.Errorf("other scopes: %v", err)
	}

	// In Redis the entry is sealed: no token in clear.
	rdb := goredis.NewClient(&goredis.Options{Addr: e.Redis.Addr()})
	defer rdb.Close()
	keys, _ := rdb.Keys(ctxT(t), "chainbroker:cache:*").Result()
	if len(keys) != 3 {
		t.Fatalf("%d cache entries in Redis, want 3", len(keys))
	}
	for _, k := range keys {
		v, _ := rdb.Get(ctxT(t), k).Bytes()
		if bytes.Contains(v, []byte(first.AccessToken)) || bytes.Contains(v, []byte("eyJ")) || !bytes.HasPrefix(v, []byte("k1:")) {
			t.Errorf("cache entry %s is not sealed under k1", k)
		}
	}
	status, body := e.Get(t, "/metrics")
	if status != 200 || metricValue(t, string(body), "chainbroker_cache_lookups_total", map[string]string{"result": "hit"}) != 1 ||
		metricValue(t, string(body), "chainbroker_cache_lookups_total", map[string]string{"result": "miss"}) != 3 {
		t.Errorf("cache metrics wrong")
	}
}

// Concurrent misses for one entry cause one chain, within a process and
// across two replicas sharing Redis.
func TestTokenCacheNoStampede(t *testing.T) {
	t.Setenv(cacheKeyEnv, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	redistest.Require(t)
	shared := redistest.New(t, redistest.Options{})
	mutate := func(f *config.File) {
		withCache(f)
		f.Store = config.Store{Backend: "redis", Redis: config.Redis{URL: shared.URL()}}
		f.SetDefaults()
	}
	e := apptest.Start(t, mutate)
	// A second replica: another broker on the same sandbox and Redis.
	e2 := apptest.StartWith(t, apptest.Options{Sandbox: e.Sandbox, Mutate: mutate})
	replicas := []pb.ChainServiceClient{e.Chain, e2.Chain}

	subject := e.SubjectToken(t, sandbox.Bob)
	before := e.Sandbox.A.ExchangeCount()
	var wg sync.WaitGroup
	tokens := make(chan string, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := replicas[i%2].Chain(withMD(t, "x-api-key", "key-1"), &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b"})
			if err != nil {
				t.Error(err)
				return
			}
			tokens <- r.AccessToken
		}()
	}
	wg.Wait()
	close(tokens)
	distinct := map[string]bool{}
	for tok := range tokens {
		distinct[tok] = true
	}
	if got := e.Sandbox.A.ExchangeCount() - before; got != 1 || len(distinct) != 1 {
		t.Errorf("40 concurrent identical chains over 2 replicas: %d token exchanges, %d distinct tokens; want 1 and 1", got, len(distinct))
	}
}
