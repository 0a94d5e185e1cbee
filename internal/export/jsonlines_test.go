package export_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chainbroker/chainbroker/internal/export"
	"github.com/chainbroker/chainbroker/store"
)

func TestJSONLinesFileModes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		prepare func(path string)
		wantErr string
	}{
		{"created 0600", func(string) {}, ""},
		{"existing 0600 appended", func(p string) { _ = os.WriteFile(p, []byte("{}\n"), 0o600) }, ""},
		{"readable by others refused", func(p string) { _ = os.WriteFile(p, nil, 0o600); _ = os.Chmod(p, 0o644) }, "chmod 600"},
		{"group writable refused", func(p string) { _ = os.WriteFile(p, nil, 0o600); _ = os.Chmod(p, 0o620) }, "chmod 600"},
		{"directory refused", func(p string) { _ = os.Mkdir(p, 0o700) }, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			tc.prepare(path)
			s, err := export.OpenJSONLinesFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Write(t.Context(), []store.Event{{ID: "1-0", Time: time.Unix(1, 0).UTC()}}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %#o", fi.Mode().Perm())
			}
			b, _ := os.ReadFile(path)
			if !strings.HasSuffix(string(b), `{"id":"1-0","time":"1970-01-01T00:00:01Z","outcome":0}`+"\n") {
				t.Errorf("file holds %q", b)
			}
		})
	}
}

// On a plain writer (stdout), a batch is one write of whole lines, and
// nothing but the event's own fields is added.
func TestJSONLinesWriter(t *testing.T) {
	var buf bytes.Buffer
	s := export.NewJSONLines(&buf)
	evs := []store.Event{
		{ID: "1-0", Subject: "alice", SubjectTokenHash: "ab12"},
		{ID: "2-0", Subject: "bob <b>", Outcome: store.OutcomeFailure, Reason: "POLICY_DENIED"},
	}
	if err := s.Write(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	want := string(evs[0].AppendJSON(nil)) + "\n" + string(evs[1].AppendJSON(nil)) + "\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

// Stdout as a pipe cannot be synced: that is not a failure.
func TestJSONLinesPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	s := export.NewJSONLines(w)
	if err := s.Write(t.Context(), []store.Event{{ID: "1-0"}}); err != nil {
		t.Fatalf("Write to a pipe: %v", err)
	}
}
