package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// MasterName is the name under which NewSentinel's Sentinels monitor the
// master: go-redis UniversalOptions.MasterName, store.redis.master_name.
const MasterName = "mymaster"

// Sentinel timings, kept short for tests (production defaults are 30 s and
// 3 min).
const (
	// SentinelDownAfter is how long the master must be unreachable before a
	// Sentinel considers it down (sentinel down-after-milliseconds).
	SentinelDownAfter = time.Second
	// SentinelFailoverTimeout is sentinel failover-timeout.
	SentinelFailoverTimeout = 5 * time.Second
	// sentinelTimeout bounds each wait of this file (set-up, failover).
	sentinelTimeout = 30 * time.Second
)

// SentinelOptions configures NewSentinel.
type SentinelOptions struct {
	// Sentinels is the number of Sentinel processes: 1 (the default, quorum
	// 1) or 3 (quorum 2).
	Sentinels int
	// AOF, Fsync: as Options, for the master and the replica.
	AOF   bool
	Fsync string
}

// Sentinel is a Redis master, one replica of it, and the Sentinels that
// monitor them under MasterName, all on loopback.
type Sentinel struct {
	t testing.TB
	// Master and Replica are the data servers as started; after a failover
	// their roles are swapped (use MasterAddr and Server).
	Master, Replica *Server
	// Sentinels are the redis-server --sentinel processes.
	Sentinels []*Server
}

// NewSentinel starts a master, a replica (--replicaof the master, waiting for
// master_link_status:up), then the Sentinels, each with a generated
// configuration:
//
//	sentinel monitor mymaster 127.0.0.1 <master port> <quorum>
//	sentinel down-after-milliseconds mymaster 1000
//	sentinel failover-timeout mymaster 5000
//
// and waits until every Sentinel sees the master up with the replica
// connected (and, with 3 Sentinels, knows the other two). It fails t if that
// takes longer than 30 s. Everything stops when t ends.
func NewSentinel(t testing.TB, opts SentinelOptions) *Sentinel {
	t.Helper()
	n := opts.Sentinels
	switch n {
	case 0:
		n = 1
	case 1, 3:
	default:
		t.Fatalf("redistest: SentinelOptions.Sentinels = %d, want 1 or 3", n)
	}
	quorum := n/2 + 1
	// Replicas sync at once: by default a master waits 5 s for more
	// replicas before a diskless full sync.
	data := Options{AOF: opts.AOF, Fsync: opts.Fsync, Args: []string{"--repl-diskless-sync-delay", "0"}}
	s := &Sentinel{t: t}
	s.Master = New(t, data)
	replica := data
	replica.Args = slices.Concat(data.Args, []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port())})
	s.Replica = New(t, replica)

	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	if err := waitFor(ctx, func() error {
		info, err := infoOf(ctx, s.Replica.Addr(), "replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: master_link_status:%s", s.Replica.Addr(), info["master_link_status"])
		}
		return nil
	}); err != nil {
		t.Fatalf("redistest: replica did not sync: %v\nreplica log:\n%s", err, s.Replica.Log(2000))
	}

	for range n {
		masterPort := s.Master.Port()
		opts := Options{argsFor: func(dir string, port int) ([]string, error) {
			conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
			if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
				// Sentinel rewrites its file with what it learns; a restart
				// keeps it.
				text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %q\ndaemonize no\nlogfile \"\"\n"+
					"sentinel monitor %s 127.0.0.1 %d %d\n"+
					"sentinel down-after-milliseconds %s %d\n"+
					"sentinel failover-timeout %s %d\n"+
					"sentinel parallel-syncs %s 1\n",
					port, dir, MasterName, masterPort, quorum,
					MasterName, SentinelDownAfter.Milliseconds(),
					MasterName, SentinelFailoverTimeout.Milliseconds(), MasterName)
				if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
					return nil, err
				}
			}
			return []string{conf, "--sentinel"}, nil
		}}
		s.Sentinels = append(s.Sentinels, newServer(t, opts, t.TempDir()))
	}
	for _, sn := range s.Sentinels {
		if err := waitFor(ctx, func() error { return sentinelSees(ctx, sn.Addr(), s.Master.Addr(), n-1) }); err != nil {
			t.Fatalf("redistest: sentinel %s not ready: %v\nlog:\n%s", sn.Addr(), err, sn.Log(2000))
		}
	}
	return s
}

// Addrs returns the Sentinels' addresses: go-redis UniversalOptions.Addrs
// (with MasterName), store.redis.addrs (with master_name).
func (s *Sentinel) Addrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr()
	}
	return addrs
}

// MasterAddr returns the master's address as the first running Sentinel
// reports it.
func (s *Sentinel) MasterAddr() string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := s.masterAddr(ctx)
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	return addr
}

func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var lastErr error = errors.New("no sentinel running")
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		sc := goredis.NewSentinelClient(&goredis.Options{Addr: sn.Addr(), MaxRetries: -1})
		hp, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		lastErr = fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME on %s: %v %v", sn.Addr(), hp, err)
	}
	return "", lastErr
}

// Server returns the data server (Master or Replica as started) listening on
// addr, or nil.
func (s *Sentinel) Server(addr string) *Server {
	for _, srv := range []*Server{s.Master, s.Replica} {
		if srv.Addr() == addr {
			return srv
		}
	}
	return nil
}

// Failover asks the first running Sentinel for a forced failover (SENTINEL
// FAILOVER mymaster, which needs no agreement and promotes the replica while
// the old master is still up) and waits, as WaitNewMaster, for the replica to
// be the master. It returns the new master's address.
func (s *Sentinel) Failover() string {
	s.t.Helper()
	old := s.MasterAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error = errors.New("no sentinel running")
	for _, sn := range s.Sentinels {
		if sn.Running() {
			sc := goredis.NewSentinelClient(&goredis.Options{Addr: sn.Addr(), MaxRetries: -1})
			err = sc.Failover(ctx, MasterName).Err()
			sc.Close()
			break
		}
	}
	if err != nil {
		s.t.Fatalf("redistest: SENTINEL FAILOVER %s: %v", MasterName, err)
	}
	return s.WaitNewMaster(old)
}

// WaitNewMaster waits until the Sentinels name a master other than old and
// that server answers INFO with role:master; it fails the test after 30 s.
// Use it after stopping the master (Sentinel needs SentinelDownAfter to notice,
// then elects itself and promotes the replica).
func (s *Sentinel) WaitNewMaster(old string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	var addr string
	err := waitFor(ctx, func() error {
		a, err := s.masterAddr(ctx)
		if err != nil {
			return err
		}
		if a == old {
			return fmt.Errorf("sentinel still names %s", old)
		}
		info, err := infoOf(ctx, a, "replication")
		if err != nil {
			return fmt.Errorf("new master %s: %w", a, err)
		}
		if info["role"] != "master" {
			return fmt.Errorf("new master %s: role:%s", a, info["role"])
		}
		addr = a
		return nil
	})
	if err != nil {
		var logs strings.Builder
		for _, sn := range s.Sentinels {
			fmt.Fprintf(&logs, "--- sentinel %s\n%s\n", sn.Addr(), sn.Log(3000))
		}
		s.t.Fatalf("redistest: no new master after %s: %v\n%s", old, err, logs.String())
	}
	return addr
}

// WaitReplicated makes every write acknowledged so far by the current master
// reach at least one replica: it writes a key through a fresh connection and
// runs WAIT 1 2000 on it (WAIT covers the connection's own writes, which
// follow every earlier write in the replication stream). It fails the test
// when no replica acknowledged in time.
func (s *Sentinel) WaitReplicated() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, err := s.masterAddr(ctx)
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 1})
	defer rc.Close()
	// The replica may still be in its initial sync (slow on a loaded
	// machine): write and WAIT again until it acknowledges, bounded.
	for {
		if err := rc.Set(ctx, "redistest:wait", time.Now().String(), 0).Err(); err != nil {
			s.t.Fatalf("redistest: SET on master %s: %v", addr, err)
		}
		n, err := rc.Wait(ctx, 1, 2*time.Second).Result()
		if err == nil && n >= 1 {
			return
		}
		if ctx.Err() != nil {
			s.t.Fatalf("redistest: WAIT 1 on master %s: %d replicas, %v", addr, n, err)
		}
	}
}

// sentinelSees checks that the Sentinel at addr monitors MasterName at
// master, finds it up with a connected replica, and knows others Sentinels.
func sentinelSees(ctx context.Context, addr, master string, others int) error {
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer sc.Close()
	m, err := sc.Master(ctx, MasterName).Result()
	if err != nil {
		return fmt.Errorf("SENTINEL MASTER: %w", err)
	}
	if got := net.JoinHostPort(m["ip"], m["port"]); got != master {
		return fmt.Errorf("master is %s, want %s", got, master)
	}
	if m["flags"] != "master" {
		return fmt.Errorf("master flags %q", m["flags"])
	}
	if m["num-other-sentinels"] != strconv.Itoa(others) {
		return fmt.Errorf("knows %s other sentinels, want %d", m["num-other-sentinels"], others)
	}
	replicas, err := sc.Replicas(ctx, MasterName).Result()
	if err != nil {
		return fmt.Errorf("SENTINEL REPLICAS: %w", err)
	}
	for _, r := range replicas {
		if r["flags"] == "slave" && r["master-link-status"] == "ok" {
			return nil
		}
	}
	return fmt.Errorf("no connected replica yet: %v", replicas)
}

// infoOf returns one INFO section of the server at addr.
func infoOf(ctx context.Context, addr, section string) (map[string]string, error) {
	rc := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer rc.Close()
	text, err := rc.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(text), nil
}

// waitFor calls check every 50 ms until it returns nil or ctx ends.
func waitFor(ctx context.Context, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
