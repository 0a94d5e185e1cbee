package report

import "github.com/chainbroker/chainbroker/internal/bench/load"

// Profile is the profiled run: the broker in a child process running
// app.Build + Server.Serve (as `serve` does) under runtime/pprof.
type Profile struct {
	Label      string // "no cache" or "cache hits"
	Cache      bool
	Load       load.Result
	Header     string // pprof's "Duration: ..., Total samples = ..." line
	Top        []PprofRow
	TopCum     []PprofRow
	Categories []Category
	AllocTop   []PprofRow
	AllocTotal string
}

// PprofRow is one row of `go tool pprof -top`.
type PprofRow struct {
	Flat, FlatPct, SumPct, Cum, CumPct, Name string
}

// Category is a share of the profile: the samples whose stack matches Regexp.
type Category struct {
	Name, Regexp string
	Ignore       string  // samples whose stack matches this are left out
	Pct          float64 // share of the profile's samples with a matching frame
	OK           bool
}
