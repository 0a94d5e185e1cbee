package broker

// Benchmarks of the broker's hot path without network: validation of a grant
// with a real RS256 verifier, the replay mark and the audit append on the
// memory store (Redis is benchmarked in store/redis), and a whole chain
// whose two hops are answered in memory. The end-to-end benchmarks, with the
// sandbox's authorization servers over HTTP, are in internal/app and
// cmd/chainbench.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

const (
	benchIssuerA = "https://a.example/realms/domain-a"
	benchIssuerB = "https://b.example/realms/domain-b"
)

// benchKeys is domain A's RS256 key, made once: key generation costs more
// than most of these benchmarks.
var benchKeys = sync.OnceValues(func() (*token.Signer, *token.Verifier) {
	s, err := token.GenerateSigner("RS256")
	if err != nil {
		panic(err)
	}
	jwks, err := token.PublicJWKS(s)
	if err != nil {
		panic(err)
	}
	v, err := token.NewStaticVerifier(jwks, nil)
	if err != nil {
		panic(err)
	}
	return s, v
})

// benchGrant signs a grant shaped like Keycloak's exchanged tokens (and the
// sandbox's): aud B, 300 s, a fresh jti.
func benchGrant(tb testing.TB, jti string) string {
	tb.Helper()
	s, _ := benchKeys()
	now := time.Now()
	g, err := s.Sign(map[string]any{
		"iss": benchIssuerA, "sub": "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c", "aud": benchIssuerB,
		"azp": "chainbroker", "typ": "Bearer", "iat": now.Unix(), "exp": now.Add(300 * time.Second).Unix(),
		"jti": jti, "scope": "profile email", "preferred_username": "alice",
	}, token.SignOptions{Typ: token.TypeJWT})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// newBenchBroker is a broker from domain A to domain B, the caller "bench"
// allowed, memory store, with the given endpoint and replay guard.
func newBenchBroker(tb testing.TB, ep TokenEndpoint, replay store.ReplayGuard, audit store.AuditLog) *Broker {
	tb.Helper()
	_, v := benchKeys()
	b, err := New(Config{
		Domains: []Domain{
			{Name: "domain-a", Issuer: benchIssuerA, TokenEndpoint: benchIssuerA + "/protocol/openid-connect/token", Keys: v,
				Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "a"}},
			{Name: "domain-b", Issuer: benchIssuerB, TokenEndpoint: benchIssuerB + "/protocol/openid-connect/token",
				Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "b"}},
		},
		Chains:   []Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: ep,
		Replay:   replay,
		Audit:    audit,
		Policy: Policy{Callers: []CallerGrant{{Caller: "bench",
			Chains: []ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{AnyScope}}}}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkValidateAssertion is the broker's check of the grant from hop 1:
// RS256 signature with domain A's keys, then the target's claim policy. It
// is the floor of the broker's per-chain CPU.
func BenchmarkValidateAssertion(b *testing.B) {
	br := newBenchBroker(b, &brokertest.PoolEndpoint{}, memory.New(memory.Options{}), memory.New(memory.Options{}))
	src, tgt := br.domains["domain-a"], br.domains["domain-b"]
	grant := benchGrant(b, "jti-validate")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := &chainRun{b: br, ev: store.Event{Hops: []store.Hop{{}}}}
		if _, err := r.validate(ctx, src, tgt, grant); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckClaims is the claim policy alone, on a verified grant.
func BenchmarkCheckClaims(b *testing.B) {
	br := newBenchBroker(b, &brokertest.PoolEndpoint{}, memory.New(memory.Options{}), memory.New(memory.Options{}))
	src, tgt := br.domains["domain-a"], br.domains["domain-b"]
	_, v := benchKeys()
	tok, err := v.Verify(context.Background(), benchGrant(b, "jti-claims"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := checkClaims(tok, src, tgt, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarkReplayMemory marks a fresh jti per iteration in the memory
// replay guard, as the broker does before hop 2 (digest included).
func BenchmarkMarkReplayMemory(b *testing.B) {
	st := memory.New(memory.Options{})
	br := newBenchBroker(b, &brokertest.PoolEndpoint{}, st, st)
	tgt := br.domains["domain-b"]
	exp := time.Now().Add(300 * time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		tok := &token.Token{Claims: token.Claims{Issuer: benchIssuerA, JTI: "jti-" + strconv.Itoa(i), Expiry: exp}}
		r := &chainRun{b: br}
		if err := r.markReplay(ctx, tgt, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditAppendMemory records the audit event of a successful chain
// (finish: outcome, append to the memory audit log, log line).
func BenchmarkAuditAppendMemory(b *testing.B) {
	st := memory.New(memory.Options{})
	br := newBenchBroker(b, &brokertest.PoolEndpoint{}, st, st)
	ctx := context.Background()
	hops := []store.Hop{
		{Domain: "domain-a", Endpoint: benchIssuerA + "/protocol/openid-connect/token", GrantType: oauth.GrantTypeTokenExchange,
			Duration: 2 * time.Millisecond, AssertionJTIHash: Hash("jti")},
		{Domain: "domain-b", Endpoint: benchIssuerB + "/protocol/openid-connect/token", GrantType: oauth.GrantTypeJWTBearer,
			Duration: 2 * time.Millisecond, AssertionJTIHash: Hash("jti")},
	}
	b.ReportAllocs()
	for b.Loop() {
		r := &chainRun{b: br, start: time.Now(), req: Request{Caller: "bench"}, ev: store.Event{
			Caller: "bench", Subject: "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c", SourceDomain: "domain-a", TargetDomain: "domain-b",
			Hops: append([]store.Hop(nil), hops...), SubjectTokenHash: Hash("subject"), AssertionJTIHash: Hash("jti"),
			AssertionIssuer: benchIssuerA, AssertionAudience: []string{benchIssuerB},
		}}
		if _, err := r.finish(ctx, &Result{AccessToken: "t"}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChainInMemoryHops is a whole chain with both hops answered in
// memory: request checks, policy, grant validation (RS256), replay mark and
// audit append on the memory store. It is the broker's own CPU per chain
// minus transports (gRPC, REST, outbound HTTP).
func BenchmarkChainInMemoryHops(b *testing.B) {
	benchChain(b, false)
}

// BenchmarkChainInMemoryHopsParallel is the same on every core, to show
// contention in the broker and the memory store.
func BenchmarkChainInMemoryHopsParallel(b *testing.B) {
	benchChain(b, true)
}

func benchChain(b *testing.B, parallel bool) {
	const pool = 256
	grants := make([]string, pool)
	for i := range grants {
		grants[i] = benchGrant(b, fmt.Sprintf("jti-chain-%d", i))
	}
	replay := brokertest.NewSwappableReplay()
	ep := &brokertest.PoolEndpoint{Grants: grants, Wrapped: replay.Reset}
	br := newBenchBroker(b, ep, replay, memory.New(memory.Options{}))
	subject := benchGrant(b, "subject-token")
	req := Request{Caller: "bench", SubjectToken: subject, TargetDomain: "domain-b"}
	ctx := context.Background()
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			if _, err := br.Chain(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			// When the pool starts over while another goroutine still holds
			// a grant of the previous round, that grant's jti can be marked
			// twice: rare, and the chain did nearly all its work.
			if _, err := br.Chain(ctx, req); err != nil {
				if e, ok := AsError(err); !ok || e.Reason != ReasonAssertionReplayed {
					b.Error(err)
					return
				}
			}
		}
	})
}
