package report

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/internal/bench/load"
)

// Names of the pair sets (PairSet.Name): what the broker's gRPC chains
// (or REST's, against gRPC) are compared with.
const (
	PairsSkeleton      = "skeleton"       // broker vs skeleton, gRPC, no cache, closed loop
	PairsSkeletonCache = "skeleton+cache" // broker vs skeleton, cache hits, gRPC, closed loop
	PairsREST          = "rest"           // REST vs gRPC, same broker, closed loop
)

// PairsDirect is the pair set name of a transport's chains (the broker,
// closed loop) against the direct client's: the latency the broker adds.
func PairsDirect(transport string) string { return "direct:" + transport }

// Pair is one short pair of runs (--pairs), back to back: the measured
// side (the broker, REST, or the skeleton) and the reference (the
// skeleton, gRPC, or the direct client), which goes first alternating
// from pair to pair.
type Pair struct {
	Measured, Reference load.Result
}

// PairSet is the short alternating pairs of one target's ratio at one
// concurrency. The target is based on the median of the per-pair ratios:
// host noise (steal, timer wake-ups) and drift between runs minutes apart
// move single runs by more than the targets' margins.
type PairSet struct {
	Name        string // PairsSkeleton, PairsSkeletonCache, PairsREST or PairsDirect(transport)
	Concurrency int
	Pairs       []Pair
	// Together: each pair's two sides ran at the same time (--pairs-together,
	// two processes under the same load in the same window) instead of back
	// to back.
	Together bool
}

// findPairs is the pair set name at concurrency c.
func (b *Run) findPairs(name string, c int) (PairSet, bool) {
	for _, p := range b.Pairs {
		if p.Name == name && p.Concurrency == c {
			return p, true
		}
	}
	return PairSet{}, false
}

// median is the median of xs (the mean of the middle two when even); 0
// for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// pairRatios are the per-pair ratios, measured ÷ reference, of CPU per
// chain and p50, of the pairs where both sides answered chains.
func pairRatios(ps PairSet) (cpu, p50 []float64) {
	for _, p := range ps.Pairs {
		m, r := p.Measured, p.Reference
		if m.Chains == 0 || r.Chains == 0 || r.BrokerCPU <= 0 || r.P50 <= 0 {
			continue
		}
		cpu = append(cpu, ratio(m.BrokerCPU, r.BrokerCPU))
		p50 = append(p50, ratio(m.P50, r.P50))
	}
	return cpu, p50
}

// spread describes per-pair figures, each written by f: the median, min
// and max, and each pair's in the order measured.
func spread(xs []float64, f func(float64) string) string {
	each := make([]string, len(xs))
	for i, x := range xs {
		each[i] = f(x)
	}
	return fmt.Sprintf("%s (min %s, max %s; pairs %s)", f(median(xs)), f(slices.Min(xs)), f(slices.Max(xs)), strings.Join(each, ", "))
}

// ratioText and addedText write a per-pair ratio and a per-pair p50
// difference (in ns) for spread.
func ratioText(x float64) string { return fmt.Sprintf("%.2f×", x) }
func addedText(x float64) string { return signedDur(time.Duration(x)) }

// pairsLabel is "median of n pairs" with the pairs' duration, and how
// their sides ran when at the same time.
func (b *Run) pairsLabel(n int, together bool) string {
	label := "median of " + plural(n, "pair")
	if d := b.Opts.PairDuration; d > 0 {
		label += " of " + d.String()
	}
	if together {
		label += ", both sides at once"
	}
	return label
}

// pairsMeasured is the medians of a pair set's ratios, CPU per chain and
// p50, and the text for the targets table with their spread; ok is false
// when no pair answered chains on both sides (the target then rests on the
// full-length runs, as with --pairs 1).
func (b *Run) pairsMeasured(name string, c int) (xc, xp float64, text string, ok bool) {
	ps, found := b.findPairs(name, c)
	if !found {
		return 0, 0, "", false
	}
	cpu, p50 := pairRatios(ps)
	if len(cpu) == 0 {
		return 0, 0, "", false
	}
	text = fmt.Sprintf("%s: CPU %s; p50 %s", b.pairsLabel(len(cpu), ps.Together), spread(cpu, ratioText), spread(p50, ratioText))
	return median(cpu), median(p50), text, true
}

// pairsAdded is the median of a pair set's p50 differences (measured minus
// reference: the latency the broker adds over the direct client), and the
// text for the targets table with their spread; ok is false when no pair
// answered chains on both sides.
func (b *Run) pairsAdded(name string, c int) (added time.Duration, text string, ok bool) {
	ps, found := b.findPairs(name, c)
	if !found {
		return 0, "", false
	}
	var diffs []float64
	for _, p := range ps.Pairs {
		if p.Measured.Chains == 0 || p.Reference.Chains == 0 {
			continue
		}
		diffs = append(diffs, float64(p.Measured.P50-p.Reference.P50))
	}
	if len(diffs) == 0 {
		return 0, "", false
	}
	return time.Duration(median(diffs)), b.pairsLabel(len(diffs), ps.Together) + ": p50 " + spread(diffs, addedText), true
}
