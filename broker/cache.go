package broker

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chainbroker/chainbroker/store"
)

// CachePolicy turns on caching of a target domain's access tokens. Opt-in:
// a cached token is handed to the same caller, for the same subject token,
// scopes, resources and audience, until it is about to expire.
type CachePolicy struct {
	Enabled bool
	// Margin: entries expire this long before the token does; default 30s.
	Margin time.Duration
}

// CacheKey is an AES-256 key for cache entries. Config.CacheKeys[0]
// encrypts; every key decrypts the entries it made, found by ID, so keys
// can rotate.
type CacheKey struct {
	ID     string
	Secret []byte // 32 bytes
}

const (
	// cacheLease bounds how long other replicas wait for the one filling
	// an entry; cacheWaitStep is how often they look.
	cacheLease    = 3 * time.Second
	cacheWaitStep = 20 * time.Millisecond
)

// tokenCache encrypts entries (AES-GCM, the entry's key as additional data,
// so an entry cannot be moved under another key) before they reach the store.
// Entries it has put or read are also kept in this process, decrypted, until
// they expire (local): entries never change once written, so a local copy is
// never stale, and a hit then costs no store round trip and no decryption.
type tokenCache struct {
	store  store.TokenCache
	seal   cipher.AEAD
	sealID string
	open   map[string]cipher.AEAD
	local  *memo[string, *cachedToken]
	now    func() time.Time // the broker's clock
}

// localCacheSize bounds the entries kept in process (per generation; see
// memo), a few MiB at most.
const localCacheSize = 4096

func newTokenCache(s store.TokenCache, keys []CacheKey) (*tokenCache, error) {
	if s == nil || len(keys) == 0 {
		return nil, errors.New("broker: a cached target needs Config.Cache and at least one CacheKey")
	}
	c := &tokenCache{store: s, open: map[string]cipher.AEAD{}, local: newMemo[string, *cachedToken](localCacheSize), now: time.Now}
	for i, k := range keys {
		if k.ID == "" || strings.Contains(k.ID, ":") || len(k.Secret) != 32 {
			return nil, fmt.Errorf("broker: cache key %d: needs an id without ':' and a 32-byte secret", i)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("broker: cache key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("broker: cache key %q: %w", k.ID, err)
		}
		if _, dup := c.open[k.ID]; dup {
			return nil, fmt.Errorf("broker: duplicate cache key id %q", k.ID)
		}
		c.open[k.ID] = aead
		if i == 0 {
			c.seal, c.sealID = aead, k.ID
		}
	}
	return c, nil
}

// cachedToken is what an entry holds once decrypted.
type cachedToken struct {
	AccessToken     string `json:"a"`
	IssuedTokenType string `json:"i"`
	TokenType       string `json:"t"`
	Scope           string `json:"s,omitempty"`
	ExpiresAt       int64  `json:"e"`             // unix seconds
	Until           int64  `json:"u,omitempty"`   // unix ms: when the entry goes (before ExpiresAt)
	Subject         string `json:"sub,omitempty"` // the verified subject of the chain that filled it
	Actor           string `json:"act,omitempty"` // and its actor
	// AWS holds an aws target's credentials (AccessToken is then empty).
	AWS *cachedAWS `json:"w,omitempty"`
}

// cachedAWS is AWSCredentials in a cache entry (encrypted like the rest).
type cachedAWS struct {
	AccessKeyID     string `json:"k"`
	SecretAccessKey string `json:"s"`
	SessionToken    string `json:"t"`
	Expiration      int64  `json:"e"` // unix seconds
}

func (c *tokenCache) put(ctx context.Context, key string, t *cachedToken, until time.Time) error {
	t.Until = until.UnixMilli()
	plain, err := json.Marshal(t)
	if err != nil {
		return err
	}
	nonce := make([]byte, c.seal.NonceSize(), c.seal.NonceSize()+len(plain)+c.seal.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := c.seal.Seal(nonce, nonce, plain, []byte(key))
	if err := c.store.CachePut(ctx, key, append([]byte(c.sealID+":"), sealed...), until); err != nil {
		return err
	}
	c.local.put(key, t)
	return nil
}

// get returns the entry under key; a missing, expired, undecryptable or
// corrupt entry is a miss (errors only for store failures).
func (c *tokenCache) get(ctx context.Context, key string) (*cachedToken, error) {
	if t, ok := c.local.get(key); ok && c.now().UnixMilli() < t.Until {
		return t, nil
	}
	v, err := c.store.CacheGet(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	id, sealed, ok := strings.Cut(string(v), ":")
	aead := c.open[id]
	if !ok || aead == nil || len(sealed) < aead.NonceSize() {
		return nil, nil // a retired key or garbage: refill
	}
	plain, err := aead.Open(nil, []byte(sealed[:aead.NonceSize()]), []byte(sealed[aead.NonceSize():]), []byte(key))
	if err != nil {
		return nil, nil
	}
	var t cachedToken
	if json.Unmarshal(plain, &t) != nil || (t.AccessToken == "" && (t.AWS == nil || t.AWS.AccessKeyID == "")) || c.now().Unix() >= t.ExpiresAt ||
		(t.Until > 0 && c.now().UnixMilli() >= t.Until) { // past the entry's end on the broker's clock (e.g. the subject token's exp)
		return nil, nil
	}
	if t.Until > 0 && t.Until <= t.ExpiresAt*1000 {
		c.local.put(key, &t)
	}
	return &t, nil
}

// cacheKey identifies what a cached token may be reused for: the caller, the
// subject token (by hash), the target, and everything requested of hop 1 and
// hop 2. Different callers never share an entry.
func (r *chainRun) cacheKey(tgt *Domain, chain *Chain) string {
	req := &r.req
	scopes := slices.Clone(scopes(req.Scopes, chain.DefaultScopes))
	slices.Sort(scopes)
	resources := append(slices.Clone(chain.Resource), req.Resources...)
	slices.Sort(resources)
	audience := chain.Audience
	if req.Audience != "" {
		audience = req.Audience
	}
	actor := ""
	if req.ActorToken != "" {
		actor = Hash(req.ActorToken)
	}
	// Each part length-prefixed, so that no two requests share a key.
	b := make([]byte, 0, 512)
	for _, p := range [...]string{req.Caller, r.ev.SubjectTokenHash, req.SubjectTokenType, tgt.Name, chain.Source,
		strings.Join(scopes, " "), strings.Join(resources, " "), audience, actor, req.ActorTokenType,
		r.ev.DPoPJKT} { // a DPoP-bound token only for its key
		b = append(strconv.AppendInt(b, int64(len(p)), 10), ':')
		b = append(b, p...)
	}
	sum := sha256.Sum256(b)
	return hexSum(&sum)
}

// cached runs the chain through the target's cache: a hit is answered at
// once; concurrent misses for one key in this process wait for one chain
// (single flight), and across replicas the lease holder fills the entry
// while the others wait for it, briefly.
func (r *chainRun) cached(ctx context.Context, src, tgt *Domain, chain *Chain) (*Result, error) {
	c := r.b.cache
	key := r.cacheKey(tgt, chain)
	if t, err := c.get(ctx, key); err != nil {
		r.b.log.WarnContext(ctx, "token cache unavailable; chaining without it", "error", err)
	} else if t != nil {
		r.b.observer.CacheLookup(tgt.Name, true)
		return r.hitResult(t), nil
	}
	r.b.observer.CacheLookup(tgt.Name, false)

	v, err, _ := r.b.flight.Do(key, func() (any, error) {
		if ok, err := c.store.CacheLease(ctx, key, cacheLease); err == nil && !ok {
			if t := r.waitForEntry(ctx, key); t != nil {
				return t, nil
			}
		}
		res, err := r.twoHops(ctx, src, tgt, chain)
		if err != nil {
			return nil, err
		}
		t := &cachedToken{AccessToken: res.AccessToken, IssuedTokenType: res.IssuedTokenType,
			TokenType: res.TokenType, Scope: res.Scope, ExpiresAt: r.b.now().Unix() + res.ExpiresIn, Subject: r.ev.Subject, Actor: r.ev.Actor}
		if a := res.AWSCredentials; a != nil {
			t.AWS = &cachedAWS{AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey, SessionToken: a.SessionToken, Expiration: a.Expiration.Unix()}
		}
		if until, ok := r.cacheUntil(tgt, res); ok {
			if err := c.put(ctx, key, t, until); err != nil {
				r.b.log.WarnContext(ctx, "token cache put failed", "error", err)
			}
		}
		r.leaderResult = res // only the leader runs this function
		return t, nil
	})
	if err != nil {
		return nil, err
	}
	if r.leaderResult != nil {
		return r.leaderResult, nil // this call ran the chain itself
	}
	return r.hitResult(v.(*cachedToken)), nil
}

// waitForEntry polls for the entry another replica is filling, until its
// lease would have ended.
func (r *chainRun) waitForEntry(ctx context.Context, key string) *cachedToken {
	deadline := time.Now().Add(cacheLease)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cacheWaitStep):
		}
		if t, err := r.b.cache.get(ctx, key); err != nil || t != nil {
			return t
		}
	}
	return nil
}

// cacheUntil is when an entry for res must go: the token's expiry less the
// margin, never after the subject token's own exp. Tokens without a known
// expiry, or about to expire, are not cached.
func (r *chainRun) cacheUntil(tgt *Domain, res *Result) (time.Time, bool) {
	if res.ExpiresIn <= 0 || r.subjectExp.IsZero() {
		return time.Time{}, false
	}
	now := r.b.now()
	until := now.Add(time.Duration(res.ExpiresIn)*time.Second - tgt.Cache.Margin)
	if r.subjectExp.Before(until) {
		until = r.subjectExp
	}
	return until, until.Sub(now) >= time.Second
}

func (r *chainRun) hitResult(t *cachedToken) *Result {
	r.hit = true
	if t.Subject != "" { // the same subject token, verified when the entry was filled
		r.verifiedSubject(t.Subject)
	}
	r.ev.Actor = t.Actor
	res := &Result{
		AccessToken:     t.AccessToken,
		IssuedTokenType: t.IssuedTokenType,
		TokenType:       t.TokenType,
		Scope:           t.Scope,
		ExpiresIn:       max(t.ExpiresAt-r.b.now().Unix(), 0),
	}
	if a := t.AWS; a != nil {
		res.AWSCredentials = &AWSCredentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey,
			SessionToken: a.SessionToken, Expiration: time.Unix(a.Expiration, 0).UTC()}
	}
	return res
}
