package bench

import (
	"strings"
	"testing"
	"time"
)

// --pairs and --pair-duration: their defaults, --quick's shorter pairs,
// the errors, the ratios measured in pairs and the time they add to the
// estimate.
func TestPairsFlags(t *testing.T) {
	for _, tt := range []struct {
		name     string
		args     []string
		pairs    int
		duration time.Duration
		ratios   int // target ratios measured in pairs
		together int // of which broker vs skeleton: both sides at once
		wantErr  string
	}{
		{"defaults", nil, 3, 5 * time.Second, 8, 3, ""},
		{"quick: 1s pairs", []string{"--quick"}, 3, time.Second, 8, 3, ""},
		{"quick keeps a given duration", []string{"--quick", "--pair-duration=3s"}, 3, 3 * time.Second, 8, 3, ""},
		{"one: no pairs", []string{"--pairs=1"}, 1, 5 * time.Second, 0, 0, ""},
		{"one ignores the duration", []string{"--pairs", "1", "--pair-duration=0s"}, 1, 0, 0, 0, ""},
		{"five", []string{"--pairs=5", "--pair-duration=2s"}, 5, 2 * time.Second, 8, 3, ""},
		{"c=1 only", []string{"--levels=1,16"}, 3, 5 * time.Second, 6, 2, ""},
		{"c=64 only", []string{"--levels=64,256"}, 3, 5 * time.Second, 2, 1, ""},
		{"gRPC only", []string{"--transports=grpc"}, 3, 5 * time.Second, 5, 3, ""},
		{"REST only", []string{"--transports=rest"}, 3, 5 * time.Second, 3, 1, ""},
		{"no baseline", []string{"--baseline=false"}, 3, 5 * time.Second, 5, 3, ""},
		{"no skeleton", []string{"--skeleton=false"}, 3, 5 * time.Second, 4, 0, ""},
		{"memory store: no skeleton", []string{"--store=memory"}, 3, 5 * time.Second, 4, 0, ""},
		{"no cache", []string{"--cache=false"}, 3, 5 * time.Second, 7, 2, ""},
		{"zero", []string{"--pairs=0"}, 0, 0, 0, 0, "--pairs"},
		{"negative", []string{"--pairs=-2"}, 0, 0, 0, 0, "--pairs"},
		{"not a number", []string{"--pairs=many"}, 0, 0, 0, 0, "pairs"},
		{"zero duration", []string{"--pair-duration=0s"}, 0, 0, 0, 0, "--pair-duration"},
		{"negative duration", []string{"--pairs=2", "--pair-duration=-1s"}, 0, 0, 0, 0, "--pair-duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args) // flag errors print the usage: seen with -v only
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.pairs != tt.pairs || o.pairDuration != tt.duration || o.pairRatios() != tt.ratios {
				t.Errorf("pairs %d of %v for %d ratios, want %d of %v for %d", o.pairs, o.pairDuration, o.pairRatios(),
					tt.pairs, tt.duration, tt.ratios)
			}
			// Each pair is two short runs after a warm-up of at most 0.5s,
			// and an idle check before it.
			one, err := parseFlags(append(tt.args[:len(tt.args):len(tt.args)], "--pairs=1"))
			if err != nil {
				t.Fatal(err)
			}
			// The broker-vs-skeleton pairs (--pairs-together, the default)
			// run both sides at once.
			side := o.pairDuration + min(o.warmup, 500*time.Millisecond) + 300*time.Millisecond
			want := time.Duration((tt.ratios-tt.together)*o.pairs)*(2*side+time.Second) + time.Duration(tt.together*o.pairs)*(side+time.Second)
			if d := o.estimate() - one.estimate(); d != want {
				t.Errorf("estimate difference %v, want %v", d, want)
			}
		})
	}
	// With the defaults the pairs add about the 4 minutes the flag's help
	// states.
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := o.pairsEstimate(); d < 3*time.Minute+30*time.Second || d > 4*time.Minute+30*time.Second {
		t.Errorf("the pairs add %v with the defaults; the help says about 4 minutes", d)
	}
}

// Pairs alternate which side runs first: AB, BA, AB, BA.
// --pairs-together: on by default, off when =false.
func TestPairsTogetherFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{{nil, true}, {[]string{"--pairs-together"}, true}, {[]string{"--pairs-together=false"}, false}} {
		o, err := parseFlags(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		if o.pairsTogether != tt.want {
			t.Errorf("%v: pairsTogether %v, want %v", tt.args, o.pairsTogether, tt.want)
		}
	}
}

func TestMeasuredFirstAlternates(t *testing.T) {
	for i, want := range []bool{true, false, true, false, true} {
		if got := measuredFirst(i); got != want {
			t.Errorf("pair %d: measured first %v, want %v", i, got, want)
		}
	}
}
