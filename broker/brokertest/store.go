package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/memory"
)

// Op names a store operation that FaultyStore can fail.
type Op string

// Operations.
const (
	OpMark       Op = "Mark"
	OpAppend     Op = "Append"
	OpCacheGet   Op = "CacheGet"
	OpCachePut   Op = "CachePut"
	OpCacheLease Op = "CacheLease"
)

// FaultyStore is the memory store with error injection: an operation set to
// fail returns its error (wrapping store.ErrUnavailable unless given
// another) instead of reaching the store. It counts the calls of each
// operation, failed ones included.
type FaultyStore struct {
	*memory.Store

	mu    sync.Mutex
	fail  map[Op]error
	calls map[Op]int
}

// NewFaultyStore is an empty memory store that fails nothing yet; it is
// closed when the test ends.
func NewFaultyStore(tb testing.TB) *FaultyStore {
	s := &FaultyStore{Store: memory.New(memory.Options{}), fail: map[Op]error{}, calls: map[Op]int{}}
	tb.Cleanup(func() { s.Store.Close() })
	return s
}

// Fail makes op fail with err from now on; nil err: an error wrapping
// store.ErrUnavailable.
func (s *FaultyStore) Fail(op Op, err error) {
	if err == nil {
		err = fmt.Errorf("brokertest: %s failed: %w", op, store.ErrUnavailable)
	}
	s.mu.Lock()
	s.fail[op] = err
	s.mu.Unlock()
}

// Heal makes op succeed again.
func (s *FaultyStore) Heal(op Op) {
	s.mu.Lock()
	delete(s.fail, op)
	s.mu.Unlock()
}

// Calls is how many times op was called.
func (s *FaultyStore) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *FaultyStore) enter(op Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	return s.fail[op]
}

// Mark marks k unless Mark fails.
func (s *FaultyStore) Mark(ctx context.Context, k store.ReplayKey, until time.Time) error {
	if err := s.enter(OpMark); err != nil {
		return err
	}
	return s.Store.Mark(ctx, k, until)
}

// Append appends e unless Append fails.
func (s *FaultyStore) Append(ctx context.Context, e *store.Event) (string, error) {
	if err := s.enter(OpAppend); err != nil {
		return "", err
	}
	return s.Store.Append(ctx, e)
}

// CacheGet reads key unless CacheGet fails.
func (s *FaultyStore) CacheGet(ctx context.Context, key string) ([]byte, error) {
	if err := s.enter(OpCacheGet); err != nil {
		return nil, err
	}
	return s.Store.CacheGet(ctx, key)
}

// CachePut writes key unless CachePut fails.
func (s *FaultyStore) CachePut(ctx context.Context, key string, value []byte, until time.Time) error {
	if err := s.enter(OpCachePut); err != nil {
		return err
	}
	return s.Store.CachePut(ctx, key, value, until)
}

// CacheLease takes the lease on key unless CacheLease fails.
func (s *FaultyStore) CacheLease(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := s.enter(OpCacheLease); err != nil {
		return false, err
	}
	return s.Store.CacheLease(ctx, key, ttl)
}

// Events are every audit event, newest first.
func (s *FaultyStore) Events(tb testing.TB) []store.Event {
	tb.Helper()
	var all []store.Event
	page := ""
	for {
		evs, next, err := s.Store.List(context.Background(), store.Filter{}, store.MaxPageSize, page)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, evs...)
		if next == "" {
			return all
		}
		page = next
	}
}
