package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// yamlPaths lists every configuration key of t as a dotted path, slices of
// structs marked with "[]" (domains[].client.client_id).
func yamlPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			out = append(out, yamlPaths(ft, path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, yamlPaths(ft.Elem(), path+"[].")...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// docs/configuration.md documents exactly the keys the config struct has:
// every key appears as `key` in the reference, and every key the reference
// lists exists.
func TestConfigurationReferenceMatchesStruct(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := yamlPaths(reflect.TypeOf(File{}), "")
	documented := map[string]bool{}
	// Reference rows look like: | `domains[].client.client_id` | ...
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_\\[\\].]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	for _, k := range keys {
		if !documented[k] {
			t.Errorf("docs/configuration.md does not document %s", k)
		}
	}
	for k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/configuration.md documents %s, which the configuration does not have", k)
		}
	}
	if len(keys) < 50 {
		t.Fatalf("only %d keys found: the walk is broken", len(keys))
	}
}
