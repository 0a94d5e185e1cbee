// Package keyset holds the broker's own signing keys: the one it signs
// assertions with (active), the ones it publishes in its JWKS ahead of or
// after their use (published), and the ones listed only to record that they
// are no longer used (retired).
//
// Keys are files: PEM private keys (PKCS#8, PKCS#1 or SEC1) or a private JWK
// (JSON, kty EC, RSA or OKP). Their states come from configuration, so a
// rotation is an edit of the key list (Replace) or of a file in place (Reload,
// or Watch noticing the new modification time or size):
//
//  1. add the next key as published, so relying parties can fetch it before
//     it is used;
//  2. once their JWKS caches have had time to refresh, make it active and the
//     old key published (tokens it signed still verify);
//  3. when those tokens have expired, make the old key retired (or drop it).
//
// The kid of every key is its RFC 7638 thumbprint (base64url SHA-256), so it
// changes whenever the key does and never needs to be configured. JOSE stays
// behind the token package: this package parses files with the standard
// library and hands crypto keys to token.NewSigner.
package keyset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/chainbroker/chainbroker/token"
)

// State is what the broker does with a key.
type State string

// Key states.
const (
	// Active: the key signs every new assertion and is published. Exactly
	// one key is active.
	Active State = "active"
	// Published: the key is in the JWKS but signs nothing (the next key,
	// pre-published; or the previous one, while tokens it signed live).
	Published State = "published"
	// Retired: the key is neither used nor published. Its file is not read
	// (it may already be deleted): the entry only documents the rotation.
	Retired State = "retired"
)

// KeyConfig is one configured key.
type KeyConfig struct {
	// File is the path of the private key: PEM (PKCS#8 "PRIVATE KEY",
	// PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY") or a private JWK
	// (a JSON object, or a JWKS holding exactly one key).
	File string
	// State is Active, Published or Retired.
	State State
	// Alg is the JWS algorithm; "" picks it by key type: RS256 for RSA,
	// ES256/ES384/ES512 by curve, EdDSA for Ed25519 (for a JWK file, its
	// own "alg" member first). PS256/384/512 must be given explicitly.
	Alg string
	// AllowInsecurePermissions skips the file mode check: by default a key
	// file readable or writable by its group or by others (mode & 0o077 != 0)
	// is refused (ErrInsecurePermissions).
	AllowInsecurePermissions bool
}

// KeyInfo describes one loaded key, for logs and diagnostics.
type KeyInfo struct {
	File  string
	State State
	Alg   string // "" for retired keys (not read)
	KeyID string // "" for retired keys (not read)
}

// MaxKeyFileBytes bounds a key file (an RSA-8192 PEM is about 6.5 KiB).
const MaxKeyFileBytes = 64 << 10

// Set is the broker's signing key set, made by Load. Its reads (Signer,
// JWKS) are one atomic load; Reload, Replace and Watch may run concurrently
// with them and with each other.
type Set struct {
	log *slog.Logger
	mu  sync.Mutex // serialises Reload and Replace
	cur atomic.Pointer[snapshot]
}

// snapshot is one immutable generation of the set.
type snapshot struct {
	keys    []KeyConfig
	infos   []KeyInfo
	active  *token.Signer
	jwks    []byte
	stamps  []stamp // of the files read (active and published keys), in keys order
	watched []string
}

// Load reads every active and published key file and returns the set. The
// configuration must list exactly one Active key; every problem is reported
// at once, each naming its file. log may be nil.
func Load(keys []KeyConfig, log *slog.Logger) (*Set, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	snap, err := build(keys)
	if err != nil {
		return nil, err
	}
	s := &Set{log: log}
	s.cur.Store(snap)
	s.logLoaded("signing keys loaded", nil, snap)
	return s, nil
}

// Signer returns the active key's signer.
func (s *Set) Signer() *token.Signer { return s.cur.Load().active }

// JWKS returns the public JWKS document ({"keys":[...]}) of the active and
// published keys, active first; never a retired key nor a private member.
// The bytes are shared: callers must not modify them.
func (s *Set) JWKS() []byte { return s.cur.Load().jwks }

// Keys describes the configured keys, in configuration order.
func (s *Set) Keys() []KeyInfo { return slices.Clone(s.cur.Load().infos) }

// Reload re-reads every key file of the current configuration. On any error
// the set is left as it was and the error, naming the file, is returned.
func (s *Set) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	snap, err := build(old.keys)
	if err != nil {
		return err
	}
	s.cur.Store(snap)
	s.logLoaded("signing keys reloaded", old, snap)
	return nil
}

// Replace validates a new key configuration, reads its files and swaps the
// whole set (states included); on any error the set is left as it was.
func (s *Set) Replace(keys []KeyConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, err := build(keys)
	if err != nil {
		return err
	}
	old := s.cur.Swap(snap)
	s.logLoaded("signing keys replaced", old, snap)
	return nil
}

// logLoaded logs the active and published kids, at Info when the set
// changed (or on first load), at Debug otherwise.
func (s *Set) logLoaded(msg string, old, snap *snapshot) {
	level := slog.LevelInfo
	if old != nil && slices.Equal(old.infos, snap.infos) {
		level = slog.LevelDebug
	}
	var published []string
	for _, in := range snap.infos {
		if in.State == Published {
			published = append(published, in.KeyID)
		}
	}
	attrs := []any{"active_kid", snap.active.KeyID(), "alg", snap.active.Alg(), "published_kids", published}
	if old != nil && old.active.KeyID() != snap.active.KeyID() {
		attrs = append(attrs, "previous_active_kid", old.active.KeyID())
	}
	s.log.Log(context.Background(), level, msg, attrs...)
}

// validate checks the configuration itself (not the files).
func validate(keys []KeyConfig) error {
	if len(keys) == 0 {
		return errors.New("keyset: no keys configured (exactly one must be active)")
	}
	var errs []error
	var active []string
	seen := map[string]bool{}
	for i, k := range keys {
		name := fmt.Sprintf("keyset: key %d", i)
		if k.File == "" {
			errs = append(errs, fmt.Errorf("%s: file is required", name))
		} else {
			name = fmt.Sprintf("keyset: key %d (%s)", i, k.File)
			if seen[k.File] {
				errs = append(errs, fmt.Errorf("%s: file listed twice", name))
			}
			seen[k.File] = true
		}
		switch k.State {
		case Active:
			active = append(active, k.File)
		case Published, Retired:
		default:
			errs = append(errs, fmt.Errorf("%s: state %q, want %s, %s or %s", name, k.State, Active, Published, Retired))
		}
	}
	switch len(active) {
	case 0:
		errs = append(errs, errors.New("keyset: no active key (exactly one must be active)"))
	case 1:
	default:
		errs = append(errs, fmt.Errorf("keyset: %d active keys (%s), exactly one must be active",
			len(active), strings.Join(active, ", ")))
	}
	return errors.Join(errs...)
}

// build validates keys and reads the active and published files.
func build(keys []KeyConfig) (*snapshot, error) {
	if err := validate(keys); err != nil {
		return nil, err
	}
	snap := &snapshot{keys: slices.Clone(keys), infos: make([]KeyInfo, len(keys))}
	var errs []error
	var signers []*token.Signer // active first, then published in order
	kids := map[string]string{}
	for i, k := range keys {
		snap.infos[i] = KeyInfo{File: k.File, State: k.State}
		if k.State == Retired {
			continue
		}
		// Stat before reading: a change after the stat shows up as a new
		// stamp on the next watch tick, and the file is read again.
		snap.stamps = append(snap.stamps, statFile(k.File))
		snap.watched = append(snap.watched, k.File)
		sg, err := loadFile(k.File, k.Alg, !k.AllowInsecurePermissions)
		if err != nil {
			errs = append(errs, fmt.Errorf("keyset: key %d: %w", i, err))
			continue
		}
		if other, dup := kids[sg.KeyID()]; dup {
			errs = append(errs, fmt.Errorf("keyset: key %d (%s): same key as %s (kid %s)", i, k.File, other, sg.KeyID()))
			continue
		}
		kids[sg.KeyID()] = k.File
		snap.infos[i].Alg, snap.infos[i].KeyID = sg.Alg(), sg.KeyID()
		if k.State == Active {
			snap.active = sg
			signers = append([]*token.Signer{sg}, signers...)
		} else {
			signers = append(signers, sg)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	jwks, err := token.PublicJWKS(signers...)
	if err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}
	snap.jwks = jwks
	return snap, nil
}

// LoadFile reads one private key file (PEM or private JWK, see KeyConfig)
// and returns its signer, with kid = RFC 7638 thumbprint. alg "" picks the
// algorithm by key type (a JWK's own "alg" first). Errors name the file.
// It does not check the file's mode (it serves offline tools such as
// `chainbroker keys jwks`); Load, Reload and Replace do.
func LoadFile(path, alg string) (*token.Signer, error) {
	return loadFile(path, alg, false)
}

func loadFile(path, alg string, checkMode bool) (*token.Signer, error) {
	b, err := readBounded(path, checkMode)
	if err != nil {
		return nil, err
	}
	sg, err := parseKey(b, alg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sg, nil
}

// ErrInsecurePermissions: a private key file is readable or writable by its
// group or by others. Returned wrapped in an *fs.PathError naming the file.
var ErrInsecurePermissions = errors.New("private key file is accessible by group or others")

// ReadPrivateKeyFile reads a private key file (at most MaxKeyFileBytes, a
// regular file, symlinks followed), refusing one whose mode lets its group
// or others read or write it unless allowInsecure. For key files read
// outside this package (a domain client's private_key_file).
func ReadPrivateKeyFile(path string, allowInsecure bool) ([]byte, error) {
	return readBounded(path, !allowInsecure)
}

// checkMode refuses mode & 0o077 != 0 with an error naming the file and the
// fix. The mode is that of the opened file, after symlinks (a Kubernetes
// secret volume's files are symlinks into ..data).
func checkMode(path string, fi fs.FileInfo) error {
	if runtime.GOOS == "windows" { // no Unix mode bits
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (mode %04o): run chmod 600 %s "+
			"(Kubernetes: mount the secret with defaultMode 0400), or set %s=1 to accept it",
			ErrInsecurePermissions, perm, path, EnvAllowInsecurePermissions)}
	}
	return nil
}

// EnvAllowInsecurePermissions is the environment variable that the
// chainbroker command reads (in cmd/, nowhere else) to skip the key file
// mode check: CHAINBROKER_ALLOW_INSECURE_KEY_PERMS=1.
const EnvAllowInsecurePermissions = "CHAINBROKER_ALLOW_INSECURE_KEY_PERMS"

func readBounded(path string, checkPerm bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	} else if checkPerm {
		if err := checkMode(path, fi); err != nil {
			return nil, err
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxKeyFileBytes {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes", MaxKeyFileBytes)}
	}
	return b, nil
}
