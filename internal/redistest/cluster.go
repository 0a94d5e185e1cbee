package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// clusterTimeout bounds the creation of a cluster: redis-cli --cluster create
// and the wait for every node to report cluster_state:ok.
const clusterTimeout = 30 * time.Second

// ClusterMasters is how many masters NewCluster starts: the smallest cluster
// redis-cli accepts.
const ClusterMasters = 3

// Cluster is a Redis Cluster of ClusterMasters masters without replicas, each
// a Server in cluster mode on loopback, with the 16384 slots spread over them.
type Cluster struct {
	// Nodes are the masters, in the order given to redis-cli --cluster create.
	Nodes []*Server
}

// NewCluster starts ClusterMasters redis-servers with --cluster-enabled yes
// (each with its own cluster bus port, chosen free, and nodes-<port>.conf in
// its directory), joins them with `redis-cli --cluster create ...
// --cluster-replicas 0 --cluster-yes`, and waits until every node reports
// cluster_state:ok, knows every other node and sees all slots assigned. It
// fails t if that takes longer than 30 s. The nodes stop when t ends.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := RequireCLI(t)
	c := &Cluster{}
	for range ClusterMasters {
		opts := Options{argsFor: func(dir string, port int) ([]string, error) {
			busPort, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", dir,
				"--save", "",
				"--appendonly", "no",
				"--daemonize", "no",
				"--logfile", "",
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes-" + strconv.Itoa(port) + ".conf",
				"--cluster-port", strconv.Itoa(busPort),
				"--cluster-node-timeout", "2000",
			}, nil
		}}
		c.Nodes = append(c.Nodes, newServer(t, opts, t.TempDir()))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, tail(out, 4000))
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: cluster on %v not ready: %v\nnode logs:\n%s", c.Addrs(), err, c.logs())
	}
	return c
}

// Addrs returns the nodes' "127.0.0.1:port" addresses: pass them all as
// go-redis UniversalOptions.Addrs (or ClusterOptions.Addrs).
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// NodeFor returns the node serving key's hash slot, asking the cluster.
func (c *Cluster) NodeFor(t testing.TB, key string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc := goredis.NewClient(&goredis.Options{Addr: c.Nodes[0].Addr()})
	defer rc.Close()
	slot, err := rc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER KEYSLOT %q: %v", key, err)
	}
	//lint:ignore SA1019 CLUSTER SLOTS answers on every Redis version; CLUSTER SHARDS needs 7.0
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER SLOTS: %v", err)
	}
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
			for _, n := range c.Nodes {
				if n.Addr() == r.Nodes[0].Addr {
					return n
				}
			}
		}
	}
	t.Fatalf("redistest: no node serves slot %d of %q", slot, key)
	return nil
}

// waitOK polls CLUSTER INFO on every node until each reports
// cluster_state:ok, cluster_slots_ok:16384 and cluster_known_nodes equal to
// the number of nodes, or ctx ends.
func (c *Cluster) waitOK(ctx context.Context) error {
	want := map[string]string{
		"cluster_state":       "ok",
		"cluster_slots_ok":    "16384",
		"cluster_known_nodes": strconv.Itoa(len(c.Nodes)),
	}
	return waitFor(ctx, func() error {
		for _, n := range c.Nodes {
			info, err := clusterInfo(ctx, n.Addr())
			if err != nil {
				return fmt.Errorf("%s: %w", n.Addr(), err)
			}
			for k, v := range want {
				if info[k] != v {
					return fmt.Errorf("%s: %s:%s, want %s", n.Addr(), k, info[k], v)
				}
			}
		}
		return nil
	})
}

func clusterInfo(ctx context.Context, addr string) (map[string]string, error) {
	rc := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rc.Close()
	text, err := rc.ClusterInfo(ctx).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// parseInfo parses "key:value" lines (INFO, CLUSTER INFO).
func parseInfo(text string) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(text) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

func (c *Cluster) logs() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "--- %s (%s)\n%s\n", n.Addr(), filepath.Base(n.Dir()), n.Log(1500))
	}
	return b.String()
}
