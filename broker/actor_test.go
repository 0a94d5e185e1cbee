package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/token"
)

// TestActorTokenOnActChains (#14.3): with transcription.act the broker names
// the caller in hop 1's actor token; a caller's own actor token (another
// agent's) is refused unless the grant allows it, and every event records
// the actor token's hash and the resulting actor.
func TestActorTokenOnActChains(t *testing.T) {
	_, signBroker := fixtureKeys(t)
	otherAgent, err := signBroker.Sign(map[string]any{"iss": brokerIssuer, "sub": "other-agent", "aud": issuerA,
		"exp": time.Now().Add(time.Minute).Unix()}, token.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		act         bool // the chain's transcription.act
		allow       bool // the grant's ActorToken
		issue       bool // issue mode
		callerActor string
		want        broker.Reason
		wantActor   string
		wantSent    string // the actor token hop 1 carries: "" none, "broker" the broker's, else this one
	}{
		{name: "act: the broker names the caller", act: true, wantActor: "agent", wantSent: "broker"},
		{name: "act: another agent's actor token refused", act: true, callerActor: otherAgent, want: broker.ReasonActorTokenNotAllowed},
		{name: "act: the grant allows the caller's own", act: true, allow: true, callerActor: otherAgent, wantActor: "other-agent", wantSent: otherAgent},
		{name: "no act: the caller's actor token goes to the source", callerActor: otherAgent, wantActor: "other-agent", wantSent: otherAgent},
		{name: "no act, no actor token", wantActor: ""},
		{name: "issue mode act", act: true, issue: true, wantActor: "agent"},
		{name: "issue mode act: an actor token refused", act: true, issue: true, callerActor: otherAgent, want: broker.ReasonActorTokenNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *broker.Config) {
				c.Chains[0].Transcription.Act = tt.act
				c.Policy.Callers[0].Chains[0].ActorToken = tt.allow
				if tt.issue {
					issueMode(nil, "")(c)
				}
			})
			req := broker.Request{Caller: "agent", TargetDomain: "domain-b", SubjectToken: f.subjectToken(t, "alice", nil, "")}
			if tt.callerActor != "" {
				req.ActorToken, req.ActorTokenType = tt.callerActor, oauth.TokenTypeJWT
			}
			_, err := f.b.Chain(context.Background(), req)
			if got := reasonOf(t, err); got != tt.want {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			evs := f.events(t, store.Filter{})
			if len(evs) != 1 {
				t.Fatalf("%d events", len(evs))
			}
			ev := evs[0]
			if ev.Actor != tt.wantActor {
				t.Errorf("event actor %q, want %q", ev.Actor, tt.wantActor)
			}
			if tt.want != "" {
				if n := f.ep.n.Load(); n != 0 {
					t.Errorf("a refused request made %d token exchange calls", n)
				}
				if ev.ActorTokenHash != broker.Hash(tt.callerActor) {
					t.Errorf("the refused actor token's hash is not audited: %q", ev.ActorTokenHash)
				}
				return
			}
			if tt.issue {
				return
			}
			sent := f.ep.lastForm(t).Get("actor_token")
			switch tt.wantSent {
			case "":
				if sent != "" || ev.ActorTokenHash != "" {
					t.Errorf("actor token sent %q, audited %q; want none", sent, ev.ActorTokenHash)
				}
				return
			case "broker":
				tok, err := brokertest.Verifier(t, signBroker).Verify(context.Background(), sent)
				if err != nil || tok.Claims.Subject != "agent" || tok.Claims.Issuer != brokerIssuer {
					t.Fatalf("hop 1's actor token is not the broker's naming the caller: %v %+v", err, tok)
				}
			default:
				if sent != tt.wantSent {
					t.Fatalf("hop 1 sent actor token %.40q, want the caller's", sent)
				}
			}
			if ev.ActorTokenHash != broker.Hash(sent) {
				t.Errorf("event actor_token_hash %q, want the hash of the actor token sent", ev.ActorTokenHash)
			}
		})
	}
}
