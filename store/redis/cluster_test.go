package redis

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/chainbroker/chainbroker/internal/redistest"
	"github.com/chainbroker/chainbroker/store"
	"github.com/chainbroker/chainbroker/store/storetest"
)

// newClusterStore is a Store over a go-redis UniversalClient given every
// node of c, which makes it a ClusterClient: the configuration
// store.redis.addrs with several addresses produces.
func newClusterStore(t testing.TB, c *redistest.Cluster, opts Options) *Store {
	t.Helper()
	s, err := NewUniversal(&goredis.UniversalOptions{Addrs: c.Addrs()}, opts)
	if err != nil {
		t.Fatalf("NewUniversal: %v", err)
	}
	if _, ok := s.client.(*goredis.ClusterClient); !ok {
		t.Fatalf("NewUniversal with %d addresses made a %T, want a *goredis.ClusterClient", len(c.Addrs()), s.client)
	}
	return s
}

// The whole conformance suite against a real 3-master Redis Cluster.
func TestClusterConformance(t *testing.T) {
	c := redistest.NewCluster(t)
	var n atomic.Int64
	storetest.RunTests(t, func(t *testing.T) store.Store {
		return newClusterStore(t, c, Options{KeyPrefix: fmt.Sprintf("conformance%d", n.Add(1)), OpTimeout: conformanceOpTimeout})
	}, storetest.Options{DeleteEvent: xdel, NewWithRetention: func(t *testing.T, retention time.Duration, now func() time.Time) store.Store {
		s := newClusterStore(t, c, Options{KeyPrefix: fmt.Sprintf("conformance%d", n.Add(1)), AuditRetention: retention, OpTimeout: conformanceOpTimeout})
		s.now = now
		return s
	}, SetListBudget: func(s store.Store, budget, slice int) {
		s.(*Store).listBudget, s.(*Store).listSlice = budget, slice
	}})
}

// TestClusterKeySlots checks the key layout on a cluster: replay markers
// spread over every master (their hash tag is the digest), the audit stream
// of every prefix sits in the slot of "{audit}", and every operation works
// whichever node the client asks first (redirections are followed).
func TestClusterKeySlots(t *testing.T) {
	c := redistest.NewCluster(t)
	ctx := t.Context()
	s := newClusterStore(t, c, Options{KeyPrefix: "slots"})
	t.Cleanup(func() { _ = s.Close() })

	const markers = 60
	until := time.Now().Add(time.Hour)
	for i := range markers {
		if err := s.Mark(ctx, store.ReplayKey{Target: "b", Issuer: "a", JTI: fmt.Sprint("jti-", i)}, until); err != nil {
			t.Fatalf("Mark %d: %v", i, err)
		}
	}
	var ids []string
	for i := range 5 {
		id, err := s.Append(ctx, &store.Event{Subject: fmt.Sprint("s", i)})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		ids = append(ids, id)
	}

	streamNode := c.NodeFor(t, s.stream)
	if other := c.NodeFor(t, "another-prefix:{audit}:events"); other != streamNode {
		t.Errorf("audit streams of two prefixes are on different nodes (%s, %s): the hash tag is not {audit}", streamNode.Addr(), other.Addr())
	}
	perNode := map[string]int{}
	for _, node := range c.Nodes {
		rc := goredis.NewClient(&goredis.Options{Addr: node.Addr()})
		keys, err := rc.Keys(ctx, "slots:*").Result()
		rc.Close()
		if err != nil {
			t.Fatalf("KEYS on %s: %v", node.Addr(), err)
		}
		for _, k := range keys {
			switch {
			case k == s.stream, strings.HasPrefix(k, "slots:{audit}:idx"):
				if node != streamNode {
					t.Errorf("stream on %s, CLUSTER KEYSLOT says %s", node.Addr(), streamNode.Addr())
				}
			case strings.HasPrefix(k, "slots:replay:{") && strings.HasSuffix(k, "}"):
				perNode[node.Addr()]++
			default:
				t.Errorf("unexpected key %q on %s", k, node.Addr())
			}
		}
	}
	total := 0
	for _, node := range c.Nodes {
		// 60 uniformly hashed markers over 3 nodes: an empty node has
		// probability 3*(2/3)^60, about 1e-10.
		if perNode[node.Addr()] == 0 {
			t.Errorf("no replay marker on node %s: %v", node.Addr(), perNode)
		}
		total += perNode[node.Addr()]
	}
	if total != markers {
		t.Errorf("%d replay markers in the cluster, want %d", total, markers)
	}
	t.Logf("replay markers per node: %v; audit stream on %s", perNode, streamNode.Addr())

	// A client that starts from each single node still reaches every slot.
	for _, node := range c.Nodes {
		one, err := NewUniversal(&goredis.UniversalOptions{Addrs: []string{node.Addr()}, IsClusterMode: true}, Options{KeyPrefix: "slots"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range markers {
			if err := one.Mark(ctx, store.ReplayKey{Target: "b", Issuer: "a", JTI: fmt.Sprint("jti-", i)}, until); !errors.Is(err, store.ErrReplayed) {
				t.Fatalf("via %s: Mark %d again: %v, want ErrReplayed", node.Addr(), i, err)
			}
		}
		page, _, err := one.List(ctx, store.Filter{}, 10, "")
		if err != nil || len(page) != len(ids) || page[0].ID != ids[len(ids)-1] {
			t.Fatalf("via %s: List = %d events, %v", node.Addr(), len(page), err)
		}
		_ = one.Close()
	}
}

// TestClusterNodeDown kills the master that holds the audit stream: every
// operation on its slots fails with a retryable ErrUnavailable within the
// operation timeout (never hangs, never a go-redis error), Ping too once the
// cluster notices; when the node is back (it rejoins from its nodes.conf)
// the same Store works again without being rebuilt.
func TestClusterNodeDown(t *testing.T) {
	c := redistest.NewCluster(t)
	ctx := t.Context()
	s := newClusterStore(t, c, Options{KeyPrefix: "down", OpTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Append(ctx, &store.Event{Subject: "before"}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	node := c.NodeFor(t, s.stream)
	node.Stop()

	start := time.Now()
	_, err := s.Append(ctx, &store.Event{Subject: "during"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Append with the stream's node down: %v, want ErrUnavailable", err)
	}
	var rerr goredis.Error
	if errors.As(err, &rerr) {
		t.Errorf("error exposes a go-redis error: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Append took %v with the node down; OpTimeout is 500ms", d)
	}
	if _, _, err := s.List(ctx, store.Filter{}, 0, ""); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("List with the stream's node down: %v, want ErrUnavailable", err)
	}

	node.Start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.Append(ctx, &store.Event{Subject: "after"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append still failing 20s after the node restarted: %v\n%s", err, node.Log(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("store usable again %v after the node was killed", time.Since(start))
	if err := s.Mark(ctx, store.ReplayKey{Target: "b", Issuer: "a", JTI: "after"}, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Mark after recovery: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after recovery: %v", err)
	}
}

// TestClusterIndexTrim runs the append script's trimming and stale-key sweep
// on a cluster: the keys it removes without naming them (the registry's)
// share the stream's slot, which Redis Cluster requires.
func TestClusterIndexTrim(t *testing.T) {
	c := redistest.NewCluster(t)
	ctx := t.Context()
	s := newClusterStore(t, c, Options{KeyPrefix: "ctrim", AuditMaxLen: 10})
	s.upkeepEvery = 1 // trim and sweep on every append
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Append(ctx, &store.Event{Subject: "once"}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	for i := range 300 {
		if _, err := s.Append(ctx, &store.Event{Subject: fmt.Sprint("s", i%3)}); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	if n := s.client.Exists(ctx, s.indexKeys(nil, "once", "", "", "", 0)[0]).Val(); n != 0 {
		t.Errorf("stale index key still exists")
	}
	// The stream keeps at least 10 events, so s1 at least 3.
	page, _, err := s.List(ctx, store.Filter{Subject: "s1"}, 3, "")
	if err != nil || len(page) != 3 {
		t.Fatalf("List = %d events, %v", len(page), err)
	}
}
