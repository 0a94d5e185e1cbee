package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A decoded configuration: the File decoded from the parts of the document
// that fit its types, the problems with the other parts (unknown keys, wrong
// types, bad durations, duplicate keys), each by YAML path and line, and the
// line of every path present in the document, so that later problems
// (validation, static checks) name their line too.
type decoded struct {
	file     *File
	problems Problems
	bad      []string       // paths with a decode problem
	lines    map[string]int // YAML path -> line of its key
}

// maxVisits bounds the walk of a document (aliases are followed; each node is
// visited once per Go type).
const maxVisits = 1 << 20

// decode reads the first YAML document of b against File. It fails only when
// b is not YAML at all; everything else is a problem in the result.
func decode(b []byte) (*decoded, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	d := &decoded{file: &File{}, lines: map[string]int{}}
	w := walker{d: d, seen: map[visit]bool{}}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind == 0 { // empty document
		return d, nil
	}
	fits := w.walk(doc, reflect.TypeFor[File](), "")
	if w.visits > maxVisits {
		return nil, errors.New("document too large (or excessive aliasing)")
	}
	if !fits {
		return d, nil
	}
	// The parts that fit are decoded by yaml.v3 itself: unknown keys were
	// removed from the tree and values of the wrong type replaced by null.
	if err := root.Decode(d.file); err != nil {
		// Not expected after the walk; reported rather than lost.
		d.problems = append(d.problems, "(document): "+strings.TrimPrefix(err.Error(), "yaml: "))
		d.bad = append(d.bad, "")
	}
	slices.SortStableFunc(d.problems, func(a, b string) int { return cmp.Compare(problemLine(a), problemLine(b)) })
	return d, nil
}

var lineSuffix = regexp.MustCompile(`\(line (\d+)\)$`)

func problemLine(p string) int {
	m := lineSuffix.FindStringSubmatch(p)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// annotate adds the line of each problem's path (or of its nearest ancestor
// present in the document) and drops problems under a path that already has
// a decode problem (a wrong-typed value reads as unset).
func (d *decoded) annotate(ps Problems) Problems {
	var out Problems
	for _, p := range ps {
		field, _, _ := strings.Cut(p, ": ")
		if slices.ContainsFunc(d.bad, func(b string) bool { return under(field, b) }) {
			continue
		}
		if line := d.lineOf(field); line > 0 && !lineSuffix.MatchString(p) {
			p = fmt.Sprintf("%s (line %d)", p, line)
		}
		out = append(out, p)
	}
	return out
}

// under reports whether path is p or below it.
func under(path, p string) bool {
	if p == "" {
		return true
	}
	return path == p || strings.HasPrefix(path, p) && (path[len(p)] == '.' || path[len(p)] == '[')
}

func (d *decoded) lineOf(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

type visit struct {
	n *yaml.Node
	t reflect.Type
}

type walker struct {
	d      *decoded
	seen   map[visit]bool // node, type -> fits
	visits int
}

// problem reports what does not fit at path; the path's value reads as
// unset, so validation problems under it are not repeated.
func (w *walker) problem(n *yaml.Node, path, format string, args ...any) {
	w.keyProblem(n, path, format, args...)
	w.d.bad = append(w.d.bad, path)
}

// keyProblem reports a key that is dropped (unknown, duplicate, not a
// string); what it would have set stays unset and is validated as such.
func (w *walker) keyProblem(n *yaml.Node, path, format string, args ...any) {
	name := path
	if name == "" {
		name = "(document)"
	}
	w.d.problems = append(w.d.problems, fmt.Sprintf("%s: %s (line %d)", name, fmt.Sprintf(format, args...), n.Line))
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// walk checks node n against type t at path, reporting what does not fit
// and cleaning the tree so that yaml.v3 can decode the rest: unknown keys
// are removed, values of the wrong type become null. It returns false when
// n itself does not fit t.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) bool {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	v := visit{n, t}
	if ok, seen := w.seen[v]; seen {
		return ok // an alias of a node already checked (or being checked)
	}
	w.seen[v] = true
	if w.visits++; w.visits > maxVisits {
		return true
	}
	ok := w.check(n, t, path)
	w.seen[v] = ok
	return ok
}

func (w *walker) check(n *yaml.Node, t reflect.Type, path string) bool {
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.problem(n, path, "%s", yamlMessage(err))
			return false
		}
		return true
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.problem(n, path, "want a mapping, got %s", describe(n))
			return false
		}
		fields := yamlFields(t)
		known := slices.Sorted(maps.Keys(fields))
		w.mapping(n, path, func(key string) (reflect.Type, []string, bool) {
			ft, ok := fields[key]
			return ft, known, ok
		})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.problem(n, path, "want a mapping, got %s", describe(n))
			return false
		}
		w.mapping(n, path, func(string) (reflect.Type, []string, bool) { return t.Elem(), nil, true })
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.problem(n, path, "want a list, got %s", describe(n))
			return false
		}
		for i, e := range n.Content {
			if !w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)) {
				n.Content[i] = null(e)
			}
		}
	case reflect.Interface:
	default:
		if n.Kind != yaml.ScalarNode {
			w.problem(n, path, "want %s, got %s", kindName(t), describe(n))
			return false
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.problem(n, path, "want %s, got %s", kindName(t), describe(n))
			return false
		}
	}
	return true
}

// mapping walks the pairs of a mapping node; field resolves a key to the
// type of its value (and the known keys, for suggestions).
func (w *walker) mapping(n *yaml.Node, path string, field func(key string) (reflect.Type, []string, bool)) {
	join := func(key string) string {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	var keep []*yaml.Node
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			// <<: *anchor (or a list of them) merges mappings into this one.
			keep = append(keep, k, v)
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				for m.Kind == yaml.AliasNode && m.Alias != nil {
					m = m.Alias
				}
				if m.Kind != yaml.MappingNode {
					w.keyProblem(k, path, "<< merges only mappings")
					keep = keep[:len(keep)-2]
					break
				}
				w.mapping(m, path, field)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.keyProblem(k, path, "a key must be a plain string, got %s", describe(k))
			continue
		}
		p := join(k.Value)
		if l, dup := first[k.Value]; dup {
			w.keyProblem(k, p, "duplicate key (first at line %d)", l)
			continue
		}
		first[k.Value] = k.Line
		t, known, ok := field(k.Value)
		if !ok {
			if s := suggest(k.Value, known); s != "" {
				w.keyProblem(k, p, "unknown key (did you mean %s?)", s)
			} else {
				w.keyProblem(k, p, "unknown key")
			}
			continue
		}
		if _, ok := w.d.lines[p]; !ok {
			w.d.lines[p] = k.Line
		}
		if !w.walk(v, t, p) {
			v = null(v)
		}
		keep = append(keep, k, v)
	}
	n.Content = keep
}

func null(n *yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: n.Line, Column: n.Column}
}

// yamlFields maps the YAML keys of a struct type (inline structs
// flattened) to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		out[name] = f.Type
	}
	return out
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a " + t.String()
}

// describe names what a node is, quoting (a bounded part of) a scalar.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	}
	return "something else"
}

var yamlLinePrefix = regexp.MustCompile(`^(yaml: )?(unmarshal errors:\s*)?(line \d+: )?`)

// yamlMessage is an unmarshaler's error without yaml.v3's line prefix (the
// problem names the line itself).
func yamlMessage(err error) string {
	return yamlLinePrefix.ReplaceAllString(err.Error(), "")
}

// suggest returns the known key closest to key when it is close enough to
// be a typo (one edit in four characters, swaps count as one).
func suggest(key string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := editDistance(strings.ToLower(key), k)
		if d <= max(1, len(k)/4) && (best == "" || d < bestD) {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance (insertions,
// deletions, substitutions and adjacent swaps) between short keys.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+c)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
