package config

import (
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MarshalYAML writes a duration as Parse reads it ("1m30s"); the zero
// duration is null (unset).
func (d Duration) MarshalYAML() (any, error) {
	if d == 0 {
		return nil, nil
	}
	return time.Duration(d).String(), nil
}

// MarshalYAML makes yaml.Marshal of a File a configuration file that Parse
// reads back to the same File: every set field under its YAML key, and the
// fields at their zero value (which read as unset) left out. Harnesses that
// run `chainbroker serve` in a process of its own write their configuration
// this way instead of keeping a template of the format.
func (f File) MarshalYAML() (any, error) {
	type plain File // the same fields, without this method
	var n yaml.Node
	if err := n.Encode(plain(f)); err != nil {
		return nil, err
	}
	omitZero(&n, reflect.ValueOf(f))
	return &n, nil
}

// omitZero removes from the mapping nodes of n (the encoding of v) the keys
// of the struct fields of v that hold their zero value.
func omitZero(n *yaml.Node, v reflect.Value) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && v.Kind() == reflect.Struct:
		fields := make(map[string]reflect.Value, v.NumField())
		for i := range v.NumField() {
			if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
				fields[name] = v.Field(i)
			}
		}
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if fv, ok := fields[key.Value]; ok {
				if fv.IsZero() {
					continue
				}
				omitZero(val, fv)
			}
			kept = append(kept, key, val)
		}
		n.Content = kept
	case n.Kind == yaml.SequenceNode && (v.Kind() == reflect.Slice || v.Kind() == reflect.Array):
		for i, c := range n.Content {
			if i < v.Len() {
				omitZero(c, v.Index(i))
			}
		}
	}
}
