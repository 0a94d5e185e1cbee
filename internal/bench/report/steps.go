package report

import (
	"fmt"
	"time"
)

// Keys of the steps that the direct baseline also has.
const (
	StepHop1 = "hop1"
	StepHop2 = "hop2"
)

// Step is one step of a chain, between two timestamps of its trace.
type Step struct {
	Key   string
	Label string
}

// Steps are a chain's steps in order; together they make the time from the
// client's send to its answer.
var Steps = []Step{
	{"send", "client → broker: the client's send, loopback, the server's read"},
	{"decode", "transport: the request read and decoded (REST: routing, body checks, JSON)"},
	{"auth", "interceptors: request id, metrics, caller authentication, rate limit"},
	{"policy", "request checks, domains, policy"},
	{StepHop1, "hop 1: token exchange at domain A"},
	{"validate", "grant validation: parse, RS256 verify, claims"},
	{"mark", "replay mark (Redis `SET NX`, group commit)"},
	{StepHop2, "hop 2: jwt-bearer at domain B"},
	{"audit", "audit event: built and appended (Redis, group commit)"},
	{"finish", "finish: log line, metrics, the answer built"},
	{"encode", "transport: the answer encoded and written (REST: JSON)"},
	{"receive", "broker → client: loopback, the client's read"},
}

// StepTime is one step's time in a column.
type StepTime struct {
	Median   time.Duration // over the traced chains
	OneAt    time.Duration // when the step ended in the median chain, from its send
	Measured bool
}

// StepColumn is one transport's traced chains (or the direct baseline's
// hops).
type StepColumn struct {
	Name               string // grpc, rest, direct
	Traced, Incomplete int
	Total              time.Duration // median, send to answer
	OneTotal           time.Duration // the median chain's
	Steps              []StepTime    // as Steps
	// Upstream are the medians of the hops' HTTP round trips (their client
	// spans): the domains' share of hop 1 and hop 2.
	Upstream [2]time.Duration
}

// StepTrace is the per-step trace of chains at c=1.
type StepTrace struct {
	Chains  int // traced per transport
	Columns []StepColumn
}

// stepsSection renders the per-step trace: for each transport, the
// timestamps of the chain whose total is the median, and each step's median.
func (r *Report) stepsSection(w func(string, ...any)) {
	st := r.run.Steps
	if st == nil {
		return
	}
	w("### One chain, step by step (c=1)")
	w("")
	w("%d chains one at a time over each transport, against a broker that exports its spans (OTLP/HTTP, batched) to the load "+
		"generator, each chain with a trace context of its own; the direct baseline's two hops are timed the same way. The steps "+
		"are the intervals between the client's send, the server spans' start, their events (`chainbroker.request_decoded`, "+
		"`chainbroker.caller_authenticated`, `chainbroker.service_answered`), the hops' and store operations' spans, the server "+
		"span's end and the client's answer, so they add up to the chain. \"at\" is when the step ended in the chain whose total "+
		"was the median, from its send; the medians of the steps need not add up to the median total. Tracing costs a little "+
		"itself: compare the totals with the untraced p50 at c=1 above.", st.Chains)
	w("")
	var head, rule string
	for _, c := range st.Columns {
		if c.Name == "direct" {
			head += " | direct: median"
			rule += "|---:"
			continue
		}
		head += fmt.Sprintf(" | %s: at | %s: median", pathLabel(c.Name), pathLabel(c.Name))
		rule += "|---:|---:"
	}
	w("| step%s |", head)
	w("|---%s|", rule)
	cell := func(d time.Duration, ok bool) string {
		if !ok {
			return ""
		}
		return FmtDur(d)
	}
	for i, s := range Steps {
		row := "| " + s.Label
		for _, c := range st.Columns {
			var t StepTime
			if c.Traced > 0 {
				t = c.Steps[i]
			}
			if c.Name == "direct" {
				row += " | " + cell(t.Median, t.Measured)
				continue
			}
			row += " | " + cell(t.OneAt, t.Measured) + " | " + cell(t.Median, t.Measured)
		}
		w("%s |", row)
		if s.Key == StepHop1 || s.Key == StepHop2 {
			k, dom := 0, "A"
			if s.Key == StepHop2 {
				k, dom = 1, "B"
			}
			row := fmt.Sprintf("| of which domain %s's HTTP round trip (the hop's client span)", dom)
			for _, c := range st.Columns {
				switch {
				case c.Name == "direct":
					row += " | "
				case c.Traced == 0 || c.Upstream[k] == 0:
					row += " | | "
				default:
					row += " | | " + FmtDur(c.Upstream[k])
				}
			}
			w("%s |", row)
		}
	}
	row := "| **total, send to answer**"
	for _, c := range st.Columns {
		if c.Name == "direct" {
			row += " | " + FmtDur(c.Total)
			continue
		}
		row += fmt.Sprintf(" | %s | %s", FmtDur(c.OneTotal), FmtDur(c.Total))
	}
	w("%s |", row)
	var direct *StepColumn
	for i := range st.Columns {
		if st.Columns[i].Name == "direct" {
			direct = &st.Columns[i]
		}
	}
	if direct != nil && direct.Traced > 0 {
		row := "| added over the direct chain (medians)"
		for _, c := range st.Columns {
			if c.Name == "direct" {
				row += " | "
				continue
			}
			row += " | | " + signedDur(c.Total-direct.Total)
		}
		w("%s |", row)
	}
	w("")
	for _, c := range st.Columns {
		if c.Incomplete > 0 {
			w("%s: %d of %d traces were incomplete and left out.", pathLabel(c.Name), c.Incomplete, c.Traced+c.Incomplete)
			w("")
		}
	}
}

func pathLabel(name string) string {
	switch name {
	case "grpc":
		return "gRPC"
	case "rest":
		return "REST"
	}
	return name
}
