package chainbroker

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	designDoc  = "docs/design.md"
	modulePath = "github.com/chainbroker/chainbroker"
)

var backticked = regexp.MustCompile("`([^`\n]+)`")

// repoPath matches what docs/design.md writes as a path of this repository:
// a Go file (`openapi.go`, `broker/validate.go`), a directory (`store/redis/`)
// or a relative path under a top-level entry of the repository
// (`proto/chainbroker/v1/http.yaml`); `net/http` or an import path is not one.
var repoPath = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*/?$`)

// topLevel reports whether ref is a path below a top-level entry of the
// repository.
func topLevel(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	if !ok {
		return false
	}
	_, err := os.Stat(first)
	return err == nil
}

// goName matches `pkg.Name` (optionally `*pkg.Name`).
var goName = regexp.MustCompile(`^\*?([a-z][a-z0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)$`)

// goPackages maps each package name of the module (main packages, the root
// package, whose name is also the proto package's first part, and generated
// code excluded) to its directory.
func goPackages(t *testing.T) map[string]string {
	t.Helper()
	pkgs := map[string]string{}
	for _, dir := range packageDirs(t) {
		files := goFiles(t, dir, false)
		if len(files) == 0 {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), files[0], nil, parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		name := f.Name.Name
		if name == "main" || dir == "." || strings.HasPrefix(dir, "gen/") {
			continue
		}
		if other, dup := pkgs[name]; dup {
			t.Fatalf("package name %s in both %s and %s: docs/design.md's `%s.Name` references would be ambiguous", name, other, dir, name)
		}
		pkgs[name] = dir
	}
	return pkgs
}

// packageDirs lists the module's directories holding Go files, as
// slash-separated paths relative to the module root ("." for the root);
// nested modules (interop/), testdata and node_modules are not part of it.
func packageDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		if path != "." {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // a module of its own
			}
		}
		if len(goFiles(t, path, true)) > 0 {
			dirs = append(dirs, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// goFiles lists dir's .go files, with or without its tests.
func goFiles(t *testing.T, dir string, tests bool) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || (!tests && strings.HasSuffix(n, "_test.go")) {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	return out
}

// declares reports whether the non-test sources of dir declare name at
// package level, or as a method or struct-free constant in a block.
func declares(t *testing.T, dir, name string) bool {
	t.Helper()
	q := regexp.QuoteMeta(name)
	decl := regexp.MustCompile(`(?m)^(func (\([^)]*\) )?` + q + `[\[(]|type ` + q + `\b|(const |var )?\s*` + q + `\b[^\n=:]*=)`)
	for _, f := range goFiles(t, dir, false) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if decl.Match(b) {
			return true
		}
	}
	return false
}

// Every path and every `pkg.Name` docs/design.md names exists, so the
// design cannot drift from the code unnoticed.
func TestDesignReferencesExist(t *testing.T) {
	b, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := goPackages(t)
	paths, names := 0, 0
	for _, m := range backticked.FindAllStringSubmatch(string(b), -1) {
		ref := m[1]
		switch {
		case repoPath.MatchString(ref) && (strings.HasSuffix(ref, ".go") || strings.HasSuffix(ref, "/") || topLevel(ref)):
			paths++
			if _, err := os.Stat(filepath.FromSlash(strings.TrimSuffix(ref, "/"))); err != nil {
				t.Errorf("%s names `%s`, which does not exist", designDoc, ref)
			}
		case goName.MatchString(ref):
			sm := goName.FindStringSubmatch(ref)
			dir, ok := pkgs[sm[1]]
			if !ok {
				continue // not a Go package of this module (e.g. `grpc.health`)
			}
			names++
			if !declares(t, dir, sm[2]) {
				t.Errorf("%s names `%s`, but package %s (%s/) declares no %s", designDoc, ref, sm[1], dir, sm[2])
			}
		}
	}
	// Guard the parsing itself: the document names dozens of each.
	if paths < 30 || names < 30 {
		t.Errorf("only %d paths and %d names found in %s: is the reference syntax still `dir/file.go` and `pkg.Name`?", paths, names, designDoc)
	}
}

// packageMap reads §4's table: package directory -> the module packages it
// imports (directories relative to the module root, "." for the root).
func packageMap(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "## 4. The package map")
	if !ok {
		t.Fatalf("%s has no section \"## 4. The package map\"", designDoc)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	rows := map[string][]string{}
	for line := range strings.SplitSeq(sec, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !strings.HasPrefix(line, "| `") || len(cells) < 3 {
			continue
		}
		first := backticked.FindStringSubmatch(cells[0])
		if first == nil {
			continue
		}
		dir := strings.TrimSuffix(first[1], "/")
		var imports []string
		for _, m := range backticked.FindAllStringSubmatch(cells[len(cells)-1], -1) {
			imports = append(imports, strings.TrimSuffix(m[1], "/"))
		}
		if _, dup := rows[dir]; dup {
			t.Errorf("%s §4 lists %s twice", designDoc, dir)
		}
		rows[dir] = imports
	}
	return rows
}

// imports lists the imports of dir's non-test sources.
func imports(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, f := range goFiles(t, dir, false) {
		pf, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range pf.Imports {
			p, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

// §4's package map is the code's: every package has a row, and a row's
// import list is exactly the module packages its (non-test) sources import.
// The third-party rules of §4 hold too.
func TestDesignPackageMap(t *testing.T) {
	rows := packageMap(t)
	dirs := packageDirs(t)
	for _, dir := range dirs {
		listed, ok := rows[dir]
		if !ok {
			t.Errorf("%s §4 has no row for package %s/: add what it owns and imports", designDoc, dir)
			continue
		}
		var actual []string
		for _, p := range imports(t, dir) {
			switch {
			case p == modulePath:
				actual = append(actual, ".")
			case strings.HasPrefix(p, modulePath+"/"):
				actual = append(actual, strings.TrimPrefix(p, modulePath+"/"))
			}
		}
		slices.Sort(actual)
		want := slices.Clone(listed)
		slices.Sort(want)
		if !slices.Equal(actual, want) {
			t.Errorf("%s §4: %s/ imports %v from the module; its row lists %v", designDoc, dir, actual, want)
		}
	}
	for dir := range rows {
		if !slices.Contains(dirs, dir) {
			t.Errorf("%s §4 has a row for %s/, which holds no Go package", designDoc, dir)
		}
	}

	forbidden := []struct {
		dirs     []string
		prefixes []string
	}{
		{[]string{"broker", "store", "store/memory"}, []string{"google.golang.org/grpc", "net/http", "github.com/redis/go-redis"}},
	}
	for _, f := range forbidden {
		for _, dir := range f.dirs {
			for _, p := range imports(t, dir) {
				for _, pre := range f.prefixes {
					if p == pre || strings.HasPrefix(p, pre+"/") {
						t.Errorf("%s/ imports %s, which §4 of %s forbids there", dir, p, designDoc)
					}
				}
			}
		}
	}
	for _, dir := range dirs {
		if dir == "token" {
			continue
		}
		for _, p := range imports(t, dir) {
			if strings.HasPrefix(p, "github.com/lestrrat-go/jwx") {
				t.Errorf("%s/ imports %s: only token/ may import jwx (%s §4)", dir, p, designDoc)
			}
		}
	}
}
