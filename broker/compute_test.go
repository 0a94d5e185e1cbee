package broker_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/broker"
	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/token"
)

// Transcription.Compute in issue mode: each claim is the JSON value of its
// expression in the grant the broker signs; one that does not evaluate is
// left out, and the audit event lists the claims added.
func TestComputedClaims(t *testing.T) {
	k := newKit(t, func(c *broker.Config) {
		c.Chains[1].Transcription.Compute = map[string]string{
			"tenant":   `subject.email.split("@")[1]`,
			"roles":    `subject.groups.filter(g, g.startsWith("app-")).map(g, g.substring(4))`,
			"level":    `has(subject.acr) ? int(subject.acr) : 0`,
			"via":      `{"caller": caller.name, "scopes": request.scopes}`,
			"missing":  `subject.nothing`,
			"verified": `subject.email_verified`,
		}
	})
	req := k.issueRequest(t)
	req.SubjectToken = k.subject(t, issuerC, "alice", map[string]any{"email": "alice@acme.example",
		"groups": []string{"app-read", "ops", "app-write"}, "acr": "2", "email_verified": true})
	req.Scopes = []string{"read"}
	if _, err := k.chain(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	reqs := k.ep.Requests(oauth.GrantTypeJWTBearer)
	if len(reqs) != 1 {
		t.Fatalf("%d jwt-bearer requests", len(reqs))
	}
	grant, err := token.ParseUnverified(reqs[0].Form.Get("assertion"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"tenant":   `"acme.example"`,
		"roles":    `["read","write"]`,
		"level":    `2`,
		"via":      `{"caller":"agent","scopes":["read"]}`,
		"verified": `true`,
	} {
		got, ok := grant.Claim(name)
		if !ok || string(got) != want {
			t.Errorf("claim %s = %s (%v), want %s", name, got, ok, want)
		}
	}
	if got, ok := grant.Claim("missing"); ok {
		t.Errorf("claim missing = %s, want it left out", got)
	}
	ev := k.st.Events(t)[0]
	for _, name := range []string{"tenant", "roles", "level", "via", "verified"} {
		if !slices.Contains(ev.TranscribedClaims, name) {
			t.Errorf("audit transcribed claims %v, want %s", ev.TranscribedClaims, name)
		}
	}
	if slices.Contains(ev.TranscribedClaims, "missing") {
		t.Errorf("audit transcribed claims %v name a claim left out", ev.TranscribedClaims)
	}
}

func TestCompileComputedClaim(t *testing.T) {
	for _, tc := range []struct {
		name, claim, expr, want string
	}{
		{"string", "tenant", `subject.tenant`, ""},
		{"list", "roles", `["a", "b"]`, ""},
		{"map", "ctx", `{"a": 1}`, ""},
		{"reserved sub", "sub", `"x"`, `"sub" is set by the broker`},
		{"reserved act", "act", `{"sub": "x"}`, `"act" is set by the broker`},
		{"timestamp", "when", `now`, "must have a JSON type"},
		{"bytes", "b", `b"x"`, "must have a JSON type"},
		{"map with int keys", "m", `{1: "a"}`, "must have a JSON type"},
		{"list of timestamps", "l", `[now]`, "must have a JSON type"},
		{"undeclared", "x", `subjct.tenant`, "undeclared reference to 'subjct'"},
		{"empty", "x", ``, "empty expression"},
		{"no name", "", `"x"`, "claim name required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := broker.CompileComputedClaim(tc.claim, tc.expr)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// A computed value over MaxComputedClaimBytes is left out; a runaway one
// stops at the cost limit and is left out.
func TestComputedClaimsLeftOut(t *testing.T) {
	k := newKit(t, func(c *broker.Config) {
		c.Chains[1].Transcription.Compute = map[string]string{
			"big":  `subject.sub + subject.pad`,
			"huge": `[0,1,2,3,4,5,6,7,8,9].map(a, [0,1,2,3,4,5,6,7,8,9].map(b, [0,1,2,3,4,5,6,7,8,9].map(c, [0,1,2,3,4,5,6,7,8,9].map(d, [0,1,2,3,4,5,6,7,8,9].map(e, a+b+c+d+e)))))`,
			"fine": `"yes"`,
		}
	})
	req := k.issueRequest(t)
	req.SubjectToken = k.subject(t, issuerC, "alice", map[string]any{"pad": strings.Repeat("x", 5000)})
	if _, err := k.chain(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	grant, err := token.ParseUnverified(k.ep.Requests(oauth.GrantTypeJWTBearer)[0].Form.Get("assertion"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"big", "huge"} {
		if v, ok := grant.Claim(name); ok {
			t.Errorf("claim %s = %.80s, want it left out", name, v)
		}
	}
	if v, ok := grant.Claim("fine"); !ok || string(v) != `"yes"` {
		t.Errorf("claim fine = %s", v)
	}
}

// broker.New refuses computed claims outside issue mode, and reserved names.
func TestNewReportsComputedClaimErrors(t *testing.T) {
	f := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				panic(r)
			}
		}()
		newKit(f, func(c *broker.Config) {
			c.Chains[0].Transcription.Compute = map[string]string{"tenant": `"x"`}
			c.Chains[1].Transcription.Compute = map[string]string{"iss": `"x"`}
		})
	}()
	for _, want := range []string{"computed claims need issue mode", `computed claim "iss": "iss" is set by the broker`} {
		if f.err == nil || !strings.Contains(f.err.Error(), want) {
			t.Errorf("New: %v, want %q", f.err, want)
		}
	}
}
