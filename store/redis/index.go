package redis

// Secondary indexes of the audit stream.
//
// For each filter field value (subject, caller, source domain, target
// domain, outcome) a sorted set holds the ids of the events carrying it:
//
//	P:{audit}:idx:<field>:<hex sha256(value)>   (outcome: P:{audit}:idx:o:<n>)
//	P:{audit}:idxkeys                           every index key, scored by its last write (ms)
//
// Every member has score 0 and is the event's stream id with both parts
// zero-padded to 20 digits ("<ms>-<seq>"), so lexicographic order is id
// order: ZRANGE BYLEX REV walks an index newest first and resumes exactly
// after a page token, like XREVRANGE on the stream. Values are hashed so
// that key names are bounded whatever the value.
//
// Writes: one Lua script (appendScript) trims the stream (MINID ~ for the
// retention), XADDs the event (MAXLEN ~), and adds its id to each of its
// index keys; Redis runs a script atomically, and replicates it and writes
// it to the AOF as one MULTI/EXEC, so after a crash or failover an event is
// never missing from its indexes. Every key carries the {audit} hash tag, so
// the script touches one slot, on a Cluster too.
//
// Trimming, in the same script, bounded per append:
//   - each index key written drops its members below the stream's oldest
//     entry (ZREMRANGEBYLEX), so a busy index shrinks with the stream;
//   - up to 8 (staleSweep) index keys whose last write is older than the stream's
//     oldest entry (every member points at a trimmed event) are unlinked;
//     P:{audit}:idxkeys finds them without enumerating keys.
//
// An index key written rarely keeps members of trimmed events until its next
// write (or its sweep); a List that meets such a member (or one of an event
// removed by XDEL) skips it and removes it (ZREM), so the answer never holds
// a missing event.
//
// A filtered List walks the smallest of the filter's index keys (ZCARD, one
// round trip) in batches, fetches the batch's events in one pipeline of
// XRANGE id id, checks the whole filter on each (the other fields and the
// exact time range), and stops once it has a full page and one more match,
// the index is exhausted, or it has examined Store.maxScan entries (then it
// returns what it found with a token that resumes exactly there). With a
// single field filtered, every examined entry matches except missing events
// and those appended within TimeSkew outside a time range, so pages are
// full; with several fields, the walk examines the smallest index's entries,
// and a page can be short (never past the bound) only when few of them
// match the other fields.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/store"
)

// staleSweep (8, written in appendSrc) bounds the stale index keys one
// append unlinks.

// appendScript: KEYS[1] stream, KEYS[2] index key registry, KEYS[3..] the
// event's index keys; ARGV[1] MAXLEN, ARGV[2] MINID ("0": no retention),
// ARGV[3] the JSON event. Returns the new id.
const appendSrc = `
local stream, reg = KEYS[1], KEYS[2]
local function pad(id)
  local d = string.find(id, '-', 1, true)
  local ms, seq = string.sub(id, 1, d - 1), string.sub(id, d + 1)
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq, ms
end
if ARGV[2] ~= '0' then
  redis.call('XTRIM', stream, 'MINID', '~', ARGV[2], 'LIMIT', 10000)
end
local id = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
local member, ms = pad(id)
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local floor, floorms
if first then floor, floorms = pad(first[1]) end
local regArgs = {}
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], 0, member)
  if floor then redis.call('ZREMRANGEBYLEX', KEYS[i], '-', '(' .. floor) end
  regArgs[#regArgs + 1] = ms
  regArgs[#regArgs + 1] = KEYS[i]
end
if #regArgs > 0 then redis.call('ZADD', reg, unpack(regArgs)) end
if floorms then
  local stale = redis.call('ZRANGEBYSCORE', reg, '-inf', '(' .. floorms, 'LIMIT', 0, 8) -- staleSweep
  for _, k in ipairs(stale) do
    redis.call('UNLINK', k)
    redis.call('ZREM', reg, k)
  end
end
return id
`

var appendScript = goredis.NewScript(appendSrc)

// indexPrefix starts every index key of the stream.
func (s *Store) indexPrefix() string { return s.prefix + ":{audit}:idx:" }

// indexKeys appends the index keys of the given field values (empty ones
// and OutcomeUnspecified have none) to dst.
func (s *Store) indexKeys(dst []string, subject, caller, source, target string, o store.Outcome) []string {
	p := s.indexPrefix()
	for _, f := range [...]struct{ name, value string }{{"subject", subject}, {"caller", caller}, {"source", source}, {"target", target}} {
		if f.value != "" {
			sum := sha256.Sum256([]byte(f.value))
			dst = append(dst, p+f.name+":"+hex.EncodeToString(sum[:]))
		}
	}
	if o != store.OutcomeUnspecified {
		dst = append(dst, p+"o:"+strconv.Itoa(int(o)))
	}
	return dst
}

// padID is the index member of id: both parts zero-padded to 20 digits.
func padID(id streamID) string {
	var b [41]byte
	ms := strconv.FormatUint(id.ms, 10)
	seq := strconv.FormatUint(id.seq, 10)
	n := copy(b[:], strings.Repeat("0", 20-len(ms)))
	n += copy(b[n:], ms)
	b[n] = '-'
	n++
	n += copy(b[n:], strings.Repeat("0", 20-len(seq)))
	copy(b[n:], seq)
	return string(b[:])
}

// unpadID parses an index member back into a stream id.
func unpadID(m string) (streamID, bool) {
	msPart, seqPart, ok := strings.Cut(m, "-")
	if !ok {
		return streamID{}, false
	}
	return parseStreamID(trimZeros(msPart) + "-" + trimZeros(seqPart))
}

func trimZeros(s string) string {
	if t := strings.TrimLeft(s, "0"); t != "" {
		return t
	}
	return "0"
}

// evalAppend runs appendScript as a write (group commit or WAIT, see write):
// EVALSHA, and EVAL when Redis does not have the script (after a restart or
// failover; NOSCRIPT means nothing ran, so sending it again is safe).
func (s *Store) evalAppend(ctx context.Context, keys []string, args ...any) (string, error) {
	run := func(cmdName, script string) *goredis.Cmd {
		a := make([]any, 0, 3+len(keys)+len(args))
		a = append(a, cmdName, script, len(keys))
		for _, k := range keys {
			a = append(a, k)
		}
		a = append(a, args...)
		return goredis.NewCmd(ctx, a...)
	}
	cmd := run("evalsha", appendScript.Hash())
	err := s.write(ctx, "append", s.stream, cmd)
	// With MinReplicasAck (no batcher: write ran the pipeline itself), the
	// WAIT after a NOSCRIPT counts no replica and write fails too, so the
	// reply is read whatever err says. With the batcher, a failed write may
	// leave cmd still queued: its reply must not be read then.
	if err == nil || s.batch == nil {
		if cerr := cmd.Err(); cerr != nil && strings.HasPrefix(cerr.Error(), "NOSCRIPT") {
			cmd = run("eval", appendSrc)
			err = s.write(ctx, "append", s.stream, cmd)
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

// listIndexed is List for a filter with at least one indexed field (keys):
// see the comment at the top of this file. upper (exclusive, when hasUpper)
// and lower (inclusive) bound the ids.
func (s *Store) listIndexed(ctx context.Context, f store.Filter, keys []string, pageSize int, upper streamID, hasUpper bool, lower streamID) ([]store.Event, string, error) {
	key := keys[0]
	if len(keys) > 1 {
		pipe := s.client.Pipeline()
		cards := make([]*goredis.IntCmd, len(keys))
		for i, k := range keys {
			cards[i] = pipe.ZCard(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", s.translate("list", err)
		}
		best := int64(-1)
		for i, c := range cards {
			if n := c.Val(); best < 0 || n < best {
				key, best = keys[i], n
			}
		}
		if best == 0 {
			return nil, "", nil
		}
	}
	hi := "+"
	if hasUpper {
		hi = "(" + padID(upper)
	}
	lo := "-"
	if lower != (streamID{}) {
		lo = "[" + padID(lower)
	}
	batch := min(pageSize+1, s.maxScan)
	var (
		out      []store.Event
		examined int
	)
	for {
		count := min(batch, s.maxScan-examined)
		members, err := s.client.Do(ctx, "zrange", key, hi, lo, "bylex", "rev", "limit", 0, count).StringSlice()
		if err != nil {
			return nil, "", s.translate("list", err)
		}
		examined += len(members)
		exhausted := len(members) < count
		pipe := s.client.Pipeline()
		ids := make([]string, len(members))
		fetches := make([]*goredis.XMessageSliceCmd, len(members))
		for i, m := range members {
			id, ok := unpadID(m)
			if !ok {
				continue // not ours: skip, leave it
			}
			ids[i] = id.String()
			fetches[i] = pipe.XRangeN(ctx, s.stream, ids[i], ids[i], 1)
		}
		if len(members) > 0 {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, "", s.translate("list", err)
			}
		}
		var gone []any
		for i, fc := range fetches {
			if fc == nil {
				continue
			}
			msgs := fc.Val()
			if len(msgs) == 0 {
				// Trimmed or deleted: its index entry goes too.
				gone = append(gone, members[i])
				continue
			}
			ev, err := decodeEvent("list", msgs[0])
			if err != nil {
				return nil, "", err
			}
			if !f.Match(&ev) {
				continue
			}
			if len(out) == pageSize {
				s.cleanIndex(ctx, key, gone)
				return out, out[len(out)-1].ID, nil
			}
			out = append(out, ev)
		}
		s.cleanIndex(ctx, key, gone)
		if exhausted {
			return out, "", nil
		}
		if examined >= s.maxScan {
			// Everything down to the last member has been examined.
			last, _ := unpadID(members[len(members)-1])
			return out, last.String(), nil
		}
		hi = "(" + members[len(members)-1]
		// Few matches so far: fetch more per round trip.
		batch = min(2*batch, 2*store.MaxPageSize)
	}
}

// cleanIndex removes index members whose event is gone. It is best effort:
// a member left behind is met, skipped and removed again by a later List.
func (s *Store) cleanIndex(ctx context.Context, key string, members []any) {
	if len(members) == 0 {
		return
	}
	_ = s.client.ZRem(ctx, key, members...).Err()
}
