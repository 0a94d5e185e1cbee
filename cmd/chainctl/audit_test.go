package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/sandbox"
)

// auditList is the JSON of `audit list -o json`.
type auditList struct {
	Events []struct {
		ID      string `json:"id"`
		Outcome string `json:"outcome"`
		Subject string `json:"subject"`
		Reason  string `json:"reason"`
		Target  string `json:"target_domain"`
	} `json:"events"`
	NextPageToken string `json:"next_page_token"`
}

func (l auditList) ids() []string {
	var ids []string
	for _, e := range l.Events {
		ids = append(ids, e.ID)
	}
	return ids
}

func TestAudit(t *testing.T) {
	t.Parallel()
	b := startBroker(t)

	// Five chains, newest last: alice x3 succeeds, bob succeeds, alice into an
	// unknown domain fails.
	for range 3 {
		wantCode(t, b.run(t, b.SubjectToken(t, sandbox.Alice), "chain", "--target", "domain-b"), exitOK)
	}
	wantCode(t, b.run(t, b.SubjectToken(t, sandbox.Bob), "chain", "--target", "domain-b"), exitOK)
	wantCode(t, b.run(t, b.SubjectToken(t, sandbox.Alice), "chain", "--target", "nowhere"), exitInvalid)

	list := func(t *testing.T, args ...string) auditList {
		t.Helper()
		r := b.run(t, "", append([]string{"audit", "list", "-o", "json"}, args...)...)
		wantCode(t, r, exitOK)
		var doc map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc) != 2 || doc["events"] == nil || doc["next_page_token"] == nil {
			t.Fatalf("not one ListAuditEventsResponse document (err %v):\n%s", err, r.stdout)
		}
		var l auditList
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}

	all := list(t)
	if len(all.Events) != 5 || all.NextPageToken != "" {
		t.Fatalf("all events: %+v", all)
	}
	if all.Events[0].Outcome != "OUTCOME_FAILURE" || all.Events[0].Reason != "DOMAIN_UNKNOWN" || all.Events[0].Target != "nowhere" {
		t.Errorf("newest event = %+v, want the failed chain", all.Events[0])
	}

	t.Run("filters", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want int
		}{
			// The refused chain (unknown target) never verified alice's
			// token: its sub is recorded as unverified_subject, which the
			// subject filter does not match.
			{"subject", []string{"--subject", sandbox.AliceSubA}, 3},
			{"subject and outcome", []string{"--subject", sandbox.AliceSubA, "--outcome", "success"}, 3},
			{"outcome failure", []string{"--outcome", "failure"}, 1},
			{"outcome enum name", []string{"--outcome", "OUTCOME_FAILURE"}, 1},
			{"outcome cache_hit", []string{"--outcome", "cache_hit"}, 0},
			{"bob", []string{"--subject", sandbox.BobSubA}, 1},
			{"source and target", []string{"--source", "domain-a", "--target", "domain-b"}, 4},
			{"target unknown", []string{"--target", "nowhere"}, 1},
			{"caller", []string{"--caller", "anonymous"}, 5},
			{"other caller", []string{"--caller", "someone-else"}, 0},
			{"since duration", []string{"--since", "1h"}, 5},
			{"since future", []string{"--since", "2999-01-01T00:00:00Z"}, 0},
			{"until past", []string{"--until", "2000-01-01T00:00:00Z"}, 0},
			{"since past until future", []string{"--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01T00:00:00Z"}, 5},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if got := list(t, tc.args...); len(got.Events) != tc.want {
					t.Errorf("%v: %d events, want %d: %+v", tc.args, len(got.Events), tc.want, got.Events)
				}
			})
		}
	})

	t.Run("limit across pages", func(t *testing.T) {
		// --limit 3 with pages of 2: two calls (2 + 1), then the token continues.
		first := list(t, "--limit", "3", "--page-size", "2")
		if !slices.Equal(first.ids(), all.ids()[:3]) || first.NextPageToken == "" {
			t.Fatalf("--limit 3 --page-size 2: ids %v next %q, want %v and a page token", first.ids(), first.NextPageToken, all.ids()[:3])
		}
		rest := list(t, "--limit", "3", "--page-size", "2", "--page-token", first.NextPageToken)
		if !slices.Equal(rest.ids(), all.ids()[3:]) || rest.NextPageToken != "" {
			t.Errorf("continuation: ids %v next %q, want %v and no token", rest.ids(), rest.NextPageToken, all.ids()[3:])
		}
		// --limit 0 follows every page.
		if every := list(t, "--limit", "0", "--page-size", "2"); !slices.Equal(every.ids(), all.ids()) {
			t.Errorf("--limit 0: ids %v, want %v", every.ids(), all.ids())
		}
		// A limit above what exists stops at the end.
		if some := list(t, "--limit", "100", "--page-size", "1", "--subject", sandbox.AliceSubA); len(some.Events) != 3 || some.NextPageToken != "" {
			t.Errorf("--limit 100: %+v", some)
		}
	})

	t.Run("table", func(t *testing.T) {
		r := b.run(t, "", "audit", "list", "--limit", "2")
		wantCode(t, r, exitOK)
		for _, want := range []string{"TIME", "ID", "OUTCOME", "REASON", all.ids()[0], all.ids()[1], "failure", "DOMAIN_UNKNOWN", "success"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, all.ids()[2]) {
			t.Errorf("table shows more than --limit 2 events:\n%s", r.stdout)
		}
		wantStderr(t, r, "--page-token")

		r = b.run(t, "", "audit", "list", "--caller", "nobody")
		wantCode(t, r, exitOK)
		wantStderr(t, r, "no audit event matches")
	})

	t.Run("get", func(t *testing.T) {
		id := all.ids()[1] // bob's success
		r := b.run(t, "", "audit", "get", id)
		wantCode(t, r, exitOK)
		for _, want := range []string{id, "success", sandbox.BobSubA, "domain-a", "domain-b", "token-exchange", "jwt-bearer", b.Sandbox.A.Issuer()} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("table lacks %q:\n%s", want, r.stdout)
			}
		}
		// Flags after the positional id.
		r = b.run(t, "", "audit", "get", id, "-o", "json")
		wantCode(t, r, exitOK)
		var got struct {
			Event struct {
				ID      string `json:"id"`
				Outcome string `json:"outcome"`
				Subject string `json:"subject"`
				Hops    []any  `json:"hops"`
			} `json:"event"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if got.Event.ID != id || got.Event.Outcome != "OUTCOME_SUCCESS" || got.Event.Subject != sandbox.BobSubA || len(got.Event.Hops) != 2 {
			t.Errorf("event = %+v", got.Event)
		}
	})
}
