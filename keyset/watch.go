package keyset

import (
	"context"
	"os"
	"time"
)

// DefaultWatchInterval is Watch's polling interval when none is given.
const DefaultWatchInterval = 10 * time.Second

// stamp identifies a version of a file: identity (inode), size,
// modification time and mode; err is set when the file could not be stat'ed.
type stamp struct {
	fi  os.FileInfo
	err bool
}

func statFile(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{err: true}
	}
	return stamp{fi: fi}
}

func (a stamp) equal(b stamp) bool {
	if a.err || b.err || a.fi == nil || b.fi == nil {
		return a.err == b.err && (a.fi == nil) == (b.fi == nil)
	}
	// The mode counts too: a chmod 600 after a refused reload (insecure
	// permissions) changes neither size nor modification time.
	return os.SameFile(a.fi, b.fi) && a.fi.Size() == b.fi.Size() && a.fi.ModTime().Equal(b.fi.ModTime()) &&
		a.fi.Mode() == b.fi.Mode()
}

func stampsEqual(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].equal(b[i]) {
			return false
		}
	}
	return true
}

// Watch polls the active and published key files every interval (<= 0
// means DefaultWatchInterval) and calls Reload when one of them changed
// (modification time, size, or the file itself, as after a rename over it),
// until ctx ends. A failed reload keeps the previous keys and is logged once
// per version of the files: the watcher retries when they change again, so
// a file caught half-written is picked up once complete. It follows
// Replace: the files watched are always those of the current configuration.
func (s *Set) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var failed []stamp // the file versions the last failed reload saw
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		snap := s.cur.Load()
		now := make([]stamp, len(snap.watched))
		for i, f := range snap.watched {
			now[i] = statFile(f)
		}
		if stampsEqual(now, snap.stamps) || (failed != nil && stampsEqual(now, failed)) {
			continue
		}
		if err := s.Reload(); err != nil {
			s.log.Error("signing keys: reload after a file change failed; keeping the previous keys", "err", err)
			failed = now
			continue
		}
		failed = nil
	}
}
