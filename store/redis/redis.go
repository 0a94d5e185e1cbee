// Package redis is the Redis store.Store backend, shared by every broker
// replica. It works over a go-redis UniversalClient, so standalone Redis,
// Sentinel and Cluster deployments are all supported.
//
// Keys (P is Options.KeyPrefix):
//
//	P:replay:{<digest>}   replay marker, SET NX PXAT <deadline>; the hash tag is
//	                      the digest so that markers spread over cluster slots
//	P:{audit}:events      audit stream (XADD MAXLEN ~ Options.AuditMaxLen,
//	                      XTRIM MINID ~ now - Options.AuditRetention)
//	P:{audit}:idx:...     secondary indexes of the stream: sorted sets and streams (index.go)
//	P:{audit}:idxkeys     the index keys, for the sweep of stale ones
//
// Only the SHA-256 digest of a replay key is stored, never the jti itself.
// Audit events are stored as one JSON field "e" per stream entry (with the
// event's time in a field "t", see index.go); their ids are the Redis
// stream ids ("<ms>-<seq>", assigned by the server), and page tokens are
// ids too. Event times are kept at nanosecond precision, in UTC.
//
// Every failure to reach Redis or to get an answer in time (including
// LOADING, CLUSTERDOWN, TRYAGAIN, MASTERDOWN, READONLY, ...) is reported as
// store.ErrUnavailable; no go-redis error type escapes this package.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/deadline"
	"github.com/chainbroker/chainbroker/store"
)

// Defaults for Options.
const (
	DefaultKeyPrefix   = "chainbroker"
	DefaultAuditMaxLen = 1_000_000
	DefaultOpTimeout   = 2 * time.Second
)

// eventField is the stream entry field holding the JSON event.
const eventField = "e"

// Options configures a Store.
type Options struct {
	// Client is the connection to Redis. New uses it as is and Close leaves
	// it open; the caller owns it. Set ContextTimeoutEnabled on it so that
	// OpTimeout also bounds network reads and writes.
	Client goredis.UniversalClient
	// KeyPrefix starts every key. Empty means DefaultKeyPrefix. It must not
	// contain '{' or '}' (they would change the keys' hash slots).
	KeyPrefix string
	// AuditMaxLen bounds the audit stream (XADD MAXLEN ~, so the stream may
	// briefly hold somewhat more). Zero means DefaultAuditMaxLen.
	AuditMaxLen int64
	// AuditRetention, when positive, trims events appended longer ago than
	// that (XTRIM MINID ~ on every append, with their index entries); List
	// and Get never return them, even before they are trimmed. AuditMaxLen
	// still bounds the count.
	AuditRetention time.Duration
	// OpTimeout bounds each operation, on top of the caller's context. Zero
	// means DefaultOpTimeout.
	OpTimeout time.Duration
	// MinReplicasAck, when positive, makes every replay marker and audit
	// event wait (WAIT, on the key's master) until this many replicas hold
	// it, or ReplicaAckTimeout passes; fewer acknowledgements is
	// ErrUnavailable, so the chain fails closed instead of handing out a
	// token whose marker or event a failover could lose.
	MinReplicasAck int
	// ReplicaAckTimeout bounds that wait; zero means 500ms.
	ReplicaAckTimeout time.Duration
}

// Store is a Redis store.Store. It is safe for concurrent use.
type Store struct {
	client     goredis.UniversalClient
	ownsClient bool
	prefix     string
	stream     string
	maxLen     int64
	retention  time.Duration    // 0: no time bound
	now        func() time.Time // wall clock; replaced only by tests
	opTimeout  time.Duration
	// listBudget and listSlice bound List's work (store.CollectPage);
	// changed only by tests.
	listBudget, listSlice int
	upkeepEvery           int // see index.go; changed only by tests
	minAcks               int
	ackTimeout            time.Duration
	batch                 *batcher // group commit of marks and events; nil when minAcks > 0
	// Key names fixed by the prefix, built once (Append names them on every
	// event): the index prefix, and as script arguments (boxed once) the
	// stream, the index key registry, the skew index, the stream's MAXLEN
	// and each outcome's index.
	idxPrefix                                 string
	streamArg, idxKeysArg, skewArg, maxLenArg any
	outcomeArgs                               [store.OutcomeCacheHit + 1]any
	keys                                      *keyMemo // the hashed index keys met lately (keyMemo)
}

var _ store.Store = (*Store)(nil)

// New returns a Store over opts.Client. It does not contact Redis; use Ping.
// Close does not close opts.Client.
func New(opts Options) (*Store, error) {
	if opts.Client == nil {
		return nil, fmt.Errorf("store/redis: Options.Client is nil: %w", store.ErrInvalidArgument)
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("store/redis: Options.KeyPrefix must not contain '{' or '}': %w", store.ErrInvalidArgument)
	}
	switch {
	case opts.AuditMaxLen < 0:
		return nil, fmt.Errorf("store/redis: Options.AuditMaxLen is negative: %w", store.ErrInvalidArgument)
	case opts.AuditMaxLen == 0:
		opts.AuditMaxLen = DefaultAuditMaxLen
	}
	if opts.AuditRetention < 0 {
		return nil, fmt.Errorf("store/redis: Options.AuditRetention is negative: %w", store.ErrInvalidArgument)
	}
	switch {
	case opts.OpTimeout < 0:
		return nil, fmt.Errorf("store/redis: Options.OpTimeout is negative: %w", store.ErrInvalidArgument)
	case opts.OpTimeout == 0:
		opts.OpTimeout = DefaultOpTimeout
	}
	opts.ReplicaAckTimeout = cmpOr(opts.ReplicaAckTimeout, 500*time.Millisecond)
	if opts.ReplicaAckTimeout > opts.OpTimeout/2 {
		// The wait must end (with its count) before the operation's deadline.
		opts.ReplicaAckTimeout = opts.OpTimeout / 2
	}
	s := &Store{
		client:     opts.Client,
		prefix:     opts.KeyPrefix,
		stream:     opts.KeyPrefix + ":{audit}:events",
		maxLen:     opts.AuditMaxLen,
		retention:  opts.AuditRetention,
		now:        time.Now,
		opTimeout:  opts.OpTimeout,
		listBudget: store.ListBudget,
		listSlice:  store.ListSlice,

		upkeepEvery: upkeepEvery,
		minAcks:     opts.MinReplicasAck,
		ackTimeout:  opts.ReplicaAckTimeout,
	}
	s.idxPrefix = s.prefix + ":{audit}:idx:"
	s.streamArg, s.idxKeysArg, s.skewArg, s.maxLenArg = s.stream, s.prefix+":{audit}:idxkeys", s.skewKey(), s.maxLen
	s.keys = newKeyMemo(keyMemoSize)
	for o := range s.outcomeArgs {
		s.outcomeArgs[o] = s.outcomeKey(store.Outcome(o))
	}
	if s.minAcks <= 0 {
		s.batch = newBatcher(s.client, s.opTimeout)
	}
	return s, nil
}

// NewFromURL connects to the standalone Redis at url ("redis://" or
// "rediss://" for TLS, as parsed by go-redis ParseURL) and returns a Store
// that owns the connection: Close closes it. opts.Client must be nil. The
// client has ContextTimeoutEnabled set, so that OpTimeout and the caller's
// deadline also bound network reads and writes.
func NewFromURL(url string, opts Options) (*Store, error) {
	if opts.Client != nil {
		return nil, fmt.Errorf("store/redis: NewFromURL: Options.Client must be nil: %w", store.ErrInvalidArgument)
	}
	ro, err := goredis.ParseURL(url)
	if err != nil {
		// The URL may hold a password: do not echo it or the parse error.
		return nil, fmt.Errorf("store/redis: NewFromURL: malformed Redis URL: %w", store.ErrInvalidArgument)
	}
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1 // no retries of non-idempotent commands: see NewUniversal
	ro.Protocol = 2    // RESP2: no push-notification handling on every command
	return newOwned(goredis.NewClient(ro), opts)
}

// NewUniversal connects with go-redis UniversalOptions (one address:
// standalone; several: Cluster; MasterName set: Sentinel) and returns a Store
// that owns the connection: Close closes it. opts.Client must be nil. The
// client has ContextTimeoutEnabled set (uo itself is not modified).
func NewUniversal(uo *goredis.UniversalOptions, opts Options) (*Store, error) {
	if uo == nil {
		return nil, fmt.Errorf("store/redis: NewUniversal: nil UniversalOptions: %w", store.ErrInvalidArgument)
	}
	if opts.Client != nil {
		return nil, fmt.Errorf("store/redis: NewUniversal: Options.Client must be nil: %w", store.ErrInvalidArgument)
	}
	c := *uo
	c.ContextTimeoutEnabled = true
	// No automatic retries: when a reply is lost, go-redis would send the
	// command again, and neither SET NX (the replay marker: the retry finds
	// its own marker and reports a replay) nor XADD (a second audit event)
	// is idempotent. A failed operation fails the chain closed instead; the
	// caller's retry gets a fresh grant.
	c.MaxRetries = -1
	// RESP2: RESP3's push-notification handling costs on every command, and
	// the store uses no RESP3 feature.
	if c.Protocol == 0 {
		c.Protocol = 2
	}
	return newOwned(goredis.NewUniversalClient(&c), opts)
}

func newOwned(c goredis.UniversalClient, opts Options) (*Store, error) {
	opts.Client = c
	s, err := New(opts)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	s.ownsClient = true
	return s, nil
}

// Close stops the Store's writers and closes the Redis client if the Store
// created it (NewFromURL, NewUniversal); a client passed in Options.Client
// is left open.
func (s *Store) Close() error {
	if s.batch != nil {
		s.batch.close()
	}
	if !s.ownsClient {
		return nil
	}
	if err := s.client.Close(); err != nil {
		return s.translate("close", err)
	}
	return nil
}

// Ping implements store.Store with PING.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel, err := s.opContext(ctx, "ping")
	if err != nil {
		return err
	}
	defer cancel()
	return s.translate("ping", s.client.Ping(ctx).Err())
}

// Mark implements store.ReplayGuard with SET key 1 NX PXAT <until in ms,
// rounded up>.
func (s *Store) Mark(ctx context.Context, key store.ReplayKey, until time.Time) error {
	if key.Target == "" || key.Issuer == "" || key.JTI == "" {
		return fmt.Errorf("store/redis: mark: replay key has an empty part: %w", store.ErrInvalidArgument)
	}
	if !until.After(time.Now()) {
		return fmt.Errorf("store/redis: mark: deadline is not in the future: %w", store.ErrInvalidArgument)
	}
	ctx, cancel, err := s.opContext(ctx, "mark")
	if err != nil {
		return err
	}
	defer cancel()
	// Round up to the millisecond: a marker may outlive its deadline by
	// under a millisecond, never expire before it.
	ms := store.CeilMillis(until)
	rk := s.replayKey(key)
	set := goredis.NewStatusCmd(ctx, "set", rk, "1", "pxat", ms, "nx")
	if err := s.write(ctx, "mark", rk, set); err != nil {
		return err
	}
	if err := set.Err(); errors.Is(err, goredis.Nil) {
		return fmt.Errorf("store/redis: mark: %w", store.ErrReplayed)
	} else if err != nil {
		return s.translate("mark", err)
	}
	return nil
}

// replayKey returns the Redis key holding the marker for k.
func (s *Store) replayKey(k store.ReplayKey) string {
	return s.prefix + ":replay:{" + k.Digest() + "}"
}

// Append implements store.AuditLog: XADD <stream> MAXLEN ~ N * e <json> and
// the event's index entries, in one script (see index.go). The stored event
// has Time set to now when zero, in UTC; e is not modified.
func (s *Store) Append(ctx context.Context, e *store.Event) (string, error) {
	if e == nil {
		return "", fmt.Errorf("store/redis: append: nil event: %w", store.ErrInvalidArgument)
	}
	ev := *e // shallow copy: only ID and Time change, slices are only read
	ev.ID = ""
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	ctx, cancel, err := s.opContext(ctx, "append")
	if err != nil {
		return "", err
	}
	defer cancel()
	buf := appendBufs.Get().(*appendBuf)
	body := ev.AppendJSON(buf.body[:0])
	args := s.appendArgsTo(buf.args, &ev, body)
	id, settled, err := s.evalAppend(ctx, args)
	if settled {
		buf.release(args, body)
	}
	return id, err
}

// appendBuf is the memory of an append's script arguments and JSON event,
// reused (appendBufs) once the append's commands are settled (evalAppend):
// written, and their replies read, so that nothing reads the arguments any
// more. A command the group commit may still send after Append returns
// keeps its memory.
type appendBuf struct {
	args []any
	body []byte
}

// maxPooledBody bounds the JSON buffers kept for reuse: a rare large event
// does not keep its memory.
const maxPooledBody = 16 << 10

var appendBufs = sync.Pool{New: func() any {
	return &appendBuf{args: make([]any, 0, appendArgsCap), body: make([]byte, 0, 1024)}
}}

// release puts b back in appendBufs with args and body, the memory it gave
// (grown, perhaps), dropping what args refer to.
func (b *appendBuf) release(args []any, body []byte) {
	if cap(body) > maxPooledBody || cap(args) > appendArgsCap {
		return
	}
	clear(args)
	b.args, b.body = args[:0], body[:0]
	appendBufs.Put(b)
}

// cutoff is the oldest id within the retention ({0, 0}: no retention).
func (s *Store) cutoff() streamID {
	if s.retention <= 0 {
		return streamID{}
	}
	return streamID{ms: uint64(max(store.FloorMillis(s.now().Add(-s.retention)), 0))}
}

// write runs cmd, a write on key: in the next group commit (see batcher),
// or, with MinReplicasAck set, in a pipeline of its own followed by a WAIT on
// the key's master (on a Cluster, WAIT has no key, so the pipeline goes to
// the master of key). The command's own reply or error is left in it; the
// returned error is a failure to get it in time, or too few replica
// acknowledgements, both ErrUnavailable.
func (s *Store) write(ctx context.Context, op, key string, cmd goredis.Cmder) error {
	if s.batch != nil {
		return s.translate(op, s.batch.do(ctx, cmd))
	}
	var pipe goredis.Pipeliner = s.client.Pipeline()
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return s.translate(op, err)
		}
		pipe = node.Pipeline()
	}
	_ = pipe.Process(ctx, cmd)
	wait := pipe.Do(ctx, "WAIT", s.minAcks, s.ackTimeout.Milliseconds())
	// Exec reports the first failed command: a transport failure fails the
	// operation; a reply to the write itself (nil for SET NX on an existing
	// key, an error reply) is left in its command for the caller.
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) && !isReply(err) {
		return s.translate(op, err)
	}
	n, err := wait.Int64()
	if err != nil {
		return s.translate(op, err)
	}
	if n < int64(s.minAcks) {
		return fmt.Errorf("store/redis: %s: %d of %d replicas acknowledged the write: %w", op, n, s.minAcks, store.ErrUnavailable)
	}
	return nil
}

// isReply reports whether err is an error reply from Redis (not transport).
func isReply(err error) bool {
	var re goredis.Error
	return errors.As(err, &re) && !errors.Is(err, goredis.Nil)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Get implements store.AuditLog with XRANGE id id COUNT 1. A malformed id
// gives store.ErrInvalidArgument.
func (s *Store) Get(ctx context.Context, id string) (store.Event, error) {
	sid, ok := parseStreamID(id)
	if !ok {
		return store.Event{}, fmt.Errorf("store/redis: get: malformed event id: %w", store.ErrInvalidArgument)
	}
	if sid.less(s.cutoff()) {
		return store.Event{}, fmt.Errorf("store/redis: get: %w", store.ErrNotFound) // past retention
	}
	ctx, cancel, err := s.opContext(ctx, "get")
	if err != nil {
		return store.Event{}, err
	}
	defer cancel()
	msgs, err := s.client.XRangeN(ctx, s.stream, id, id, 1).Result()
	if err != nil {
		return store.Event{}, s.translate("get", err)
	}
	if len(msgs) == 0 {
		return store.Event{}, fmt.Errorf("store/redis: get: %w", store.ErrNotFound)
	}
	return decodeEvent("get", msgs[0])
}

// List implements store.AuditLog with store.CollectPage over a walk of the
// filter's smallest index (the stream when no field is filtered), in
// script calls of at most store.ListSlice entries each (see index.go).
func (s *Store) List(ctx context.Context, f store.Filter, pageSize int, pageToken string) ([]store.Event, string, error) {
	switch {
	case pageSize < 0:
		return nil, "", fmt.Errorf("store/redis: list: negative page size: %w", store.ErrInvalidArgument)
	case pageSize == 0:
		pageSize = store.DefaultPageSize
	case pageSize > store.MaxPageSize:
		pageSize = store.MaxPageSize
	}
	upper, hasUpper := streamID{}, false
	if pageToken != "" {
		id, ok := parseStreamID(pageToken)
		if !ok {
			return nil, "", fmt.Errorf("store/redis: list: malformed page token: %w", store.ErrInvalidArgument)
		}
		upper, hasUpper = id, true
	}
	ctx, cancel, err := s.opContext(ctx, "list")
	if err != nil {
		return nil, "", err
	}
	defer cancel()
	w, err := s.newWalk(ctx, f, upper, hasUpper)
	if err != nil || w == nil {
		return nil, "", err
	}
	return store.CollectPage(ctx, pageSize, s.listBudget, s.listSlice, w.step)
}

// opContext checks ctx and bounds it by the operation timeout. When ctx's
// own deadline comes first, ctx already bounds the operation as tightly as
// the timeout would: it is used as is, without a context (and its timer)
// of the operation's own.
func (s *Store) opContext(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, s.translate(op, err)
	}
	ctx, cancel := deadline.Within(ctx, s.opTimeout)
	return ctx, cancel, nil
}

// unavailablePrefixes are Redis error replies meaning "not now": the server
// or cluster is starting, failing over, or refusing writes for a while.
var unavailablePrefixes = []string{
	"LOADING ", "CLUSTERDOWN ", "TRYAGAIN ", "MASTERDOWN ", "READONLY ",
	"NOREPLICAS ", "BUSY ", "MOVED ", "ASK ", "ERR max number of clients",
}

// translate maps an error from go-redis (or the context) to the store error
// set, naming op. It never wraps a go-redis error: only its message is kept,
// and no command arguments (keys, values) appear in it. Callers handle
// goredis.Nil themselves, since its meaning depends on the operation.
func (s *Store) translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		// The caller gave up; not a backend failure.
		return fmt.Errorf("store/redis: %s: %w", op, context.Canceled)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("store/redis: %s: %w: %w", op, store.ErrUnavailable, context.DeadlineExceeded)
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range unavailablePrefixes {
			if strings.HasPrefix(msg, p) {
				return fmt.Errorf("store/redis: %s: %w: %s", op, store.ErrUnavailable, msg)
			}
		}
		// Any other server reply (WRONGTYPE, NOAUTH, NOPERM, syntax, ...) is
		// a configuration or programming error: not retryable.
		return fmt.Errorf("store/redis: %s: redis error: %s", op, msg)
	}
	// Not a server reply: dial failure, connection refused or reset, I/O
	// timeout, pool timeout, closed client, EOF.
	return fmt.Errorf("store/redis: %s: %w: %s", op, store.ErrUnavailable, err.Error())
}

func decodeEvent(op string, m goredis.XMessage) (store.Event, error) {
	raw, ok := m.Values[eventField].(string)
	if !ok {
		return store.Event{}, fmt.Errorf("store/redis: %s: audit entry %s has no %q field", op, m.ID, eventField)
	}
	var ev store.Event
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		return store.Event{}, fmt.Errorf("store/redis: %s: decode audit entry %s: %w", op, m.ID, err)
	}
	ev.ID = m.ID
	return ev, nil
}

// streamID is a parsed "<ms>-<seq>" stream id.
type streamID struct{ ms, seq uint64 }

func (a streamID) less(b streamID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// parseStreamID parses "<ms>-<seq>", both unsigned 64-bit decimal numbers.
func parseStreamID(s string) (streamID, bool) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	// ParseUint rejects empty strings, signs and anything but digits.
	ms, err := strconv.ParseUint(msPart, 10, 64)
	if err != nil {
		return streamID{}, false
	}
	seq, err := strconv.ParseUint(seqPart, 10, 64)
	if err != nil {
		return streamID{}, false
	}
	return streamID{ms: ms, seq: seq}, true
}

// cacheKeys returns the Redis keys of a cache entry and of its lease, hash
// tagged by the (digest) key so each stays on one cluster slot.
func (s *Store) cacheKeys(key string) (entry, lease string, err error) {
	if key == "" || strings.ContainsAny(key, "{}") {
		return "", "", fmt.Errorf("store/redis: cache key empty or with braces: %w", store.ErrInvalidArgument)
	}
	return s.prefix + ":cache:{" + key + "}", s.prefix + ":lease:{" + key + "}", nil
}

// CacheGet implements store.TokenCache with GET.
func (s *Store) CacheGet(ctx context.Context, key string) ([]byte, error) {
	entry, _, err := s.cacheKeys(key)
	if err != nil {
		return nil, err
	}
	ctx, cancel, err := s.opContext(ctx, "cache get")
	if err != nil {
		return nil, err
	}
	defer cancel()
	v, err := s.client.Get(ctx, entry).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("store/redis: cache get: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, s.translate("cache get", err)
	}
	return v, nil
}

// CachePut implements store.TokenCache with SET PXAT.
func (s *Store) CachePut(ctx context.Context, key string, value []byte, until time.Time) error {
	entry, _, err := s.cacheKeys(key)
	if err != nil {
		return err
	}
	if !until.After(time.Now()) {
		return fmt.Errorf("store/redis: cache put: deadline is not in the future: %w", store.ErrInvalidArgument)
	}
	ctx, cancel, err := s.opContext(ctx, "cache put")
	if err != nil {
		return err
	}
	defer cancel()
	// Rounded down: an entry never outlives its deadline.
	return s.translate("cache put", s.client.SetArgs(ctx, entry, value, goredis.SetArgs{ExpireAt: time.UnixMilli(until.UnixMilli())}).Err())
}

// CacheLease implements store.TokenCache with SET NX PX.
func (s *Store) CacheLease(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	_, lease, err := s.cacheKeys(key)
	if err != nil {
		return false, err
	}
	if ttl <= 0 {
		return false, fmt.Errorf("store/redis: cache lease: ttl must be positive: %w", store.ErrInvalidArgument)
	}
	ctx, cancel, err := s.opContext(ctx, "cache lease")
	if err != nil {
		return false, err
	}
	defer cancel()
	err = s.client.SetArgs(ctx, lease, "1", goredis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, s.translate("cache lease", err)
	}
	return true, nil
}
