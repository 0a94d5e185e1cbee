package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/config"
	pb "github.com/chainbroker/chainbroker/gen/chainbroker/v1"
	"github.com/chainbroker/chainbroker/internal/apptest"
	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/sandbox"
)

// No acknowledged chain without its audit event. A broker over a
// redis-server whose AOF is fsynced on every write (appendfsync always):
//  1. acknowledges N = 20 chains;
//  2. keeps chaining from four workers while Redis is killed (SIGKILL) and
//     restarted on the same directory, reloading the AOF; chains fail
//     UNAVAILABLE while it is down and succeed again, without a broker
//     restart, once it is back;
//  3. is killed with SIGKILL, and a new process starts on the same
//     configuration.
//
// The new process's audit trail holds the event of every chain acknowledged
// in 1 and 2, exactly once: by id, and by subject token hash (each chain
// used a subject token of its own, so no token has two success events).
// While Redis restarts, chains fail UNAVAILABLE and nothing else: a write
// whose reply was lost in the kill must not be re-sent (a second XADD, or a
// SET NX finding its own marker: a false ASSERTION_REPLAYED).
// TestRedisReplyLost provokes that case deterministically.
func TestNoAcknowledgedChainLost(t *testing.T) {
	const n = 20
	srv := redistest.New(t, redistest.Options{AOF: true, Fsync: "always"})
	sb := apptest.StartSandbox(t, sandbox.Options{})
	b := startBroker(t, "broker", brokerConfig(sb, cfgOptions{redis: &config.Redis{URL: srv.URL(), OpTimeout: config.Duration(500 * time.Millisecond)}}))

	var (
		mu     sync.Mutex
		acked  = map[string]string{} // audit id -> user
		failed = map[string]int{}
	)
	run := func(i int) error {
		user := []string{sandbox.Alice, sandbox.Bob}[i%2]
		resp, err := b.chainOnce(t, sb, user)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed[outcome(err)]++
			return err
		}
		if _, dup := acked[resp.AuditId]; dup {
			return fmt.Errorf("audit id %s returned twice", resp.AuditId)
		}
		acked[resp.AuditId] = user
		return nil
	}

	// 1. N chains.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if err := run(i); err != nil {
				errs <- fmt.Errorf("chain %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// 2. Redis killed and restarted under load.
	stop := make(chan struct{})
	var unexpected []error
	for w := range 4 {
		wg.Go(func() {
			for i := w; ; i += 4 {
				select {
				case <-stop:
					return
				default:
				}
				if err := run(i); err != nil {
					if !isUnavailable(err) {
						mu.Lock()
						unexpected = append(unexpected, err)
						mu.Unlock()
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	before := len(snapshot(&mu, acked))
	restarted := time.Now()
	srv.Restart()
	// The running broker recovers by itself (bounded).
	deadline := time.Now().Add(15 * time.Second)
	for {
		time.Sleep(100 * time.Millisecond)
		if len(snapshot(&mu, acked)) > before+20 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("chains did not succeed again within 15s of the Redis restart: %v", failed)
		}
	}
	recovered := time.Since(restarted)
	close(stop)
	wg.Wait()
	for _, err := range unexpected {
		t.Errorf("a chain failed with something other than UNAVAILABLE while Redis restarted: %v", err)
	}
	t.Logf("chains succeed again %v after the Redis restart began; failures meanwhile: %v", recovered.Round(time.Millisecond), failed)

	// 3. The broker crashes and a new process takes over.
	b.kill()
	b.restart()

	events := b.listAll(t, &pb.ListAuditEventsRequest{Caller: callerName})
	seen := map[string]int{}
	hashes := map[string]int{}
	for _, ev := range events {
		seen[ev.Id]++
		if ev.Outcome == pb.Outcome_OUTCOME_SUCCESS {
			hashes[ev.SubjectTokenHash]++
		}
	}
	for id, user := range acked {
		switch seen[id] {
		case 1:
		case 0:
			t.Errorf("acknowledged chain (%s) lost its audit event %s", user, id)
		default:
			t.Errorf("audit event %s listed %d times", id, seen[id])
		}
	}
	for h, c := range hashes {
		if c != 1 {
			var dup []string
			for _, ev := range events {
				if ev.SubjectTokenHash == h {
					_, ackedID := acked[ev.Id]
					dup = append(dup, fmt.Sprintf("%s (time %s, acknowledged %v)", ev.Id, ev.Time.AsTime().Format(time.StampMicro), ackedID))
				}
			}
			t.Errorf("subject token %.12s... has %d success events, want 1: %v", h, c, dup)
		}
	}
	t.Logf("%d acknowledged chains, %d audit events after the Redis restart and the broker's SIGKILL", len(acked), len(events))
}

func snapshot(mu *sync.Mutex, m map[string]string) map[string]string {
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
