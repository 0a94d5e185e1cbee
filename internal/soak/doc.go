// Package soak is chainbroker's soak test: a steady load of chains over gRPC
// against an in-process broker (the production wiring of internal/app) with
// a real redis-server, while domain A is made slow, then down, then brought
// back, and Redis is restarted once. It reports errors by gRPC code and
// reason, p50/p99 latency per phase, heap in use and goroutines at the start
// and the end, and fails if the normal and recovered phases fall under 99 %
// success, if a successful chain's audit event cannot be found, or if
// goroutines or heap grew.
//
// TestSoakShort runs in the default test suite (about 20 s, concurrency 16).
// TestSoakLong is built only with -tags soak (make soak):
//
//	SOAK_DURATION=2m SOAK_CONCURRENCY=64 go test -tags soak -run TestSoakLong -v -timeout 30m ./internal/soak/
//
// Other knobs of TestSoakLong: SOAK_DOMAIN_TIMEOUT (domain A's timeout,
// default 500ms; its slow phase delays 30 % of answers by 1.6 times that),
// SOAK_BREAKER_FAILURES (domain A's circuit_breaker.failures, default 5,
// negative: off), SOAK_REPORT=FILE (the figures as JSON) and
// SOAK_HEAPPROFILE=FILE (a heap profile at the end). docs/reliability.md
// records a run. Everything listens on loopback and stops with the test.
package soak
