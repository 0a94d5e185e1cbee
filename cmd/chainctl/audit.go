package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

const auditUsage = `Usage:
  chainctl audit list [flags]    list audit events, newest first
  chainctl audit get ID [flags]  show one audit event

Run "chainctl audit list -h" or "chainctl audit get -h" for their flags.
`

const auditListUsage = `Usage:
  chainctl audit list [flags]

Lists audit events (one per chain call, whatever its outcome), newest first,
following pages until --limit events are printed or none are left. The caller
needs the audit role in the broker's policy (else exit 3, AUDIT_NOT_ALLOWED).

Flags:
  --subject SUB          only events for this subject (the user's sub in the source domain)
  --caller NAME          only events of this caller
  --source DOMAIN        only events from this source domain
  --target DOMAIN        only events into this target domain
  --outcome OUTCOME      only events with this outcome: success, failure or cache_hit
  --since TIME           only events at or after TIME: a duration back from now (1h, 30m)
                         or an RFC 3339 time (2026-01-02T15:04:05Z)
  --until TIME           only events before TIME (same forms)
  --limit N              print at most N events (default 50; 0: every matching event)
  --page-size N          events asked per call (default: min(--limit, 1000))
  --page-token TOKEN     continue after a previous listing (its next_page_token)

Output:
  table  one row per event; when more events match than --limit, stderr says
         which --page-token continues
  json   a ListAuditEventsResponse holding every event printed and the
         next_page_token to continue from ("" when no event is left)

Examples:
  chainctl audit list --outcome failure --since 1h
  chainctl audit list --subject 2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c --limit 0 -o json

Global flags: see "chainctl -h".
`

const auditGetUsage = `Usage:
  chainctl audit get ID [flags]

Shows one audit event (for example a chain's audit id). Exit code 4 when no
event has that id; the caller needs the audit role.

Output:
  table  the event's fields, then its hops
  json   the GetAuditEventResponse: {"event": {...}}

Global flags: see "chainctl -h".
`

const (
	defaultAuditLimit = 50
	maxPageSize       = 1000
)

func (c *cli) audit(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, auditUsage)
		return usageErrorf("audit: want a subcommand: list or get")
	}
	switch args[0] {
	case "list":
		c.command = "audit list"
		return c.auditList(args[1:])
	case "get":
		c.command = "audit get"
		return c.auditGet(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, auditUsage)
		return nil
	}
	return usageErrorf("audit: unknown subcommand %q (want list or get)", args[0])
}

func (c *cli) auditList(args []string) error {
	var (
		req                   pb.ListAuditEventsRequest
		outcome, since, until string
		limit, pageSize       int
	)
	fs := newFlagSet("audit list")
	fs.StringVar(&req.Subject, "subject", "", "")
	fs.StringVar(&req.Caller, "caller", "", "")
	fs.StringVar(&req.SourceDomain, "source", "", "")
	fs.StringVar(&req.TargetDomain, "target", "", "")
	fs.StringVar(&outcome, "outcome", "", "")
	fs.StringVar(&since, "since", "", "")
	fs.StringVar(&until, "until", "", "")
	fs.IntVar(&limit, "limit", defaultAuditLimit, "")
	fs.IntVar(&pageSize, "page-size", 0, "")
	fs.StringVar(&req.PageToken, "page-token", "", "")
	rest, err := c.parseCommand(fs, "audit list", args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageErrorf("audit list: unexpected argument %q", rest[0])
	}
	if req.Outcome, err = parseOutcome(outcome); err != nil {
		return err
	}
	now := time.Now()
	if req.StartTime, err = parseTime("--since", since, now); err != nil {
		return err
	}
	if req.EndTime, err = parseTime("--until", until, now); err != nil {
		return err
	}
	switch {
	case limit < 0:
		return usageErrorf("--limit: must not be negative")
	case pageSize < 0 || pageSize > maxPageSize:
		return usageErrorf("--page-size: must be between 1 and %d (0: automatic)", maxPageSize)
	case pageSize == 0:
		pageSize = maxPageSize
		if limit > 0 {
			pageSize = min(limit, maxPageSize)
		}
	}

	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.withTimeout()
	defer cancel()
	client := pb.NewAuditServiceClient(conn)
	out := &pb.ListAuditEventsResponse{}
	for {
		req.PageSize = int32(pageSize)
		if limit > 0 {
			// Never ask for more than is left, so that no page is cut and
			// next_page_token stays exact.
			req.PageSize = int32(min(pageSize, limit-len(out.Events)))
		}
		resp, err := client.ListAuditEvents(ctx, &req)
		if err != nil {
			return err
		}
		out.Events = append(out.Events, resp.GetEvents()...)
		out.NextPageToken = resp.GetNextPageToken()
		if out.NextPageToken == "" || (limit > 0 && len(out.Events) >= limit) {
			break
		}
		if out.NextPageToken == req.PageToken || len(resp.GetEvents()) == 0 {
			return fmt.Errorf("audit list: the broker returned page token %q again without progress", out.NextPageToken)
		}
		req.PageToken = out.NextPageToken
	}
	if c.json() {
		return printJSON(c.stdout, out)
	}
	if len(out.Events) == 0 {
		fmt.Fprintln(c.stderr, "chainctl: no audit event matches")
		return nil
	}
	if err := printEvents(c.stdout, out.Events); err != nil {
		return err
	}
	if out.NextPageToken != "" {
		fmt.Fprintf(c.stderr, "chainctl: more events match: continue with --page-token %s\n", out.NextPageToken)
	}
	return nil
}

func (c *cli) auditGet(args []string) error {
	fs := newFlagSet("audit get")
	rest, err := c.parseCommand(fs, "audit get", args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 0:
		return usageErrorf("audit get: want an event id")
	case len(rest) > 1:
		return usageErrorf("audit get: want one event id, got %d arguments", len(rest))
	case rest[0] == "":
		return usageErrorf("audit get: the event id is empty")
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.withTimeout()
	defer cancel()
	resp, err := pb.NewAuditServiceClient(conn).GetAuditEvent(ctx, &pb.GetAuditEventRequest{Id: rest[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return printJSON(c.stdout, resp)
	}
	return printEvent(c.stdout, resp.GetEvent())
}

// parseOutcome accepts success, failure, cache_hit (or cache-hit), their enum
// names (OUTCOME_SUCCESS), any case; "" or "any" means every outcome.
func parseOutcome(s string) (pb.Outcome, error) {
	n := strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	if n == "" || n == "ANY" {
		return pb.Outcome_OUTCOME_UNSPECIFIED, nil
	}
	if !strings.HasPrefix(n, "OUTCOME_") {
		n = "OUTCOME_" + n
	}
	if v, ok := pb.Outcome_value[n]; ok && v != int32(pb.Outcome_OUTCOME_UNSPECIFIED) {
		return pb.Outcome(v), nil
	}
	return 0, usageErrorf("--outcome: unknown outcome %q (want success, failure or cache_hit)", s)
}

// parseTime reads a duration back from now ("1h") or an RFC 3339 time.
func parseTime(flagName, s string, now time.Time) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return nil, usageErrorf("%s: a duration back from now must not be negative, got %s", flagName, s)
		}
		return timestamppb.New(now.Add(-d)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, usageErrorf("%s: want a duration (1h, 30m) or an RFC 3339 time (2026-01-02T15:04:05Z), got %q", flagName, s)
	}
	return timestamppb.New(t), nil
}

func printEvents(w io.Writer, events []*pb.AuditEvent) error {
	t := newTable(w)
	t.row("TIME", "ID", "OUTCOME", "REASON", "CALLER", "SOURCE", "TARGET", "SUBJECT")
	for _, e := range events {
		t.row(formatTime(e.GetTime()), e.GetId(), outcomeName(e.GetOutcome()), e.GetReason(), e.GetCaller(),
			e.GetSourceDomain(), e.GetTargetDomain(), e.GetSubject())
	}
	return t.flush()
}

func printEvent(w io.Writer, e *pb.AuditEvent) error {
	t := newTable(w)
	t.row("ID", e.GetId())
	t.row("TIME", formatTime(e.GetTime()))
	t.row("OUTCOME", outcomeName(e.GetOutcome()))
	t.row("REASON", e.GetReason())
	t.row("MESSAGE", e.GetMessage())
	t.row("UPSTREAM ERROR", e.GetUpstreamError())
	t.row("UPSTREAM ERROR DESCRIPTION", e.GetUpstreamErrorDescription())
	t.row("CALLER", e.GetCaller())
	t.row("SUBJECT", e.GetSubject())
	t.row("SOURCE", e.GetSourceDomain())
	t.row("TARGET", e.GetTargetDomain())
	t.row("SCOPES", strings.Join(e.GetScopes(), " "))
	t.row("ASSERTION ISSUER", e.GetAssertionIssuer())
	t.row("ASSERTION AUDIENCE", strings.Join(e.GetAssertionAudience(), " "))
	t.row("ASSERTION JTI HASH", e.GetAssertionJtiHash())
	t.row("SUBJECT TOKEN HASH", e.GetSubjectTokenHash())
	if err := t.flush(); err != nil {
		return err
	}
	if len(e.GetHops()) > 0 {
		fmt.Fprintln(w)
		return printHops(w, e.GetHops())
	}
	return nil
}
