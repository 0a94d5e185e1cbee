package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/chainbroker/chainbroker/store"
)

// JSONLines writes each event as one line of JSON (store.Event.AppendJSON:
// the encoding the audit stream holds, with the stream id as "id"), a whole
// batch in one write. On a file, every batch is followed by fsync, and a
// batch that failed half-way is cut off again, so that a retry does not
// leave a broken line.
type JSONLines struct {
	mu   sync.Mutex
	w    io.Writer
	file *os.File // nil for a plain writer
	own  bool     // Close closes file
	buf  []byte
}

// NewJSONLines writes to w (stdout, typically). If w is an *os.File, each
// batch is synced when the file supports it (a pipe or a terminal does not:
// that is not an error).
func NewJSONLines(w io.Writer) *JSONLines {
	s := &JSONLines{w: w}
	if f, ok := w.(*os.File); ok {
		s.file = f
	}
	return s
}

// OpenJSONLinesFile opens path for appending (created with mode 0600). An
// existing file that its group or others may access is refused: audit
// trails name subjects and callers.
func OpenJSONLinesFile(path string) (*JSONLines, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("export: %w", err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("export: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		_ = f.Close()
		return nil, fmt.Errorf("export: %s has mode %#o: group and others must have no access (chmod 600)", path, perm)
	}
	return &JSONLines{w: f, file: f, own: true}, nil
}

// Write implements Sink.
func (s *JSONLines) Write(_ context.Context, events []store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.buf[:0]
	for i := range events {
		s.buf = events[i].AppendJSON(s.buf)
		s.buf = append(s.buf, '\n')
	}
	var size int64 = -1
	if s.own {
		if fi, err := s.file.Stat(); err == nil {
			size = fi.Size()
		}
	}
	_, err := s.w.Write(s.buf)
	if err == nil && s.file != nil {
		if serr := s.file.Sync(); serr != nil && (s.own || !notSyncable(serr)) {
			err = serr
		}
	}
	if err != nil {
		if size >= 0 {
			_ = s.file.Truncate(size) // best effort: no partial line before the retry
		}
		return fmt.Errorf("export: write: %w", err)
	}
	if cap(s.buf) > 4<<20 {
		s.buf = nil // do not keep a huge buffer around
	}
	return nil
}

// notSyncable: fsync on a pipe or a terminal (stdout), which has nothing
// to flush.
func notSyncable(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EROFS)
}

// Close implements Sink: it closes the file OpenJSONLinesFile opened.
func (s *JSONLines) Close() error {
	if s.own {
		return s.file.Close()
	}
	return nil
}
