// Command chainbench is chainbroker's end-to-end benchmark (issue 6). It
// starts, each in its own process, the sandbox's authorization servers,
// a throwaway redis-server and the broker (`chainbroker serve`, built from
// this tree), then drives chains over gRPC and REST at several concurrency
// levels, ID-JAG chains (ID tokens, domain A -> domain C, profile id_jag)
// over gRPC beside them (--idjag), chains into the sandbox's cloud
// imitations over gRPC (--cloud: targets aws, gcp and azure, through AWS
// STS, Google STS and IAM Credentials, and Entra, served by the domains'
// process), and the same two hops directly against domains A and B (the
// baseline; the ID-JAG and cloud chains have none of their own).
// These runs are closed loops: each of N workers sends its next chain as
// soon as the previous one answers. With the token cache on and warm it
// measures cache hits the same way, then with an open loop ("paced"): N
// callers offering a fixed rate together, latency measured from each
// chain's scheduled send time, for the latency targets at a given number
// of callers. For every run it reports chains/s, latency percentiles, the
// broker's CPU time and allocations per chain and its peak RSS, compares
// them with the baseline and with the cost of one RS256 verification
// measured in the same run, profiles the broker under load, checks the
// targets of issue 6, and writes docs/performance.md and
// docs/performance/latency.svg. The targets' closed-loop ratios (broker vs
// skeleton at c=1 and c=64, cache hits at c=1, REST vs gRPC at c=1 and
// c=64) rest on the median of --pairs short pairs (default 3 of
// --pair-duration 5s each), which single runs on a shared machine are too
// noisy for: the broker and the skeleton with both sides at once
// (--pairs-together, the default), the others back to back; the
// full-length runs are reported as they are.
//
//	go run ./cmd/chainbench               full run (about 9 minutes on 2 cores, plus about 4 for the pairs; make bench)
//	go run ./cmd/chainbench --quick       smoke run (about 1 minute, plus about 1.5 for the pairs; writes nothing unless --write)
//	go run ./cmd/chainbench -h            every flag
//
// Run it from the repository root, on an otherwise idle machine: every
// process competes for the same cores. Before each run chainbench waits for
// other processes to leave the CPU idle (--idle-wait), measures a disturbed
// run again (up to three times, keeping the least disturbed), and the report
// says how much CPU something else used during each run. Linux only (/proc).
//
// The implementation is in internal/bench and its subpackages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/chainbroker/chainbroker/internal/bench"
)

func main() {
	if err := bench.Main(os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "chainbench:", err)
		}
		os.Exit(1)
	}
}
