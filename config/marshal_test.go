package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// fillEveryField sets every field of v (recursively) to a value other than
// its zero value: slices and maps get two entries, pointers a value.
func fillEveryField(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillEveryField(v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillEveryField(v.Elem(), path)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fillEveryField(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fillEveryField(k, fmt.Sprintf("%s.key%d", path, i))
			fillEveryField(e, fmt.Sprintf("%s.value%d", path, i))
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString(path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeFor[Duration]() {
			v.SetInt(int64(90*time.Second + 500*time.Millisecond))
		} else {
			v.SetInt(int64(len(path)))
		}
	case reflect.Float64:
		v.SetFloat(2.5)
	default:
		panic(fmt.Sprintf("fillEveryField: %s: %s not handled", path, v.Kind()))
	}
}

// yaml.Marshal of a File writes every field under the key Parse reads it
// from, in the form Parse reads (durations as "1m30.5s"): decoding the
// output gives the same File, with no problem reported.
func TestMarshalRoundTripsEveryField(t *testing.T) {
	var f File
	fillEveryField(reflect.ValueOf(&f).Elem(), "")
	out, err := yaml.Marshal(&f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.problems) > 0 {
		t.Fatalf("decoding the marshalled file: %v\n%s", d.problems, out)
	}
	if !reflect.DeepEqual(d.file, &f) {
		t.Errorf("the file read back differs from the one marshalled:\n%s", out)
	}
	if !strings.Contains(string(out), "shutdown_timeout: 1m30.5s") {
		t.Errorf("durations are not written as Go durations:\n%s", out)
	}
}

// Fields at their zero value are left out, so that a file built in Go reads
// like one written by hand.
func TestMarshalOmitsUnsetFields(t *testing.T) {
	f := File{Domains: []Domain{{Name: "a", Client: Client{ClientID: "c"}}}, Listen: Listen{ShutdownTimeout: Duration(5 * time.Second)}}
	out, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	const want = "listen:\n    shutdown_timeout: 5s\ndomains:\n    - name: a\n      client:\n        client_id: c\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if out, _ := yaml.Marshal(&File{}); string(out) != "{}\n" {
		t.Errorf("an empty file marshals to %q", out)
	}
}

// A loaded configuration (defaults applied), marshalled and parsed again,
// is the same configuration: what a harness writes for `chainbroker serve`
// is what it built.
func TestMarshalParsesBack(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			want, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			out, err := yaml.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parsed back differs:\n%s", out)
			}
		})
	}
}
