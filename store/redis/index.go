package redis

// Secondary indexes of the audit stream, and the listing that reads them.
//
// Every stream entry holds two fields: "t", the event's Time in Unix
// nanoseconds (decimal; empty when before 1970 or after 2262), and "e", the
// JSON event. For each filter field value (subject, caller, source domain,
// target domain, outcome) an index holds the ids of the events carrying it:
//
//	P:{audit}:idx:<field>:<hex sha256(value)>   (outcome: P:{audit}:idx:o:<n>)
//	P:{audit}:idx:skew                          the skewed events (below)
//	P:{audit}:idxkeys                           the index keys (sweep, below)
//
// Values are hashed so that key names are bounded whatever the value. An
// index is of one of two kinds, by field:
//
//   - source and target domain, outcome (few values, each on a large part
//     of the trail) and the skew index: a stream, one entry per event under
//     the event's own id, with the same "t". It appends at its tail (the
//     ids only grow), walks newest first from any id (XREVRANGE, exclusive
//     bounds) like the audit stream, and stores an entry in about 26 bytes;
//     membership is XRANGE id id. But a stream key preallocates its newest
//     node (4 KiB, stream-node-max-bytes), so a stream per distinct value
//     would cost kilobytes for each subject seen a few times;
//   - subject and caller (many values, most on few events): a sorted set,
//     every member of score 0 and the event's id with both parts
//     zero-padded to 20 digits, so lexicographic order is id order
//     (ZRANGE BYLEX REV walks it newest first and resumes exactly after a
//     page token); membership is ZSCORE. A small set costs about a hundred
//     bytes; a member of a large one about a hundred.
//
// Skewed events: an event whose Time lies more than inStepMillis (1 s)
// from its append time (its id's millisecond) is also indexed in
// P:{audit}:idx:skew. Every other event is in step, so a time range
// [Start, End) holds, among the in-step events, only ids in
// [floor(Start) - 1s, ceil(End) + 1s): a time-bounded listing walks that id
// range, plus the skew index outside it. inStepMillis is part of the
// storage format: events appended with one value are listed with it.
//
// Writes: one Lua script (appendScript) trims the stream (MINID ~ for the
// retention), XADDs the event (MAXLEN ~), and adds its id to each of its
// indexes (ZADD, or XADD with the event's id); Redis runs a script
// atomically, and replicates it and writes it to the AOF as one
// MULTI/EXEC, so after a crash or failover an event is never missing from
// its indexes. Every key carries the {audit} hash tag, so the script
// touches one slot, on a Cluster too. An index write that fails (a key of
// another type, or a stream holding ids at or above the new one, which name
// no event since the stream's ids only grow) replaces the key with a fresh
// index, so the script never stops between the event and its indexes.
//
// Upkeep, on one append in 8 (upkeepEvery, by the id's millisecond): the
// indexes written drop their entries below the stream's oldest entry
// (ZREMRANGEBYLEX; XADD MINID ~, whole nodes of up to 100 entries), and up
// to 64 (staleSweep) stale keys are examined. The registry
// P:{audit}:idxkeys scores each index key by a millisecond at or before its
// last write (set when an append first writes the key, raised when the
// sweep finds it still in use); a key scored below the stream's oldest
// entry whose newest entry is older than that holds only trimmed events and
// is unlinked. So an index holds, beyond its live events, the entries
// trimmed since its last write on an upkeep append (and a stream, part of
// a node); a listing never reads below the stream's oldest entry.
//
// An index entry whose event is gone (removed by XDEL, or trimmed after the
// listing read the stream's oldest entry) is skipped by a listing, which
// removes it (ZREM, XDEL), so the answer never holds a missing event.
//
// Listing (listScript, called by List in steps, see store.CollectPage):
// the walk reads, newest first, the smallest of the filter's indexes
// (ZCARD, XLEN; the audit stream when no field is filtered) and tests each
// entry: its id in the filter's other indexes, its time against the range
// ("t" of a stream entry; an event found through a sorted set is checked
// once fetched), and fetches the events that pass. With a time range it
// walks the skew index (tested against every field) above the in-step ids,
// the in-step ids, and the skew index below them. A step reads at most
// store.ListSlice entries and returns where it stopped, so Redis is never
// blocked for long, and the cost of a page follows the page: the entries
// that fail the other fields, plus the events appended within a second of
// the range's ends, plus the skewed events outside the in-step ids, never
// the whole trail.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/store"
)

// inStepMillis: events whose Time is within this of their append time are
// in step (see the top of this file). Part of the storage format.
const inStepMillis = 1000

// Upkeep of the indexes, on one append in upkeepEvery (those whose id's
// millisecond is a multiple of it): trimming the indexes written below the
// stream's oldest entry, and examining up to staleSweep stale keys. An
// append creates at most 6 index keys, so the sweep keeps up.
const (
	upkeepEvery = 8
	staleSweep  = 64
)

// streamIDLua is what both scripts need of stream ids: pad (an id as a
// sorted set member that sorts as the id), unpad (back, nil for a member
// that is not one) and idLess.
const streamIDLua = `local function pad(id)
  local d = string.find(id, '-', 1, true)
  local ms, seq = string.sub(id, 1, d - 1), string.sub(id, d + 1)
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end
local function unpad(m)
  local ms, seq = string.match(m, '^0*(%d-)%-0*(%d-)$')
  if not ms then return nil end
  if ms == '' then ms = '0' end
  if seq == '' then seq = '0' end
  return ms .. '-' .. seq
end
local function idLess(a, b)
  local ad, bd = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  local am, bm = tonumber(string.sub(a, 1, ad - 1)), tonumber(string.sub(b, 1, bd - 1))
  if am ~= bm then return am < bm end
  return tonumber(string.sub(a, ad + 1)) < tonumber(string.sub(b, bd + 1))
end
`

// appendSrc: KEYS[1] stream, KEYS[2] index key registry, KEYS[3] skew
// index, KEYS[4..] the event's field indexes; ARGV[1] MAXLEN, ARGV[2] MINID
// ("0": no retention), ARGV[3] the JSON event, ARGV[4] its Time in Unix ns
// (or ""), ARGV[5] its Time in Unix ms, rounded down, ARGV[6] upkeepEvery
// (1 in tests that need the upkeep on every append), ARGV[7] the kinds of
// KEYS[4..], one letter each ("z" sorted set, "x" stream). Returns the new
// id.
//
// A stream index is written with NOMKSTREAM, so that it is registered only
// when the append creates it; sorted-set indexes are registered with NX.
// A typical append is the stream's XADD, one write per index and one ZADD
// to the registry.
var appendSrc = strings.NewReplacer("IN_STEP", strconv.Itoa(inStepMillis), "STALE_SWEEP", strconv.Itoa(staleSweep)).Replace(`
local stream, reg, skew = KEYS[1], KEYS[2], KEYS[3]
local t, kinds = ARGV[4], ARGV[7]
local function msOf(id) return string.sub(id, 1, string.find(id, '-', 1, true) - 1) end
` + streamIDLua + `if ARGV[2] ~= '0' then
  redis.call('XTRIM', stream, 'MINID', '~', ARGV[2], 'LIMIT', 10000)
end
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 't', t, 'e', ARGV[3])
local ms = msOf(id)
local member = pad(id)
local floor
if tonumber(ms) % tonumber(ARGV[6]) == 0 then
  floor = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1][1]
end
local register = {}
local function index(k, kind)
  if kind == 'z' then
    local r = redis.pcall('ZADD', k, 0, member)
    if type(r) == 'table' and r.err then
      redis.call('UNLINK', k)
      redis.call('ZADD', k, 0, member)
    elseif floor then
      redis.call('ZREMRANGEBYLEX', k, '-', '(' .. pad(floor))
    end
    register[#register + 1] = ms
    register[#register + 1] = k
    return
  end
  local r
  if floor then
    r = redis.pcall('XADD', k, 'NOMKSTREAM', 'MINID', '~', floor, id, 't', t)
  else
    r = redis.pcall('XADD', k, 'NOMKSTREAM', id, 't', t)
  end
  if type(r) == 'table' and r.err then
    -- Not a stream, or one holding ids at or above the new one (they name
    -- no event: the stream's ids only grow): replaced.
    redis.call('UNLINK', k)
    r = false
  end
  if not r then
    redis.call('XADD', k, id, 't', t)
    register[#register + 1] = ms
    register[#register + 1] = k
  end
end
for i = 4, #KEYS do index(KEYS[i], string.sub(kinds, i - 3, i - 3)) end
if math.abs(tonumber(ARGV[5]) - tonumber(ms)) > IN_STEP then index(skew, 'x') end
if #register > 0 then redis.call('ZADD', reg, 'NX', unpack(register)) end
if not floor then return id end
local stale = redis.call('ZRANGEBYSCORE', reg, '-inf', '(' .. msOf(floor), 'LIMIT', 0, STALE_SWEEP)
for _, k in ipairs(stale) do
  local kind = redis.call('TYPE', k).ok
  local newest
  if kind == 'stream' then
    local e = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)[1]
    if e then newest = e[1] end
  elseif kind == 'zset' then
    local m = redis.call('ZRANGE', k, -1, -1)[1]
    if m then newest = unpad(m) end
  end
  if newest and not idLess(newest, floor) then
    redis.call('ZADD', reg, 'XX', msOf(newest), k)
  else
    redis.call('UNLINK', k)
    redis.call('ZREM', reg, k)
  end
end
return id
`)

var appendScript = goredis.NewScript(appendSrc)

// listSrc: one step of a listing. KEYS[1] stream, KEYS[2] skew index,
// KEYS[3] the walked field index, KEYS[4..] the filter's other field
// indexes (no KEYS[3..] when no field is filtered). ARGV[1] need: stop at
// that many events; ARGV[2] limit: examine at most that many entries;
// ARGV[3], ARGV[4]: the time range [lo, hi) in Unix ns ("": unbounded);
// ARGV[5]: the kinds of KEYS[3..], one letter each ("z" sorted set, "x"
// stream); ARGV[6..]: the segments to walk, newest first, three values
// each: the source ("s" the stream, "i" KEYS[3], "w" the skew index), the
// upper bound (exclusive, "(<id>", or "+") and the lower bound (inclusive,
// an id or "-").
//
// An entry passes when its id is in KEYS[4..] (KEYS[3..] for the skew
// index; ZSCORE or XRANGE id id) and its time ("t" of the stream index
// entry, or of the event) lies in the range (or is empty: the caller
// decides). Returns {last id examined or "", 1 if every segment was walked
// to its end, entries examined, {id, JSON, ...} of the events that passed,
// {source, id, ...} of index entries whose event is gone}.
var listSrc = `
local stream, skew = KEYS[1], KEYS[2]
local need, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local tlo, thi, kinds = ARGV[3], ARGV[4], ARGV[5]
local function before(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function inRange(t)
  return t == '' or ((tlo == '' or not before(t, tlo)) and (thi == '' or before(t, thi)))
end
local function field(f, name)
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
end
` + streamIDLua + `local function member(k, id)
  if string.sub(kinds, k - 2, k - 2) == 'z' then
    return redis.call('ZSCORE', KEYS[k], pad(id)) ~= false
  end
  return #redis.call('XRANGE', KEYS[k], id, id) > 0
end
local out, gone = {}, {}
local examined, found, last = 0, 0, ''
-- Index entries below the stream's oldest entry are of trimmed events.
local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
if not oldest then return {last, 1, examined, out, gone} end
for s = 6, #ARGV, 3 do
  local src, hi, lo = ARGV[s], ARGV[s + 1], ARGV[s + 2]
  if lo == '-' or idLess(lo, oldest[1]) then lo = oldest[1] end
  local key, first, zset = stream, #KEYS + 1, false
  if src == 'i' then
    key, first, zset = KEYS[3], 4, string.sub(kinds, 1, 1) == 'z'
  elseif src == 'w' then
    key, first = skew, 3
  end
  local zhi, zlo = '+', '[' .. pad(lo)
  if hi ~= '+' then zhi = '(' .. pad(string.sub(hi, 2)) end
  local chunk = math.min(math.max(need, 16), 256)
  while true do
    local n = math.min(chunk, limit - examined)
    local batch
    if zset then
      batch = redis.call('ZRANGE', key, zhi, zlo, 'BYLEX', 'REV', 'LIMIT', 0, n)
    else
      batch = redis.call('XREVRANGE', key, hi, lo, 'COUNT', n)
    end
    for _, entry in ipairs(batch) do
      local id, t
      if zset then
        id, t = unpad(entry), ''
      else
        local f = entry[2]
        id, t = entry[1], (f[1] == 't' and f[2]) or field(f, 't') or ''
      end
      examined = examined + 1
      if id then
        last = id
        local ok = inRange(t)
        for k = first, #KEYS do
          if not ok then break end
          ok = member(k, id)
        end
        if ok then
          local e
          if src == 's' then
            e = field(entry[2], 'e') or ''
          else
            local m = redis.call('XRANGE', stream, id, id)[1]
            if m then
              e = field(m[2], 'e') or ''
              if zset and not inRange(field(m[2], 't') or '') then e = nil end
            else
              gone[#gone + 1] = src
              gone[#gone + 1] = id
            end
          end
          if e then
            out[#out + 1] = id
            out[#out + 1] = e
            found = found + 1
            if found == need then return {last, 0, examined, out, gone} end
          end
        end
      end
      if examined == limit then return {last, 0, examined, out, gone} end
    end
    if #batch < n then break end
    if zset then zhi = '(' .. batch[#batch] else hi = '(' .. last end
    chunk = math.min(2 * chunk, 1024)
  end
end
return {last, 1, examined, out, gone}
`

var listScript = goredis.NewScript(listSrc)

// indexPrefix starts every index key of the stream.
func (s *Store) indexPrefix() string { return s.prefix + ":{audit}:idx:" }

// outcomeKey is the index key of outcome o.
func (s *Store) outcomeKey(o store.Outcome) string {
	return s.indexPrefix() + "o:" + strconv.Itoa(int(o))
}

// hashedIndexKey is the index key of a field's value, built in one
// allocation: the index prefix, name, ':' and the hex SHA-256 of value.
func (s *Store) hashedIndexKey(name, value string) string {
	sum := sha256.Sum256([]byte(value))
	var b strings.Builder
	b.Grow(len(s.idxPrefix) + len(name) + 1 + 2*len(sum))
	b.WriteString(s.idxPrefix)
	b.WriteString(name)
	b.WriteByte(':')
	const digits = "0123456789abcdef"
	for _, c := range sum {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
	return b.String()
}

// kinds returns the kind of each index key, one letter each: "z" for the
// sorted sets (subject, caller), "x" for the streams.
func (s *Store) kinds(keys []string) string {
	b := make([]byte, len(keys))
	for i, k := range keys {
		b[i] = 'x'
		if rest, ok := strings.CutPrefix(k, s.indexPrefix()); ok && (strings.HasPrefix(rest, "subject:") || strings.HasPrefix(rest, "caller:")) {
			b[i] = 'z'
		}
	}
	return string(b)
}

// skewKey is the index of the skewed events.
func (s *Store) skewKey() string { return s.indexPrefix() + "skew" }

// indexKeys appends the index keys of the given field values (empty ones
// and OutcomeUnspecified have none) to dst.
func (s *Store) indexKeys(dst []string, subject, caller, source, target string, o store.Outcome) []string {
	for i, v := range [...]string{subject, caller, source, target} {
		if v != "" {
			dst = append(dst, s.hashedIndexKey(indexFields[i], v))
		}
	}
	if o != store.OutcomeUnspecified {
		dst = append(dst, s.outcomeKey(o))
	}
	return dst
}

// indexFields are the hashed index fields, in indexKeys' order: the sorted
// sets (subject, caller) first, then the streams.
var indexFields = [...]string{"subject", "caller", "source", "target"}

// indexKeyArg is hashedIndexKey(indexFields[field], value) boxed as a
// script argument, from the Store's memo when the value was met lately.
func (s *Store) indexKeyArg(field uint8, value string) any {
	k := keyMemoKey{field: field, value: value}
	if a := s.keys.get(k); a != nil {
		return a
	}
	var a any = s.hashedIndexKey(indexFields[field], value)
	s.keys.put(k, a)
	return a
}

// Script arguments boxed once: appendScript's hash, and the kinds of an
// event's index keys by how many sorted sets (subject, caller: 0 to 2) and
// streams (source, target, outcome: 0 to 3) it has.
var (
	appendHashArg any = appendScript.Hash()
	kindsArgs         = func() (k [3][4]any) {
		const kinds = "zzxxx" // nz sorted sets, then nx streams
		for nz := range k {
			for nx := range k[nz] {
				k[nz][nx] = kinds[2-nz : 2+nx]
			}
		}
		return k
	}()
)

// appendArgs are the EVALSHA arguments of appendScript for ev (its JSON in
// body) after the command name and script: the number of keys, the keys
// (the stream, the index key registry, the skew index, then ev's index
// keys in indexKeys' order) and the arguments. Fixed keys and arguments are
// boxed once (New, or package variables), and the hashed keys of the field
// values met lately come boxed from the Store's memo (keyMemo): an append
// allocates the slice, and boxes only its body, its time (two numbers) and
// the retention's cutoff.
func (s *Store) appendArgs(ev *store.Event, body []byte) []any {
	return s.appendArgsTo(make([]any, 0, appendArgsCap), ev, body)
}

// appendArgsCap bounds appendArgs' length: the command, script and key
// count, three fixed keys, five index keys and seven arguments.
const appendArgsCap = 3 + 3 + 5 + 7

// appendArgsTo is appendArgs into a[:0] (Append's reused memory, appendBuf).
func (s *Store) appendArgsTo(a []any, ev *store.Event, body []byte) []any {
	a = append(a[:0], "evalsha", appendHashArg, 0, s.streamArg, s.idxKeysArg, s.skewArg)
	nz, nx := 0, 0
	for i, v := range [...]string{ev.Subject, ev.Caller, ev.SourceDomain, ev.TargetDomain} {
		if v != "" {
			a = append(a, s.indexKeyArg(uint8(i), v))
			if i < 2 {
				nz++
			} else {
				nx++
			}
		}
	}
	if o := ev.Outcome; o != store.OutcomeUnspecified {
		if o > 0 && int(o) < len(s.outcomeArgs) {
			a = append(a, s.outcomeArgs[o])
		} else {
			a = append(a, s.outcomeKey(o))
		}
		nx++
	}
	a[2] = len(a) - 3
	return append(a, s.maxLenArg, s.cutoff().ms, body, nanos(ev.Time), store.FloorMillis(ev.Time), s.upkeepEvery, kindsArgs[nz][nx])
}

// minNanos and maxNanos bound the times with an "t" field: Unix ns from
// 1970 until int64 overflows (2262).
var (
	minNanos = time.Unix(0, 0)
	maxNanos = time.Unix(0, 1<<63-1)
)

// padID is the sorted-set index member of id: both parts zero-padded to
// 20 digits, so that lexicographic order is id order.
func padID(id streamID) string {
	ms := strconv.FormatUint(id.ms, 10)
	seq := strconv.FormatUint(id.seq, 10)
	return strings.Repeat("0", 20-len(ms)) + ms + "-" + strings.Repeat("0", 20-len(seq)) + seq
}

// nanos is t's "t" field: Unix ns in decimal, or "" outside [1970, 2262].
func nanos(t time.Time) string {
	if t.Before(minNanos) || t.After(maxNanos) {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// evalAppend runs appendScript as a write (group commit or WAIT, see write):
// EVALSHA, and EVAL when Redis does not have the script (after a restart or
// failover; NOSCRIPT means nothing ran, so sending it again is safe). args
// are appendArgs'. settled reports that every command sent is done with
// args (written, and its reply read or failed): a command the group commit
// may still send after its caller gave up on it is not.
func (s *Store) evalAppend(ctx context.Context, args []any) (id string, settled bool, err error) {
	id, err = s.evalAppendCmd(ctx, args, &settled)
	return id, settled, err
}

func (s *Store) evalAppendCmd(ctx context.Context, args []any, settled *bool) (string, error) {
	cmd := goredis.NewCmd(ctx, args...)
	err := s.write(ctx, "append", s.stream, cmd)
	*settled = err == nil
	// With MinReplicasAck (no batcher: write ran the pipeline itself), the
	// WAIT after a NOSCRIPT counts no replica and write fails too, so the
	// reply is read whatever err says. With the batcher, a failed write may
	// leave cmd still queued: its reply must not be read then.
	if err == nil || s.batch == nil {
		if cerr := cmd.Err(); cerr != nil && strings.HasPrefix(cerr.Error(), "NOSCRIPT") {
			args = append([]any{"eval", appendSrc}, args[2:]...) // a copy: the first command keeps its own
			cmd = goredis.NewCmd(ctx, args...)
			err = s.write(ctx, "append", s.stream, cmd)
			*settled = err == nil
		}
	}
	if err != nil {
		return "", err
	}
	id, err := cmd.Text()
	if err != nil {
		return "", s.translate("append", err)
	}
	return id, nil
}

// walk is the position of one List call's walk (see the top of this file).
type walk struct {
	s    *Store
	f    store.Filter
	keys []string // the field indexes, the walked one first
	// upper: the walk continues strictly below this id (when hasUpper);
	// cutoff: the oldest id within the retention.
	upper    streamID
	hasUpper bool
	cutoff   streamID
	// With a time range (timed): the in-step ids are [stepLo, stepHi)
	// (stepHi unbounded unless hasStepHi), and tlo, thi the range in Unix
	// ns for listScript.
	timed          bool
	stepLo, stepHi streamID
	hasStepHi      bool
	tlo, thi       string
}

// newWalk prepares the walk of f from upper down, or reports that nothing
// can match (no walk).
func (s *Store) newWalk(ctx context.Context, f store.Filter, upper streamID, hasUpper bool) (*walk, error) {
	w := &walk{s: s, f: f, upper: upper, hasUpper: hasUpper, cutoff: s.cutoff()}
	w.keys = s.indexKeys(nil, f.Subject, f.Caller, f.SourceDomain, f.TargetDomain, f.Outcome)
	if len(w.keys) > 1 {
		// Walk the smallest index; an empty one means no event matches.
		pipe := s.client.Pipeline()
		lens := make([]*goredis.IntCmd, len(w.keys))
		for i, k := range w.keys {
			if s.kinds(w.keys[i:i+1]) == "z" {
				lens[i] = pipe.ZCard(ctx, k)
			} else {
				lens[i] = pipe.XLen(ctx, k)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, s.translate("list", err)
		}
		best := 0
		for i, c := range lens {
			if c.Val() == 0 {
				return nil, nil
			}
			if c.Val() < lens[best].Val() {
				best = i
			}
		}
		w.keys[0], w.keys[best] = w.keys[best], w.keys[0]
	}
	if !f.Start.IsZero() {
		w.timed = true
		w.stepLo = streamID{ms: uint64(max(store.FloorMillis(f.Start)-inStepMillis, 0))}
		w.tlo = nanos(f.Start) // "" before 1970 (everything passes) or after 2262 (the caller checks)
	}
	if !f.End.IsZero() {
		w.timed = true
		w.stepHi, w.hasStepHi = streamID{ms: uint64(max(store.CeilMillis(f.End)+inStepMillis, 0))}, true
		w.thi = nanos(f.End)
		if f.End.Before(minNanos) {
			w.thi = "0" // no "t" lies below
		}
	}
	return w, nil
}

// segments returns listScript's segment arguments from the walk's position.
func (w *walk) segments() []any {
	var segs []any
	add := func(src string, hi streamID, hasHi bool, lo streamID) {
		if hasHi && !lo.less(hi) {
			return // empty
		}
		h, l := "+", "-"
		if hasHi {
			h = "(" + hi.String()
		}
		if lo != (streamID{}) {
			l = lo.String()
		}
		segs = append(segs, src, h, l)
	}
	src := "s"
	if len(w.keys) > 0 {
		src = "i"
	}
	if !w.timed {
		add(src, w.upper, w.hasUpper, w.cutoff)
		return segs
	}
	hi, hasHi := w.upper, w.hasUpper
	if w.hasStepHi && (!hasHi || w.stepHi.less(hi)) {
		hi, hasHi = w.stepHi, true
	}
	lo := w.stepLo
	if lo.less(w.cutoff) {
		lo = w.cutoff
	}
	if hasHi && hi.less(lo) {
		lo = hi
	}
	// Newest first: skewed events above the in-step ids, the in-step ids
	// (skewed ones among them included: they are in the field indexes too),
	// skewed events below them.
	if hasHi {
		above := hi
		if above.less(w.cutoff) {
			above = w.cutoff
		}
		add("w", w.upper, w.hasUpper, above)
	}
	add(src, hi, hasHi, lo)
	add("w", lo, true, w.cutoff)
	return segs
}

// step implements store.PageStep with one call of listScript.
func (w *walk) step(ctx context.Context, need, limit int) ([]store.Event, int, bool, error) {
	s := w.s
	segs := w.segments()
	if len(segs) == 0 {
		return nil, 0, true, nil
	}
	keys := append([]string{s.stream, s.skewKey()}, w.keys...)
	args := append([]any{need, limit, w.tlo, w.thi, s.kinds(w.keys)}, segs...)
	reply, err := listScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		return nil, 0, false, s.translate("list", err)
	}
	last, exhausted, examined, entries, gone, err := parseListReply(reply)
	if err != nil {
		return nil, 0, false, fmt.Errorf("store/redis: list: %w", err)
	}
	var found []store.Event
	for i := 0; i+1 < len(entries); i += 2 {
		ev, err := decodeEvent("list", goredis.XMessage{ID: entries[i], Values: map[string]any{eventField: entries[i+1]}})
		if err != nil {
			return nil, 0, false, err
		}
		// The script checked the fields and the range in ns; events without
		// a "t" (times before 1970) are checked here.
		if w.f.Match(&ev) {
			found = append(found, ev)
		}
	}
	if last != "" {
		id, ok := parseStreamID(last)
		if !ok {
			return nil, 0, false, fmt.Errorf("store/redis: list: malformed id %q in an index", last)
		}
		w.upper, w.hasUpper = id, true
	}
	w.clean(ctx, gone)
	return found, examined, exhausted, nil
}

// parseListReply unpacks listScript's reply.
func parseListReply(r []any) (last string, exhausted bool, examined int, entries, gone []string, err error) {
	if len(r) != 5 {
		return "", false, 0, nil, nil, fmt.Errorf("list script replied %d values, want 5", len(r))
	}
	last, ok1 := r[0].(string)
	ex, ok2 := r[1].(int64)
	n, ok3 := r[2].(int64)
	if !ok1 || !ok2 || !ok3 {
		return "", false, 0, nil, nil, fmt.Errorf("list script reply %T %T %T", r[0], r[1], r[2])
	}
	strs := func(v any) ([]string, error) {
		a, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("list script reply: %T, want an array", v)
		}
		out := make([]string, len(a))
		for i, x := range a {
			if out[i], ok = x.(string); !ok {
				return nil, fmt.Errorf("list script reply: %T in an array, want a string", x)
			}
		}
		return out, nil
	}
	if entries, err = strs(r[3]); err != nil {
		return "", false, 0, nil, nil, err
	}
	if gone, err = strs(r[4]); err != nil {
		return "", false, 0, nil, nil, err
	}
	return last, ex == 1, int(n), entries, gone, nil
}

// clean removes the index entries of events that are gone (pairs of source
// and id from listScript) from every index the walk reads. It is best
// effort: an entry left behind is met, skipped and removed again by a later
// List.
func (w *walk) clean(ctx context.Context, gone []string) {
	if len(gone) == 0 {
		return
	}
	ids := make([]string, 0, len(gone)/2)
	members := make([]any, 0, len(gone)/2)
	for i := 1; i < len(gone); i += 2 {
		ids = append(ids, gone[i])
		if id, ok := parseStreamID(gone[i]); ok {
			members = append(members, padID(id))
		}
	}
	pipe := w.s.client.Pipeline()
	pipe.XDel(ctx, w.s.skewKey(), ids...)
	for i, k := range w.keys {
		if w.s.kinds(w.keys[i:i+1]) == "z" {
			pipe.ZRem(ctx, k, members...)
		} else {
			pipe.XDel(ctx, k, ids...)
		}
	}
	_, _ = pipe.Exec(ctx)
}
