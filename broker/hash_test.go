package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestHash: Hash (through hexSum) is the lowercase hex SHA-256, as
// hex.EncodeToString gives it.
func TestHash(t *testing.T) {
	for _, s := range []string{"", "a", "eyJhbGciOiJSUzI1NiJ9.e30.sig", string([]byte{0, 0xff, 0x10})} {
		sum := sha256.Sum256([]byte(s))
		if got, want := Hash(s), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("Hash(%q) = %s, want %s", s, got, want)
		}
	}
}
