package server

import (
	"context"
	"errors"
	"slices"

	"github.com/chainbroker/chainbroker/auth"
	"github.com/chainbroker/chainbroker/broker"
)

// Runtime is the part of a Server that a configuration reload replaces:
// domains, chains and policy (in the broker), callers, the rate limit and
// the readiness checks of the domains. Listeners, TLS, the audit log and
// the metrics stay.
type Runtime struct {
	Broker    *broker.Broker
	Auth      *auth.Authenticator
	RateLimit RateLimit
	Readiness []Check
}

// runState is a Runtime as the server uses it. Each call reads the current
// one once (authInterceptor) and keeps it in its context, so that a call
// finishes under the configuration it started with.
type runState struct {
	broker    *broker.Broker
	auth      *auth.Authenticator
	rateLimit RateLimit
	limiter   *limiter // nil: no rate limit
	readiness []Check
}

// SetRuntime swaps the runtime atomically: calls already authenticated
// finish with the one they started with, the next call uses rt. The
// per-caller rate limit buckets are kept when RateLimit did not change.
func (s *Server) SetRuntime(rt Runtime) error {
	if rt.Broker == nil || rt.Auth == nil {
		return errors.New("server: Runtime needs Broker and Auth")
	}
	old := s.rt.Load()
	lim := old.limiter
	if rt.RateLimit != old.rateLimit {
		lim = newLimiter(rt.RateLimit)
	}
	s.rt.Store(&runState{broker: rt.Broker, auth: rt.Auth, rateLimit: rt.RateLimit, limiter: lim,
		readiness: slices.Clone(rt.Readiness)})
	return nil
}

// runtimeFor is the runtime of a call: the one its authentication read, or
// the current one.
func (s *Server) runtimeFor(ctx context.Context) *runState {
	if a := authedFrom(ctx); a != nil {
		return a.rt
	}
	return s.rt.Load()
}

// brokerFor is the broker of a call (chainService, auditService).
func (s *Server) brokerFor(ctx context.Context) *broker.Broker { return s.runtimeFor(ctx).broker }
