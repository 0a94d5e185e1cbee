package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
)

// MaxFileBytes bounds the configuration file (read at start-up, by
// `config check` and by every reload).
const MaxFileBytes = 4 << 20

// ReadFile reads a configuration file, at most MaxFileBytes.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("config: %s: larger than %d bytes", path, MaxFileBytes)
	}
	return b, nil
}

// RestartOnly are the keys (and the keys below them) that a running broker
// cannot take from a reload; a reload that changes one is refused as a
// whole (RestartRequired):
//   - listen: the listeners are open, with their limits, timeouts and
//     keepalive settings, for the life of the process;
//   - tls: the file names (the files themselves are reloaded when they
//     change);
//   - store: the backend and its connection are shared by every call, the
//     replay markers and the audit trail live in it;
//   - log.format: the log handler is built once (log.level reloads);
//   - issuer.url: the issuer's metadata and JWKS routes are served at its
//     path, and grants already issued name it (issuer.keys reload);
//   - audit_export: the exporter is a running consumer of the audit trail.
var RestartOnly = []string{"listen", "tls", "store", "log.format", "issuer.url", "audit_export"}

// RestartRequired lists, by YAML path, every key under RestartOnly whose
// value differs between running and next (both with defaults applied):
// empty when next can be applied without a restart.
func RestartRequired(running, next *File) []string {
	var out []string
	for _, p := range RestartOnly {
		a, errA := fieldByPath(reflect.ValueOf(running).Elem(), p)
		b, errB := fieldByPath(reflect.ValueOf(next).Elem(), p)
		if err := errors.Join(errA, errB); err != nil {
			panic(err) // RestartOnly names a key File does not have: a programming error
		}
		diffPaths(a, b, p, &out)
	}
	return out
}

// fieldByPath is the value of a dotted YAML path (no indexes) below v.
func fieldByPath(v reflect.Value, path string) (reflect.Value, error) {
	for name := range strings.SplitSeq(path, ".") {
		f, ok := yamlField(v, name)
		if !ok {
			return reflect.Value{}, fmt.Errorf("config: no key %q in %s", name, path)
		}
		v = f
	}
	return v, nil
}

func yamlField(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	t := v.Type()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// diffPaths appends the YAML path of every leaf that differs between a and
// b (of the same type): struct fields by key, lists of mappings by index,
// other lists and maps as a whole.
func diffPaths(a, b reflect.Value, path string, out *[]string) {
	switch a.Kind() {
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			diffPaths(a.Field(i), b.Field(i), path+"."+tag, out)
		}
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, path)
			}
			return
		}
		diffPaths(a.Elem(), b.Elem(), path, out)
	case reflect.Map, reflect.Slice:
		if a.Kind() == reflect.Map || a.Type().Elem().Kind() != reflect.Struct {
			if a.Len()+b.Len() > 0 && !reflect.DeepEqual(a.Interface(), b.Interface()) { // nil and empty alike
				*out = append(*out, path)
			}
			return
		}
		for i := range max(a.Len(), b.Len()) {
			p := fmt.Sprintf("%s[%d]", path, i)
			if i >= a.Len() || i >= b.Len() {
				*out = append(*out, p)
				continue
			}
			diffPaths(a.Index(i), b.Index(i), p, out)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	}
}
