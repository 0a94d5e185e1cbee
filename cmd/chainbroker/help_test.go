package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestHelpAndVersion (#22.11): help asked for, in every form, prints the
// command's help with examples on stdout and exits 0; a usage mistake exits
// 2 with the usage on stderr; version prints the build's version.
func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"--help", []string{"--help"}, 0, []string{"chainbroker serve --config FILE", "chainbroker version", "Examples:"}, nil},
		{"-h", []string{"-h"}, 0, []string{"chainbroker sandbox [flags]"}, nil},
		{"help", []string{"help"}, 0, []string{"chainbroker keys generate|jwks"}, nil},
		{"serve -h", []string{"serve", "-h"}, 0, []string{"Usage: chainbroker serve --config FILE", "Examples:", "-config", "-log-format", "CHAINBROKER_ALLOW_INSECURE_KEY_PERMS"}, nil},
		{"serve --help", []string{"serve", "--help"}, 0, []string{"Usage: chainbroker serve"}, nil},
		{"help serve", []string{"help", "serve"}, 0, []string{"Usage: chainbroker serve", "-grpc-addr"}, nil},
		{"sandbox -h", []string{"sandbox", "-h"}, 0, []string{"Usage: chainbroker sandbox", "Examples:", "-redis-url", "-domain-a-addr", "-domain-c-addr"}, nil},
		{"help sandbox", []string{"help", "sandbox"}, 0, []string{"Usage: chainbroker sandbox"}, nil},
		{"keys -h", []string{"keys", "-h"}, 0, []string{"chainbroker keys generate"}, nil},
		{"help keys", []string{"help", "keys"}, 0, []string{"chainbroker keys jwks"}, nil},
		{"keys generate -h", []string{"keys", "generate", "-h"}, 0, nil, nil},
		{"help version", []string{"help", "version"}, 0, []string{"Usage: chainbroker version"}, nil},
		{"version", []string{"version"}, 0, []string{"chainbroker ", runtime.Version()}, nil},
		{"--version", []string{"--version"}, 0, []string{"chainbroker ", runtime.Version()}, nil},
		{"no command", nil, 2, nil, []string{"Usage:"}},
		{"unknown command", []string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`, "Usage:"}},
		{"help of an unknown command", []string{"help", "frobnicate"}, 2, nil, []string{`help: unknown command "frobnicate"`}},
		{"serve with an unknown flag", []string{"serve", "--nope"}, 2, nil, []string{"flag provided but not defined: -nope", "Usage: chainbroker serve"}},
		{"serve without --config", []string{"serve"}, 2, nil, []string{"--config is required", "Usage: chainbroker serve"}},
		{"keys without a subcommand", []string{"keys"}, 2, nil, []string{"chainbroker keys generate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if tt.code == 0 && len(tt.stdout) > 0 && stderr.Len() > 0 {
				t.Errorf("help asked for wrote to stderr:\n%s", stderr.String())
			}
		})
	}
}
