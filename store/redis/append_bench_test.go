package redis

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/redistest"
)

// cpuMicros returns the CPU time redis-server has used (user plus system),
// in microseconds, from INFO cpu.
func cpuMicros(b *testing.B, c goredis.UniversalClient) float64 {
	b.Helper()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\r\n") {
		for _, k := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("%s%q: %v", k, v, err)
				}
				total += f * 1e6
			}
		}
	}
	return total
}

// commandStats returns Redis's cumulative CPU time (usec) and call count
// of one command, from INFO commandstats.
func commandStats(b *testing.B, c goredis.UniversalClient, name string) (usec, calls int64) {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatalf("INFO commandstats: %v", err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_"+name+":")
		if !ok {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "usec":
				usec = n
			case "calls":
				calls = n
			}
		}
	}
	return usec, calls
}

// BenchmarkAppendRedisCPU measures what one audit append costs Redis's
// single thread (INFO commandstats, usec per call), with the events of
// BenchmarkAuditList appended from 8 goroutines through the group
// commit: the store's append script (stream, indexes, trims) against a
// plain XADD of the same JSON, the write it replaced. The reported
// redis-µs/op is Redis's time, not the benchmark's.
func BenchmarkAppendRedisCPU(b *testing.B) {
	srv := redistest.New(b, redistest.Options{})
	for _, tc := range []struct {
		name, cmd string
		retention time.Duration
	}{
		{"script", "evalsha", 0},
		{"script+retention", "evalsha", time.Hour},
		{"xadd", "xadd", 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newStore(b, srv, Options{KeyPrefix: "appendcpu-" + tc.name, AuditMaxLen: 10_000, AuditRetention: tc.retention})
			base := time.Now()
			// Warm up: the stream at its bound, so that every append trims.
			appendEvents(b, s, tc.cmd, 0, 12_000, base)
			usec0, calls0 := commandStats(b, s.client, tc.cmd)
			cpu0 := cpuMicros(b, s.client)
			n := 0
			for b.Loop() {
				appendEvents(b, s, tc.cmd, 12_000+n*1000, 1000, base)
				n++
			}
			cpu1 := cpuMicros(b, s.client)
			usec1, calls1 := commandStats(b, s.client, tc.cmd)
			if calls1-calls0 != int64(n*1000) {
				b.Fatalf("%s calls = %d, want %d", tc.cmd, calls1-calls0, n*1000)
			}
			b.ReportMetric(float64(usec1-usec0)/float64(calls1-calls0), "cmd-µs/append")
			b.ReportMetric((cpu1-cpu0)/float64(calls1-calls0), "redis-cpu-µs/append")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// appendEvents appends benchmark events from..from+n from 8 goroutines:
// through the store (cmd "evalsha") or as a plain XADD of the same JSON.
func appendEvents(b *testing.B, s *Store, cmd string, from, n int, base time.Time) {
	b.Helper()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := from + w; i < from+n; i += workers {
				e := benchEvent(i, base)
				e.Time = time.Now()
				var err error
				if cmd == "xadd" {
					// Through the group commit, like the store's writes.
					x := goredis.NewStringCmd(ctx, "xadd", s.stream, "maxlen", "~", s.maxLen, "*", eventField, string(e.AppendJSON(nil)))
					if err = s.write(ctx, "append", s.stream, x); err == nil {
						err = x.Err()
					}
				} else {
					_, err = s.Append(ctx, &e)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("append: %v", err)
	}
}
