package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestNoPromptWithoutTerminal (#22.11): the "end with Ctrl-D" prompt is for a
// person at a terminal. /dev/null is a character device but no terminal, and
// a file is neither: no prompt, and the missing token is a usage error.
func TestNoPromptWithoutTerminal(t *testing.T) {
	file := t.TempDir() + "/empty"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{os.DevNull, file} {
		t.Run(path, func(t *testing.T) {
			stdin, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			var stdout, stderr bytes.Buffer
			lookup := func(string) (string, bool) { return "", false }
			code := runEnv(ctxT(t), []string{"--addr", "127.0.0.1:1", "chain", "--target", "domain-b"}, stdin, &stdout, &stderr, lookup)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if strings.Contains(stderr.String(), "Ctrl-D") {
				t.Errorf("prompted without a terminal:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), "no subject token") {
				t.Errorf("stderr does not say the token is missing:\n%s", stderr.String())
			}
		})
	}
}
