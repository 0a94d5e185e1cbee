package brokertest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/chainbroker/chainbroker/oauth"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
)

// PoolAccessToken is what PoolEndpoint answers hop 2 with.
const PoolAccessToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJiIn0.c2ln"

// PoolEndpoint answers hop 1 with grants from a pool signed beforehand
// (signing one costs about 1 ms, more than the broker's whole work; their
// jtis must differ) and hop 2 with PoolAccessToken: for benchmarks of the
// broker's own cost.
type PoolEndpoint struct {
	Grants []string
	// Wrapped, when set, is called when the pool starts over, before a
	// grant is reused: the replay guard must forget the pool's jtis
	// (SwappableReplay.Reset).
	Wrapped func()
	next    atomic.Uint64
}

// Token answers req.
func (e *PoolEndpoint) Token(_ context.Context, req oauth.Request) (*oauth.TokenResponse, error) {
	if req.Form.Get("grant_type") == oauth.GrantTypeTokenExchange {
		n := e.next.Add(1) - 1
		if n > 0 && n%uint64(len(e.Grants)) == 0 && e.Wrapped != nil {
			e.Wrapped()
		}
		return &oauth.TokenResponse{AccessToken: e.Grants[n%uint64(len(e.Grants))], TokenType: "Bearer",
			IssuedTokenType: oauth.TokenTypeAccessToken, ExpiresIn: 300}, nil
	}
	return &oauth.TokenResponse{AccessToken: PoolAccessToken, TokenType: "Bearer", ExpiresIn: 300, Scope: "profile email"}, nil
}

// SwappableReplay is a memory replay guard that can be emptied (when a
// PoolEndpoint starts over).
type SwappableReplay struct{ cur atomic.Pointer[memory.Store] }

// NewSwappableReplay is an empty SwappableReplay.
func NewSwappableReplay() *SwappableReplay {
	s := &SwappableReplay{}
	s.Reset()
	return s
}

// Mark marks k in the current memory store.
func (s *SwappableReplay) Mark(ctx context.Context, k store.ReplayKey, until time.Time) error {
	return s.cur.Load().Mark(ctx, k, until)
}

// Reset forgets every mark.
func (s *SwappableReplay) Reset() { s.cur.Store(memory.New(memory.Options{})) }
