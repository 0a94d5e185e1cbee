package broker

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every reason code has an entry in docs/troubleshooting.md (a heading
// naming it), so that a new reason cannot ship undocumented, and every
// reason-like code in those headings is a real one.
func TestEveryReasonTroubleshooting(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	code := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(line, -1) {
			documented[m[1]] = true
		}
	}
	known := map[string]bool{}
	for _, r := range Reasons() {
		known[string(r)] = true
		if !documented[string(r)] {
			t.Errorf("docs/troubleshooting.md has no section for %s: add a heading \"### `%s`\" with its cause and fix", r, r)
		}
	}
	for _, c := range slices.Sorted(func(yield func(string) bool) {
		for c := range documented {
			if !yield(c) {
				return
			}
		}
	}) {
		if !known[c] {
			t.Errorf("docs/troubleshooting.md documents %s, which is not in Reasons()", c)
		}
	}
}
