package load

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.9: 90 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := Quantile(ds, q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if Quantile(nil, 0.5) != 0 || Quantile(ds[:1], 0.99) != time.Millisecond {
		t.Error("edge cases")
	}
}

// sleepTarget answers after a fixed delay; subject "bad" fails.
type sleepTarget struct{ d time.Duration }

func (s sleepTarget) Do(ctx context.Context, subject string) error {
	time.Sleep(s.d)
	if subject == "bad" {
		return errors.New("bad subject")
	}
	return ctx.Err()
}

func (sleepTarget) Close() {}

// The load loops against an in-process target. The bounds are loose: the
// machine may be busy.
func TestLoadLoops(t *testing.T) {
	probe := func() Sample { return Sample{at: time.Now()} }
	const serve = 200 * time.Microsecond
	t.Run("paced", func(t *testing.T) {
		const rate = 2000.0
		d := RunPaced(context.Background(), sleepTarget{serve}, 4, rate,
			100*time.Millisecond, 300*time.Millisecond, []string{"a", "b"}, probe)
		want := rate * d.after.at.Sub(d.before.at).Seconds()
		// Pacing never sends above the schedule; how close it gets from below
		// depends on the CPU the machine spares (a loaded CI host falls
		// behind), which is not this test's to assert.
		if n := float64(len(d.lats)); n == 0 || n > 1.15*want {
			t.Errorf("%d chains in %v, want at most %.0f + 15%%", len(d.lats), d.after.at.Sub(d.before.at), want)
		}
		if d.errs != 0 || d.firstErr != "" {
			t.Errorf("errors %d (%s)", d.errs, d.firstErr)
		}
		if p50 := Quantile(d.lats, 0.5); p50 < serve {
			t.Errorf("p50 %v < the target's %v", p50, serve)
		}
		// Four callers each sending every 2 ms, served in 0.2 ms: chains that
		// were early waited for their time, and those waits are measured
		// (at most one per chain; how many were early depends on the load).
		if len(d.timerLate) == 0 || len(d.timerLate) > len(d.lats) || !slices.IsSorted(d.timerLate) || d.timerLate[0] < 0 {
			t.Errorf("%d timer wake-ups measured for %d chains", len(d.timerLate), len(d.lats))
		}
	})
	t.Run("paced, errors", func(t *testing.T) {
		d := RunPaced(context.Background(), sleepTarget{serve}, 4, 2000,
			50*time.Millisecond, 200*time.Millisecond, []string{"a", "bad"}, probe)
		if d.errs == 0 || len(d.lats) == 0 || !strings.Contains(d.firstErr, "bad subject") {
			t.Errorf("%d chains, %d errors (%q), want both", len(d.lats), d.errs, d.firstErr)
		}
	})
	t.Run("paced, falling behind", func(t *testing.T) {
		// One caller offering twice what it can do: latency counts from the
		// scheduled send, so it grows with the backlog (no coordinated omission).
		const slow = time.Millisecond
		d := RunPaced(context.Background(), sleepTarget{slow}, 1, 2000,
			50*time.Millisecond, 200*time.Millisecond, []string{"a"}, probe)
		offered := 2000 * d.after.at.Sub(d.before.at).Seconds()
		if n := float64(len(d.lats)); n == 0 || n > 0.75*offered {
			t.Errorf("%d chains, %.0f offered: kept up with twice its capacity?", len(d.lats), offered)
		}
		if p50 := Quantile(d.lats, 0.5); p50 < 10*slow {
			t.Errorf("p50 %v: the time spent late is not counted", p50)
		}
		// Always behind: the caller never waits for a timer.
		if len(d.timerLate) != 0 {
			t.Errorf("%d timer wake-ups measured for a caller that was never early", len(d.timerLate))
		}
	})
	t.Run("closed", func(t *testing.T) {
		const window = 200 * time.Millisecond
		d := RunClosed(context.Background(), sleepTarget{serve}, 2, 50*time.Millisecond, window, []string{"a"}, probe)
		if len(d.lats) == 0 || d.errs != 0 || len(d.lats) > int(2*window/serve)+2 {
			t.Errorf("%d chains, %d errors", len(d.lats), d.errs)
		}
		if Quantile(d.lats, 0.5) < serve {
			t.Errorf("p50 %v < %v", Quantile(d.lats, 0.5), serve)
		}
		if len(d.timerLate) != 0 {
			t.Errorf("closed loop: %d timer wake-ups", len(d.timerLate))
		}
	})
}
