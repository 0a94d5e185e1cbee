package app_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chainbroker/chainbroker/config"
	"github.com/chainbroker/chainbroker/internal/app"
	"github.com/chainbroker/chainbroker/keyset"
)

// TestClientPrivateKeyFilePermissions (#14.11): a domain client's
// private_key_file readable by group or others is refused, naming the
// field, the file and the fix, unless AllowInsecureKeyPermissions.
func TestClientPrivateKeyFilePermissions(t *testing.T) {
	pemBytes, _, err := keyset.Generate("ES256")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		mode  os.FileMode
		allow bool
		ok    bool
	}{
		{0o600, false, true},
		{0o400, false, true},
		{0o640, false, false},
		{0o440, false, false},
		{0o644, false, false},
		{0o644, true, true},
	} {
		path := filepath.Join(t.TempDir(), "client.pem")
		if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		c := config.Client{ClientID: "broker", AuthMethod: "private_key_jwt", PrivateKeyFile: path, SigningAlg: "ES256"}
		creds, err := app.ClientCredentials("domains[0]", c, os.LookupEnv, tt.allow)
		switch {
		case tt.ok && (err != nil || creds.Signer == nil):
			t.Errorf("mode %04o allow=%v: %v", tt.mode, tt.allow, err)
		case !tt.ok && !errors.Is(err, keyset.ErrInsecurePermissions):
			t.Errorf("mode %04o: got %v, want ErrInsecurePermissions", tt.mode, err)
		case !tt.ok:
			for _, want := range []string{"domains[0].client.private_key_file", path, "chmod 600"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("mode %04o: error %q does not say %q", tt.mode, err, want)
				}
			}
		}
	}
}
