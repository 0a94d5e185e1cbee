package redis

import "sync"

// keyMemo remembers the hashed index keys (hashedIndexKey) of the field
// values appended lately, boxed as script arguments: a chain's caller,
// source and target domain, and often its subject, recur from one event to
// the next, and a key costs a SHA-256, its hex and two allocations to build.
//
// It is bounded: values longer than keyMemoMaxValue are never kept, and of
// two generations of at most max entries each, the older one is dropped
// when the newer one is full (a hit in the older generation moves the entry
// to the newer one, so the keys in use survive). It holds at most 2×max
// entries, each of at most keyMemoMaxValue bytes of value and a key of
// about a hundred bytes.
type keyMemo struct {
	mu        sync.Mutex
	max       int
	cur, prev map[keyMemoKey]any
}

// keyMemoKey is a field value: the field's index in indexFields, and the value.
type keyMemoKey struct {
	field uint8
	value string
}

const (
	// keyMemoSize bounds each generation of the memo.
	keyMemoSize = 1024
	// keyMemoMaxValue bounds the values the memo keeps, in bytes.
	keyMemoMaxValue = 256
)

func newKeyMemo(max int) *keyMemo {
	return &keyMemo{max: max, cur: make(map[keyMemoKey]any, max)}
}

// get returns the boxed key of k, or nil.
func (m *keyMemo) get(k keyMemoKey) any {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.cur[k]; ok {
		return v
	}
	v, ok := m.prev[k]
	if ok {
		m.putLocked(k, v)
	}
	return v
}

// put keeps v, the boxed key of k, unless k's value is too long.
func (m *keyMemo) put(k keyMemoKey, v any) {
	if len(k.value) > keyMemoMaxValue {
		return
	}
	m.mu.Lock()
	m.putLocked(k, v)
	m.mu.Unlock()
}

func (m *keyMemo) putLocked(k keyMemoKey, v any) {
	if len(m.cur) >= m.max {
		m.prev, m.cur = m.cur, make(map[keyMemoKey]any, m.max)
	}
	m.cur[k] = v
}

// len is the number of entries held (both generations).
func (m *keyMemo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cur) + len(m.prev)
}
