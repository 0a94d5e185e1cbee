//go:build soak

package soak

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// TestSoakLong runs the soak for SOAK_DURATION (default 2m) at
// SOAK_CONCURRENCY (default 64). It is built only with -tags soak (make
// soak), so that the default test run stays short; TestSoakShort covers the
// same ground there.
func TestSoakLong(t *testing.T) {
	d := os.Getenv("SOAK_DURATION")
	if d == "" {
		d = "2m"
	}
	dur, err := time.ParseDuration(d)
	if err != nil || dur < 10*time.Second {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least 10s", d)
	}
	c := 64
	if v := os.Getenv("SOAK_CONCURRENCY"); v != "" {
		if c, err = strconv.Atoi(v); err != nil || c < 1 || c > 4096 {
			t.Fatalf("SOAK_CONCURRENCY=%q: want 1..4096", v)
		}
	}
	timeout := 500 * time.Millisecond
	if v := os.Getenv("SOAK_DOMAIN_TIMEOUT"); v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 {
			t.Fatalf("SOAK_DOMAIN_TIMEOUT=%q: want a positive duration", v)
		}
	}
	breaker := 5
	if v := os.Getenv("SOAK_BREAKER_FAILURES"); v != "" {
		if breaker, err = strconv.Atoi(v); err != nil || breaker == 0 {
			t.Fatalf("SOAK_BREAKER_FAILURES=%q: want a non-zero integer (negative disables the breaker)", v)
		}
	}
	run(t, settings{duration: dur, concurrency: c, domainTimeout: timeout, breakerFailures: breaker,
		report: os.Getenv("SOAK_REPORT"), heapProfile: os.Getenv("SOAK_HEAPPROFILE")})
}
