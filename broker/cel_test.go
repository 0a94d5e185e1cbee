package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/store"
)

// The documented examples (docs/configuration.md) of policy conditions.
const (
	whenTenant  = `subject.tenant == "acme"`
	whenGroup   = `"admins" in subject.groups`
	whenACR     = `has(subject.acr) && int(subject.acr) >= 2`
	whenPayment = `!("payments:write" in request.scopes) || caller.name == "payments-agent"`
)

// nestedAll visits 10^6 elements: far beyond the cost limit, and true if
// it were ever evaluated to the end.
const nestedAll = `[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all(c,
	[0,1,2,3,4,5,6,7,8,9].all(d, [0,1,2,3,4,5,6,7,8,9].all(e, [0,1,2,3,4,5,6,7,8,9].all(f, a+b+c+d+e+f >= size(request.scopes)))))))`

// withWhen verifies domain A's subject tokens and gives the agent, and a
// second caller payments-agent, the A -> B chain under when.
func withWhen(when string) func(*broker.Config) {
	return func(c *broker.Config) {
		c.Domains[0].VerifySubjectToken = true
		c.Policy.Callers[0].Chains[0].When = when
		c.Policy.Callers = append(c.Policy.Callers, broker.CallerGrant{Caller: "payments-agent",
			Chains: []broker.ChainGrant{{Source: "domain-a", Target: "domain-b", Scopes: []string{broker.AnyScope}, When: when}}})
	}
}

func TestPolicyConditions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		when   string
		claims map[string]any // the subject token's extra claims
		caller string         // default agent
		method string
		scopes []string
		want   broker.Reason
	}{
		{name: "tenant equal", when: whenTenant, claims: map[string]any{"tenant": "acme"}},
		{name: "tenant other", when: whenTenant, claims: map[string]any{"tenant": "globex"}, want: broker.ReasonPolicyDenied},
		{name: "tenant missing", when: whenTenant, want: broker.ReasonPolicyDenied},
		{name: "tenant of another type", when: whenTenant, claims: map[string]any{"tenant": 7}, want: broker.ReasonPolicyDenied},

		{name: "group in list", when: whenGroup, claims: map[string]any{"groups": []string{"users", "admins"}}},
		{name: "group not in list", when: whenGroup, claims: map[string]any{"groups": []string{"users"}}, want: broker.ReasonPolicyDenied},
		{name: "groups missing", when: whenGroup, want: broker.ReasonPolicyDenied},
		{name: "groups a string", when: whenGroup, claims: map[string]any{"groups": "admins"}, want: broker.ReasonPolicyDenied},

		{name: "acr number high enough", when: whenACR, claims: map[string]any{"acr": 2}},
		{name: "acr string high enough", when: whenACR, claims: map[string]any{"acr": "3"}},
		{name: "acr too low", when: whenACR, claims: map[string]any{"acr": "1"}, want: broker.ReasonPolicyDenied},
		{name: "acr missing", when: whenACR, want: broker.ReasonPolicyDenied},
		{name: "acr not a number", when: whenACR, claims: map[string]any{"acr": "urn:mace:incommon:iap:silver"}, want: broker.ReasonPolicyDenied},

		{name: "payments scope by another caller", when: whenPayment, scopes: []string{"read", "payments:write"}, want: broker.ReasonPolicyDenied},
		{name: "payments scope by payments-agent", when: whenPayment, caller: "payments-agent", scopes: []string{"payments:write"}},
		{name: "other scopes by another caller", when: whenPayment, scopes: []string{"read"}},
		{name: "no scopes", when: whenPayment},

		{name: "request fields", when: `request.source == "domain-a" && request.target == "domain-b" && request.profile == "token_exchange" && request.audience == "" && size(request.resources) == 0`},
		{name: "caller method", when: `caller.method == "mtls"`, method: "mtls"},
		{name: "caller method other", when: `caller.method == "mtls"`, method: "api_key", want: broker.ReasonPolicyDenied},
		{name: "now is the broker's clock", when: `now == timestamp("2030-01-01T00:00:00Z")`},
		{name: "claim time against now", when: `now < timestamp(int(subject.exp))`},

		{name: "claims iterated", when: `subject.exists(k, k == "tenant") && size(subject) > 5 && subject.all(k, k != "password")`, claims: map[string]any{"tenant": "acme"}},
		{name: "claims iterated, absent", when: `subject.exists(k, k == "tenant")`, want: broker.ReasonPolicyDenied},
		{name: "escaped string claim", when: `subject.name == "a \"b\" \u00e9"`, claims: map[string]any{"name": "a \"b\" \u00e9"}},
		{name: "nested claim", when: `subject.realm_access.roles.exists(r, r == "ops")`, claims: map[string]any{"realm_access": map[string]any{"roles": []string{"ops"}}}},
		{name: "bool claim", when: `subject.email_verified`, claims: map[string]any{"email_verified": true}},
		{name: "bool claim false", when: `subject.email_verified`, claims: map[string]any{"email_verified": false}, want: broker.ReasonPolicyDenied},
		{name: "dyn result not a bool", when: `subject.email_verified`, claims: map[string]any{"email_verified": "yes"}, want: broker.ReasonPolicyDenied},
		{name: "has on a missing claim", when: `!has(subject.tenant)`},
		{name: "cost limit exceeded", when: nestedAll, want: broker.ReasonPolicyDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKit(t, withWhen(tc.when))
			k.clock.Set(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			req := broker.Request{Caller: "agent", CallerMethod: tc.method, SubjectToken: k.subject(t, issuerA, "alice", tc.claims),
				TargetDomain: "domain-b", Scopes: tc.scopes}
			if tc.caller != "" {
				req.Caller = tc.caller
			}
			_, err := k.chain(context.Background(), req)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("reason %q, want %q (%v)", got, tc.want, err)
			}
			if tc.want == "" {
				return
			}
			ev := k.st.Events(t)[0]
			wantMsg := "policy[0].chains[0].when is false"
			if req.Caller == "payments-agent" {
				wantMsg = "policy[1].chains[0].when is false"
			}
			if ev.Reason != string(broker.ReasonPolicyDenied) || !strings.Contains(ev.Message, wantMsg) {
				t.Errorf("audit event reason %q message %q, want %s and %q", ev.Reason, ev.Message, broker.ReasonPolicyDenied, wantMsg)
			}
			for _, v := range tc.claims {
				if s, ok := v.(string); ok && strings.Contains(ev.Message, s) {
					t.Errorf("audit message %q holds the claim value %q", ev.Message, s)
				}
			}
			if n := k.ep.Calls("urn:ietf:params:oauth:grant-type:token-exchange"); n != 0 {
				t.Errorf("%d token exchange requests after a policy denial, want 0", n)
			}
		})
	}
}

// Several grants of one chain: the first that holds applies; a denial
// names each false condition by position.
func TestPolicyConditionsFirstThatHolds(t *testing.T) {
	grants := func(c *broker.Config) {
		c.Domains[0].VerifySubjectToken = true
		c.Policy.Callers[0].Chains = []broker.ChainGrant{
			{Source: "domain-a", Target: "domain-b", Scopes: []string{"read"}, When: whenTenant},
			{Source: "domain-a", Target: "domain-b", Scopes: []string{"read", "write"}, When: whenGroup},
			{Source: "domain-c", Target: "domain-b", Scopes: []string{broker.AnyScope}},
		}
	}
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		scopes  []string
		want    broker.Reason
		message string
	}{
		{name: "first holds", claims: map[string]any{"tenant": "acme"}, scopes: []string{"read"}},
		{name: "second holds", claims: map[string]any{"groups": []string{"admins"}}, scopes: []string{"read"}},
		{name: "only the second grants write", claims: map[string]any{"tenant": "acme", "groups": []string{"admins"}}, scopes: []string{"write"}},
		{name: "write without the second's condition", claims: map[string]any{"tenant": "acme"}, scopes: []string{"write"},
			want: broker.ReasonPolicyDenied, message: "policy[0].chains[1].when is false"},
		{name: "none holds", scopes: []string{"read"},
			want: broker.ReasonPolicyDenied, message: "policy[0].chains[0].when, policy[0].chains[1].when is false"},
		{name: "scope neither grants", claims: map[string]any{"tenant": "acme"}, scopes: []string{"admin"}, want: broker.ReasonScopeNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKit(t, grants)
			req := broker.Request{Caller: "agent", SubjectToken: k.subject(t, issuerA, "alice", tc.claims), TargetDomain: "domain-b", Scopes: tc.scopes}
			_, err := k.chain(context.Background(), req)
			if got := reasonOf(t, err); got != tc.want {
				t.Fatalf("reason %q, want %q (%v)", got, tc.want, err)
			}
			if tc.message != "" && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q, want it to name %q", err, tc.message)
			}
		})
	}
}

// In issue mode the subject token is always verified: subject may be read
// on a source that does not set verify_subject_token.
func TestPolicyConditionIssueMode(t *testing.T) {
	k := newKit(t, func(c *broker.Config) {
		c.Policy.Callers[0].Chains[1].When = `subject.sub == "alice" && request.profile == "issue"`
	})
	if _, err := k.chain(context.Background(), k.issueRequest(t)); err != nil {
		t.Fatal(err)
	}
	req := k.issueRequest(t)
	req.SubjectToken = k.subject(t, issuerC, "bob", nil)
	if _, err := k.chain(context.Background(), req); reasonOf(t, err) != broker.ReasonPolicyDenied {
		t.Fatalf("bob: %v, want %s", err, broker.ReasonPolicyDenied)
	}
}

// The cost limit ends a runaway condition: the chain is refused, and
// promptly (the limit, not a deadline, stops it).
func TestPolicyConditionCostLimit(t *testing.T) {
	k := newKit(t, withWhen(nestedAll))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := k.chain(ctx, k.request(t))
	if got := reasonOf(t, err); got != broker.ReasonPolicyDenied {
		t.Fatalf("reason %q, want %s (%v)", got, broker.ReasonPolicyDenied, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the condition ran until the deadline: no cost limit")
	}
	if ev := k.st.Events(t)[0]; ev.Outcome != store.OutcomeFailure {
		t.Errorf("event %+v", ev)
	}
}

func TestCompileCondition(t *testing.T) {
	for _, tc := range []struct {
		name     string
		expr     string
		verified bool
		want     string // "" valid
	}{
		{name: "tenant", expr: whenTenant, verified: true},
		{name: "group", expr: whenGroup, verified: true},
		{name: "acr", expr: whenACR, verified: true},
		{name: "payments", expr: whenPayment},
		{name: "now", expr: `now > timestamp("2020-01-01T00:00:00Z")`},
		{name: "undeclared variable", expr: `subjct.tenant == "acme"`, verified: true, want: "ERROR: <input>:1:1: undeclared reference to 'subjct'"},
		{name: "misspelt request field", expr: `"a" in request.scope`, want: "undeclared reference to 'request'"},
		{name: "misspelt caller field", expr: `caller.nam == "a"`, want: "undeclared reference to 'caller'"},
		{name: "not bool", expr: `request.scopes`, want: "must be a bool expression, not list(string)"},
		{name: "string", expr: `"true"`, want: "must be a bool expression, not string"},
		{name: "subject unverified", expr: whenTenant, want: "undeclared reference to 'subject' (subject is only available where the source domain verifies subject tokens, or in issue mode)"},
		{name: "syntax", expr: `subject.tenant ==`, verified: true, want: "Syntax error"},
		{name: "empty", expr: " ", want: "empty expression"},
		{name: "too long", expr: strings.Repeat("true && ", 600) + "true", want: "longer than 4096 bytes"},
		{name: "type error", expr: `caller.name + 1 == "a"`, want: "found no matching overload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := broker.CompileCondition(tc.expr, tc.verified)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// fatalTB captures newKit's Fatal (broker.New's error) instead of failing.
type fatalTB struct {
	testing.TB
	err error
}

func (f *fatalTB) Fatal(args ...any) {
	f.err, _ = args[0].(error)
	panic(f)
}

// broker.New reports condition errors by position, with the other problems.
func TestNewReportsConditionErrors(t *testing.T) {
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				panic(r)
			}
		}()
		newKit(f, func(c *broker.Config) {
			c.Policy.Callers[0].Chains[0].When = `subject.tenant == "acme"` // domain-a does not verify
			c.Policy.Callers[0].Chains[1].When = `subjct.tenant == "acme"`
		})
	}()
	for _, want := range []string{
		"policy[0].chains[0].when: ERROR: <input>:1:1: undeclared reference to 'subject'",
		"policy[0].chains[1].when: ERROR: <input>:1:1: undeclared reference to 'subjct'",
	} {
		if f.err == nil || !strings.Contains(f.err.Error(), want) {
			t.Errorf("New: %v, want %q", f.err, want)
		}
	}
}

// A call that ends while a condition is evaluated is answered as ended, not
// as a policy denial.
func TestPolicyConditionCallEnded(t *testing.T) {
	k := newKit(t, withWhen(nestedAll))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := k.chain(ctx, k.request(t))
	if got := reasonOf(t, err); got != broker.ReasonRequestCancelled {
		t.Fatalf("reason %q, want %s (%v)", got, broker.ReasonRequestCancelled, err)
	}
}
