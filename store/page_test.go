package store

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

// fakeWalk walks candidates newest first (ids "100-<n-i>"), matching those
// whose index is in match, like a backend's PageStep.
type fakeWalk struct {
	n     int
	match func(i int) bool
	pos   int
	steps int
	limit []int // the limits the steps were given
}

func (w *fakeWalk) id(i int) string { return "100-" + strconv.Itoa(w.n-i) }

func (w *fakeWalk) step(_ context.Context, need, limit int) ([]Event, int, bool, error) {
	w.steps++
	w.limit = append(w.limit, limit)
	var found []Event
	examined := 0
	for w.pos < w.n && examined < limit {
		i := w.pos
		w.pos++
		examined++
		if w.match(i) {
			found = append(found, Event{ID: w.id(i)})
			if len(found) == need {
				return found, examined, false, nil
			}
		}
	}
	return found, examined, w.pos == w.n, nil
}

func TestCollectPage(t *testing.T) {
	every := func(k int) func(int) bool { return func(i int) bool { return i%k == 0 } }
	for _, tc := range []struct {
		name            string
		n               int
		match           func(int) bool
		pageSize        int
		budget, slice   int
		wantPage        []int // candidate indexes
		wantNext        int   // candidate index of the lookahead, -1: no token
		wantMaxExamined int   // the walk's position at the end
	}{
		{"full page, lookahead", 100, every(3), 4, 1000, 10, []int{0, 3, 6, 9}, 12, 13},
		{"exhausted", 10, every(3), 4, 1000, 10, []int{0, 3, 6, 9}, -1, 10},
		{"exhausted exactly", 12, every(3), 4, 1000, 10, []int{0, 3, 6, 9}, -1, 12},
		{"nothing", 50, func(int) bool { return false }, 4, 1000, 10, nil, -1, 50},
		{"budget: short page", 1000, every(20), 10, 50, 10, []int{0, 20}, 40, 50},
		{"budget: one match, walk on to a second", 1000, every(200), 10, 50, 10, []int{0}, 200, 201},
		{"budget: none, walk on", 1000, func(i int) bool { return i == 300 || i == 900 }, 10, 50, 10, []int{300}, 900, 901},
		{"budget: none, then one, then the end", 1000, func(i int) bool { return i == 300 }, 10, 50, 10, []int{300}, -1, 1000},
		{"budget: full page before it", 1000, every(2), 5, 50, 10, []int{0, 2, 4, 6, 8}, 10, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWalk{n: tc.n, match: tc.match}
			page, next, err := CollectPage(t.Context(), tc.pageSize, tc.budget, tc.slice, w.step)
			if err != nil {
				t.Fatalf("CollectPage: %v", err)
			}
			var want []string
			for _, i := range tc.wantPage {
				want = append(want, w.id(i))
			}
			if got := ids(page); !slices.Equal(got, want) {
				t.Errorf("page = %v, want %v", got, want)
			}
			wantNext := ""
			if tc.wantNext >= 0 {
				wantNext = "100-" + strconv.Itoa(tc.n-tc.wantNext+1) // the lookahead's id, plus one
			}
			if next != wantNext {
				t.Errorf("next = %q, want %q", next, wantNext)
			}
			if w.pos != tc.wantMaxExamined {
				t.Errorf("walk stopped at %d, want %d", w.pos, tc.wantMaxExamined)
			}
			for i, l := range w.limit {
				if l > tc.slice || l < 1 {
					t.Errorf("step %d had limit %d, want 1..%d", i, l, tc.slice)
				}
			}
		})
	}
}

func ids(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

// TestCollectPageDeadline: a walk whose steps would outlast ctx's deadline
// returns a short page once it holds two matches, instead of failing.
func TestCollectPageDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	w := &fakeWalk{n: 1000, match: func(i int) bool { return i%5 == 0 }}
	slow := func(ctx context.Context, need, limit int) ([]Event, int, bool, error) {
		time.Sleep(30 * time.Millisecond) // two of these outlast the deadline
		return w.step(ctx, need, limit)
	}
	page, next, err := CollectPage(ctx, 50, 1000, 10, slow)
	if err != nil {
		t.Fatalf("CollectPage: %v", err)
	}
	// The first step (10 candidates) found 0 and 5; the deadline is then
	// closer than two steps: the page is 0, the lookahead 5.
	if got := ids(page); !slices.Equal(got, []string{w.id(0)}) || next != "100-"+strconv.Itoa(1000-5+1) {
		t.Fatalf("page = %v, next %q; want [%s] and the token at 5", got, next, w.id(0))
	}
}

// TestCollectPageOverrun: a step that fails because it overran the
// deadline gives the short page when the call holds two matches, and the
// step's error otherwise.
func TestCollectPageOverrun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		match    func(int) bool
		wantPage int // events; -1: the error
	}{
		{"two matches", func(i int) bool { return i%5 == 0 }, 1},
		{"one match", func(i int) bool { return i == 3 }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w := &fakeWalk{n: 1000, match: tc.match}
			overrun := func(ctx context.Context, need, limit int) ([]Event, int, bool, error) {
				if w.steps == 1 {
					cancel() // the second step overruns
					return nil, 0, false, ctx.Err()
				}
				return w.step(ctx, need, limit)
			}
			page, next, err := CollectPage(ctx, 50, 1000, 10, overrun)
			switch {
			case tc.wantPage < 0 && !errors.Is(err, context.Canceled):
				t.Fatalf("CollectPage = %d events, %v; want the step's error", len(page), err)
			case tc.wantPage >= 0 && (err != nil || len(page) != tc.wantPage || next == ""):
				t.Fatalf("CollectPage = %d events, next %q, %v; want %d and a token", len(page), next, err, tc.wantPage)
			}
		})
	}
}

func TestCollectPageErrors(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := CollectPage(t.Context(), 10, 100, 10, func(context.Context, int, int) ([]Event, int, bool, error) {
		return nil, 0, false, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("step error: %v, want boom", err)
	}
	_, _, err = CollectPage(t.Context(), 10, 100, 10, func(context.Context, int, int) ([]Event, int, bool, error) {
		return nil, 0, false, nil
	})
	if !errors.Is(err, errNoProgress) {
		t.Errorf("step without progress: %v, want errNoProgress", err)
	}
}

func TestTokenBefore(t *testing.T) {
	const max = "18446744073709551615"
	for _, tc := range []struct{ last, lookahead, want string }{
		{"5-0", "4-7", "4-8"},
		{"7-0", "4-" + max, "5-0"},
		{"9-0", max + "-" + max, "9-0"},
		{"5-0", "4-" + max[:len(max)-1] + "4", "4-" + max},
		{"5-0", "not an id", "5-0"},
		{"5-0", "4-x", "5-0"},
	} {
		if got := tokenBefore(tc.last, tc.lookahead); got != tc.want {
			t.Errorf("tokenBefore(%q, %q) = %q, want %q", tc.last, tc.lookahead, got, tc.want)
		}
	}
}
