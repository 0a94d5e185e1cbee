package apireason_test

import (
	"testing"

	"github.com/chainbroker/chainbroker/apireason"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
)

func TestStringAndParse(t *testing.T) {
	for _, tc := range []struct {
		r    pb.Reason
		want string
	}{
		{pb.Reason_REASON_REQUEST_INVALID, "REQUEST_INVALID"},
		{pb.Reason_REASON_SUBJECT_TOKEN_AUDIENCE_INVALID, "SUBJECT_TOKEN_AUDIENCE_INVALID"},
		{pb.Reason_REASON_SERVER_UNAVAILABLE, "SERVER_UNAVAILABLE"},
		{pb.Reason_REASON_UNSPECIFIED, ""},
		{pb.Reason(9999), ""},
	} {
		if got := apireason.String(tc.r); got != tc.want {
			t.Errorf("String(%v) = %q, want %q", tc.r, got, tc.want)
		}
		if tc.want == "" {
			continue
		}
		if got, ok := apireason.Parse(tc.want); !ok || got != tc.r {
			t.Errorf("Parse(%q) = %v, %v", tc.want, got, ok)
		}
	}
	for _, s := range []string{"", "UNSPECIFIED", "REASON_REQUEST_INVALID", "request_invalid", "NOPE"} {
		if r, ok := apireason.Parse(s); ok || r != pb.Reason_REASON_UNSPECIFIED {
			t.Errorf("Parse(%q) = %v, %v", s, r, ok)
		}
	}
}

// Every value round-trips, and no two share a string.
func TestAll(t *testing.T) {
	all := apireason.All()
	if len(all) != len(pb.Reason_name)-1 {
		t.Fatalf("%d reasons, the enum has %d values besides UNSPECIFIED", len(all), len(pb.Reason_name)-1)
	}
	seen := map[string]bool{}
	for _, s := range all {
		r, ok := apireason.Parse(s)
		if !ok || apireason.String(r) != s || seen[s] {
			t.Errorf("%q: Parse = %v, %v (seen %v)", s, r, ok, seen[s])
		}
		seen[s] = true
	}
}
