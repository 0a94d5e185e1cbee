package broker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/broker/brokertest"
	"github.com/chainbroker/chainbroker/store/memory"
)

func key32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestTokenCacheEncryptionAndRotation(t *testing.T) {
	ctx := context.Background()
	st := memory.New(memory.Options{})
	k1, k2 := CacheKey{ID: "k1", Secret: key32(1)}, CacheKey{ID: "k2", Secret: key32(2)}
	c1, err := newTokenCache(st, []CacheKey{k1})
	if err != nil {
		t.Fatal(err)
	}
	tok := &cachedToken{AccessToken: "secret-access-token", TokenType: "Bearer", ExpiresAt: time.Now().Add(time.Hour).Unix()}
	if err := c1.put(ctx, "entry", tok, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	raw, _ := st.CacheGet(ctx, "entry")
	if bytes.Contains(raw, []byte("secret-access-token")) || !bytes.HasPrefix(raw, []byte("k1:")) {
		t.Fatalf("stored entry is not sealed under k1: %q", raw)
	}
	for _, tt := range []struct {
		name string
		keys []CacheKey
		hit  bool
	}{
		{"same key", []CacheKey{k1}, true},
		{"rotated: new key first, old kept", []CacheKey{k2, k1}, true},
		{"old key dropped", []CacheKey{k2}, false},
		{"same id, other secret", []CacheKey{{ID: "k1", Secret: key32(9)}}, false},
	} {
		c, err := newTokenCache(st, tt.keys)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.get(ctx, "entry")
		if err != nil || (got != nil) != tt.hit || (got != nil && got.AccessToken != tok.AccessToken) {
			t.Errorf("%s: got %+v, %v; want hit=%v", tt.name, got, err, tt.hit)
		}
	}
	// An entry moved under another key does not open (the key is bound in).
	st.CachePut(ctx, "other", raw, time.Now().Add(time.Minute))
	if got, _ := c1.get(ctx, "other"); got != nil {
		t.Error("an entry copied under another key decrypted")
	}
	// Tampering is a miss, not an error (read by a process that has not
	// seen the entry yet: c1 keeps its own decrypted copy).
	raw[len(raw)-1] ^= 1
	st.CachePut(ctx, "entry", raw, time.Now().Add(time.Minute))
	fresh, _ := newTokenCache(st, []CacheKey{k1})
	if got, err := fresh.get(ctx, "entry"); got != nil || err != nil {
		t.Errorf("tampered entry: %+v, %v", got, err)
	}
	for name, keys := range map[string][]CacheKey{
		"none": nil, "short": {{ID: "a", Secret: []byte("short")}}, "colon": {{ID: "a:b", Secret: key32(1)}}, "dup": {k1, k1},
	} {
		if _, err := newTokenCache(st, keys); err == nil {
			t.Errorf("keys %s accepted", name)
		}
	}
}

func TestCacheUntil(t *testing.T) {
	tgt := &Domain{Cache: CachePolicy{Enabled: true, Margin: 30 * time.Second}}
	now := time.Now()
	for _, tt := range []struct {
		name       string
		expiresIn  int64
		subjectExp time.Time
		want       time.Duration // 0: not cached
	}{
		{"token expiry less margin", 300, now.Add(time.Hour), 270 * time.Second},
		{"bounded by the subject token", 300, now.Add(100 * time.Second), 100 * time.Second},
		{"no expires_in", 0, now.Add(time.Hour), 0},
		{"subject token without exp", 300, time.Time{}, 0},
		{"about to expire", 30, now.Add(time.Hour), 0},
	} {
		r := &chainRun{b: &Broker{now: func() time.Time { return now }}, subjectExp: tt.subjectExp}
		until, ok := r.cacheUntil(tgt, &Result{ExpiresIn: tt.expiresIn})
		if ok != (tt.want > 0) {
			t.Errorf("%s: cached=%v", tt.name, ok)
			continue
		}
		if ok && (until.Sub(now) < tt.want-time.Second || until.Sub(now) > tt.want+time.Second) {
			t.Errorf("%s: until now+%v, want now+%v", tt.name, until.Sub(now), tt.want)
		}
	}
}

func TestCacheKeySeparatesCallersAndRequests(t *testing.T) {
	tgt, chain := &Domain{Name: "b"}, &Chain{Source: "a", Target: "b", Audience: "aud", DefaultScopes: []string{"x"}}
	key := func(req Request) string {
		r := &chainRun{req: req}
		r.ev.SubjectTokenHash = Hash(req.SubjectToken) // as parse sets it
		return r.cacheKey(tgt, chain)
	}
	base := Request{Caller: "c1", SubjectToken: "t", Scopes: []string{"s1", "s2"}}
	same := Request{Caller: "c1", SubjectToken: "t", Scopes: []string{"s2", "s1"}}
	if key(base) != key(same) {
		t.Error("scope order changed the key")
	}
	for name, r := range map[string]Request{
		"caller":   {Caller: "c2", SubjectToken: "t", Scopes: base.Scopes},
		"subject":  {Caller: "c1", SubjectToken: "u", Scopes: base.Scopes},
		"scopes":   {Caller: "c1", SubjectToken: "t", Scopes: []string{"s1"}},
		"resource": {Caller: "c1", SubjectToken: "t", Scopes: base.Scopes, Resources: []string{"https://r"}},
		"audience": {Caller: "c1", SubjectToken: "t", Scopes: base.Scopes, Audience: "other"},
		"actor":    {Caller: "c1", SubjectToken: "t", Scopes: base.Scopes, ActorToken: "a", ActorTokenType: "x"},
	} {
		if key(r) == key(base) {
			t.Errorf("a different %s shares the cache key", name)
		}
	}
}

// The process keeps the entries it put or read, decrypted, until their Until;
// after that (or in another process) the store is asked again.
func TestTokenCacheLocalCopy(t *testing.T) {
	ctx := context.Background()
	st := memory.New(memory.Options{})
	keys := []CacheKey{{ID: "k1", Secret: key32(1)}}
	c, err := newTokenCache(st, keys)
	if err != nil {
		t.Fatal(err)
	}
	clock := brokertest.NewClock(time.Now())
	c.now = clock.Now
	exp := time.Now().Add(time.Hour)
	long := &cachedToken{AccessToken: "long", ExpiresAt: exp.Unix()}
	short := &cachedToken{AccessToken: "short", ExpiresAt: exp.Unix()}
	if err := c.put(ctx, "long", long, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.put(ctx, "short", short, clock.Now().Add(1100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}

	// Overwrite both entries in the store: the local copies answer while valid.
	other := &cachedToken{AccessToken: "from-store", ExpiresAt: exp.Unix()}
	writer, _ := newTokenCache(st, keys)
	for _, k := range []string{"long", "short"} {
		if err := writer.put(ctx, k, other, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := c.get(ctx, "long"); got == nil || got.AccessToken != "long" {
		t.Fatalf("local copy not used: %+v", got)
	}
	// A process that never saw the entry reads (and then keeps) the store's.
	reader, _ := newTokenCache(st, keys)
	if got, _ := reader.get(ctx, "long"); got == nil || got.AccessToken != "from-store" {
		t.Fatalf("fresh process: %+v", got)
	}
	if _, ok := reader.local.get("long"); !ok {
		t.Error("an entry read from the store is not kept locally")
	}
	// Past its Until, the local copy is not used.
	clock.Advance(1200 * time.Millisecond)
	if got, _ := c.get(ctx, "short"); got == nil || got.AccessToken != "from-store" {
		t.Fatalf("expired local copy used: %+v", got)
	}
}

func TestMemoBoundsAndKeepsWhatIsUsed(t *testing.T) {
	m := newMemo[int, int](4)
	for i := range 4 {
		m.put(i, i)
	}
	m.put(4, 4) // generation turns: 0..3 become the previous one
	if v, ok := m.get(0); !ok || v != 0 {
		t.Fatal("entry of the previous generation lost")
	}
	for i := 5; i < 8; i++ { // cur = {4, 0, 5, 6}, then 7 turns it
		m.put(i, i)
	}
	if _, ok := m.get(1); ok {
		t.Error("an unused entry survived two generations")
	}
	if _, ok := m.get(0); !ok {
		t.Error("an entry used in the previous generation was dropped")
	}
	if n := len(m.cur) + len(m.prev); n > 8 {
		t.Errorf("memo holds %d entries, bound is 2x4", n)
	}
}
