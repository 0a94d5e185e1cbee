package broker

import (
	"sync"
	"time"

	"github.com/chainbroker/chainbroker/token"
)

// memo is a bounded map safe for concurrent use. It keeps two generations:
// when the current one holds max entries, it becomes the previous one and
// the older entries go. A hit in the previous generation moves the entry to
// the current one, so what is in use survives (an approximate LRU without
// per-entry bookkeeping); at most 2×max entries are held.
type memo[K comparable, V any] struct {
	mu        sync.Mutex
	max       int
	cur, prev map[K]V
}

func newMemo[K comparable, V any](max int) *memo[K, V] {
	return &memo[K, V]{max: max, cur: make(map[K]V)}
}

func (m *memo[K, V]) get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.prev[k]
	if ok {
		m.putLocked(k, v)
	}
	return v, ok
}

func (m *memo[K, V]) put(k K, v V) {
	m.mu.Lock()
	m.putLocked(k, v)
	m.mu.Unlock()
}

func (m *memo[K, V]) putLocked(k K, v V) {
	if len(m.cur) >= m.max {
		m.prev, m.cur = m.cur, make(map[K]V, m.max)
	}
	m.cur[k] = v
}

// subjectMemoSize bounds the memo of parsed subject tokens (per
// generation): agents reuse a subject token for many chains, and parsing it
// (base64 and JSON) costs more than the rest of a cache hit.
const subjectMemoSize = 8192

// subjectInfo is what the broker reads from a subject token before any
// verification: enough to pick the source domain and to name the subject in
// audit events. It depends only on the token's bytes, so it is memoised by
// the token's SHA-256.
type subjectInfo struct {
	hash    string // the token's SHA-256 in hex (Hash), set when memoised
	jwt     bool   // the token parses as a JWT; the fields below are set only then
	subject string
	issuer  string
	expiry  time.Time
}

func parseSubject(raw string) subjectInfo {
	tok, err := token.ParseUnverified(raw)
	if err != nil || tok == nil {
		return subjectInfo{}
	}
	return subjectInfo{jwt: true, subject: tok.Claims.Subject, issuer: tok.Claims.Issuer, expiry: tok.Claims.Expiry}
}
