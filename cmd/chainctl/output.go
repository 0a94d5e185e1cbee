package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

// jsonOptions match the broker's REST JSON: proto field names, every field
// present.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Multiline: true, Indent: "  "}

// printJSON writes m as one JSON document.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// table is a tab-separated, aligned block of text.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
}

// row writes one line; empty cells print as "-".
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// printHops writes the hops as a table.
func printHops(w io.Writer, hops []*pb.Hop) error {
	if len(hops) == 0 {
		return nil
	}
	t := newTable(w)
	t.row("HOP", "DOMAIN", "GRANT", "DURATION", "ENDPOINT", "ASSERTION JTI HASH")
	for i, h := range hops {
		t.row(fmt.Sprint(i+1), h.GetDomain(), shortGrant(h.GetGrantType()), formatDuration(h.GetDuration()),
			h.GetEndpoint(), shortHash(h.GetAssertionJtiHash()))
	}
	return t.flush()
}

// shortGrant turns a grant type URI into its last segment (token-exchange,
// jwt-bearer).
func shortGrant(g string) string {
	if i := strings.LastIndexByte(g, ':'); i >= 0 {
		return g[i+1:]
	}
	return g
}

// shortHash keeps the first 12 hex digits of a hash for tables (json has it
// whole).
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

func formatDuration(d *durationpb.Duration) string {
	if d == nil {
		return ""
	}
	v := d.AsDuration()
	switch {
	case v >= time.Second:
		return v.Round(time.Millisecond).String()
	case v >= time.Millisecond:
		return v.Round(10 * time.Microsecond).String()
	}
	return v.Round(time.Microsecond).String()
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// outcomeName is the short name of an outcome: success, failure, cache_hit.
func outcomeName(o pb.Outcome) string {
	if o == pb.Outcome_OUTCOME_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
}
