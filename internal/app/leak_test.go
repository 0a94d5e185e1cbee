package app_test

import (
	"encoding/json"
	"github.com/chainbroker/chainbroker/internal/testutil"
	"log/slog"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// Everything the broker writes — its debug log, every Redis key and value,
// the audit trail — is free of tokens, secrets and keys, across successes
// and failures.
func TestNoSecretWritten(t *testing.T) {
	var logs testutil.Buffer
	const apiKey, wrongKey = "agent-key-d41d8cd9", "guessed-key-8f00b204"
	e := apptest.StartWith(t, apptest.Options{Redis: true, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Mutate: func(f *config.File) {
		f.Callers = config.Callers{APIKeys: []config.APIKey{{Name: "agent", SHA256: auth.HashAPIKey(apiKey)}}}
		f.Policy = []config.PolicyEntry{{Caller: "agent", Roles: []string{"audit"},
			Chains: []config.PolicyChain{{Source: "domain-a", Target: "domain-b", Scopes: []string{"*"}}}}}
	}})
	ctx := withMD(t, "x-api-key", apiKey)
	secrets := []string{sandbox.BrokerSecretA, sandbox.BrokerSecretB, apiKey, wrongKey, "PRIVATE KEY"}

	var subjects []string
	chain := func(m sandbox.Misbehaviour) {
		subject := e.SubjectToken(t, sandbox.Alice)
		subjects = append(subjects, subject)
		e.Sandbox.A.SetMisbehaviour(m)
		resp, _ := e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subject, TargetDomain: "domain-b", Scope: []string{"profile"}})
		if resp != nil {
			secrets = append(secrets, resp.AccessToken)
		}
	}
	chain(sandbox.Misbehaviour{})                     // success
	chain(sandbox.Misbehaviour{ReuseAssertion: true}) // success, then
	chain(sandbox.Misbehaviour{ReuseAssertion: true}) // replayed
	chain(sandbox.Misbehaviour{ExtraAudience: "x"})   // refused before hop 2
	chain(sandbox.Misbehaviour{Status: 400, Error: "invalid_grant", ErrorDescription: "nope"})
	e.Sandbox.A.ResetMisbehaviour()
	e.Sandbox.B.Unlink(sandbox.AliceSubA)
	chain(sandbox.Misbehaviour{}) // refused by domain B
	e.Chain.Chain(withMD(t, "x-api-key", wrongKey), &pb.ChainRequest{SubjectToken: subjects[0], TargetDomain: "domain-b"})
	e.Chain.Chain(ctx, &pb.ChainRequest{SubjectToken: subjects[0], TargetDomain: "domain-b", Scope: []string{"bad scope"}})
	secrets = append(secrets, subjects...)

	written := map[string]string{"log": logs.String()}
	events, err := e.Audit.ListAuditEvents(ctx, &pb.ListAuditEventsRequest{PageSize: 100})
	if err != nil || len(events.Events) < 7 {
		t.Fatalf("audit: %d events, %v", len(events.GetEvents()), err)
	}
	b, _ := json.Marshal(events)
	written["audit events"] = string(b)

	rdb := goredis.NewClient(&goredis.Options{Addr: e.Redis.Addr()})
	defer rdb.Close()
	keys, err := rdb.Keys(ctxT(t), "*").Result()
	if err != nil || len(keys) < 2 {
		t.Fatalf("redis keys: %v %v", keys, err)
	}
	var dump strings.Builder
	for _, k := range keys {
		dump.WriteString(k + "\n")
		switch typ := rdb.Type(ctxT(t), k).Val(); typ {
		case "string":
			dump.WriteString(rdb.Get(ctxT(t), k).Val() + "\n")
		case "stream":
			for _, m := range rdb.XRange(ctxT(t), k, "-", "+").Val() {
				for f, v := range m.Values {
					dump.WriteString(f + "=" + v.(string) + "\n")
				}
			}
		case "zset": // audit indexes (padded stream ids) and their registry (key names)
			for _, m := range rdb.ZRange(ctxT(t), k, 0, -1).Val() {
				dump.WriteString(m + "\n")
			}
		default:
			t.Errorf("unexpected Redis key %s of type %s", k, typ)
		}
	}
	written["redis"] = dump.String()

	for where, text := range written {
		if len(text) == 0 {
			t.Errorf("%s: nothing written, the scan would prove nothing", where)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s contains a secret or token (%.12s...)", where, s)
			}
		}
		// Any JWT (a base64url JSON header) at all.
		if i := strings.Index(text, "eyJ"); i >= 0 {
			t.Errorf("%s contains something JWT-shaped: %.40s", where, text[i:])
		}
	}
}
