package broker

// The cost of a policy condition (ChainGrant.When): the policy decision
// alone, and a whole chain (hops answered in memory), each without and with
// a typical condition on a verified subject token. Run:
//
//	go test -run '^$' -bench 'PolicyDecision|ChainWhen' -benchtime 2s ./broker/

import (
	"context"
	"fmt"
	"testing"

	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
	"github.com/chainbroker/chainbroker/token"
)

// benchWhen is a typical condition: a claim, a scope rule and the caller.
const benchWhen = `subject.preferred_username == "alice" && !("admin" in request.scopes) && caller.name == "bench"`

func newWhenBenchBroker(tb testing.TB, when string, ep TokenEndpoint, replay store.ReplayGuard, audit store.AuditLog) *Broker {
	tb.Helper()
	_, v := benchKeys()
	b, err := New(Config{
		Domains: []Domain{
			{Name: "domain-a", Issuer: benchIssuerA, TokenEndpoint: benchIssuerA + "/protocol/openid-connect/token", Keys: v,
				VerifySubjectToken: true, Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "a"}},
			{Name: "domain-b", Issuer: benchIssuerB, TokenEndpoint: benchIssuerB + "/protocol/openid-connect/token",
				Creds: oauth.ClientCredentials{ClientID: "chainbroker", Method: oauth.AuthClientSecretBasic, Secret: "b"}},
		},
		Chains:   []Chain{{Source: "domain-a", Target: "domain-b"}},
		Endpoint: ep,
		Replay:   replay,
		Audit:    audit,
		Policy: Policy{Callers: []CallerGrant{{Caller: "bench",
			Chains: []ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{AnyScope}, When: when}}}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkPolicyDecision is authorize and applies on a verified subject:
// with a condition, its evaluation includes decoding the claims it reads.
func BenchmarkPolicyDecision(b *testing.B) {
	for _, tc := range []struct{ name, when string }{{"none", ""}, {"when", benchWhen}} {
		b.Run(tc.name, func(b *testing.B) {
			br := newWhenBenchBroker(b, tc.when, &brokertest.PoolEndpoint{}, brokertest.NewSwappableReplay(), memory.New(memory.Options{}))
			src, tgt, chain := br.domains["domain-a"], br.domains["domain-b"], br.chains[[2]string{"domain-a", "domain-b"}]
			req := Request{Caller: "bench", SubjectToken: benchGrant(b, "subject-token"), TargetDomain: "domain-b", Scopes: []string{"profile"}}
			subject, err := token.ParseUnverified(req.SubjectToken)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				r := &chainRun{b: br, req: req, subject: subject}
				allowed, err := r.authorize(src, tgt, chain)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.applies(ctx, allowed, src, tgt, chain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChainWhen is BenchmarkChainInMemoryHops with the subject token
// verified, without and with a condition.
func BenchmarkChainWhen(b *testing.B) {
	for _, tc := range []struct{ name, when string }{{"none", ""}, {"when", benchWhen}} {
		b.Run(tc.name, func(b *testing.B) {
			const pool = 256
			grants := make([]string, pool)
			for i := range grants {
				grants[i] = benchGrant(b, fmt.Sprintf("jti-when-%d", i))
			}
			replay := brokertest.NewSwappableReplay()
			ep := &brokertest.PoolEndpoint{Grants: grants, Wrapped: replay.Reset}
			br := newWhenBenchBroker(b, tc.when, ep, replay, memory.New(memory.Options{}))
			req := Request{Caller: "bench", SubjectToken: benchGrant(b, "subject-token"), TargetDomain: "domain-b", Scopes: []string{"profile"}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := br.Chain(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
