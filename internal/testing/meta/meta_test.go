package meta

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

const module = "github.com/rampartsec/rampart"

type goPackage struct {
	ImportPath   string
	Dir          string
	Name         string
	GoFiles      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
}

// listPackages runs `go list -deps=false -json ./...` from the module root.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	cmd := exec.Command(goTool, "list", "-json", "./...")
	cmd.Dir = filepath.Join("..", "..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// Every package has a doc comment on its package clause in some non-test
// file (tailscale's pkgdoc_test.go).
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		documented := false
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != "" {
				documented = true
				prefix := "Package " + p.Name + " "
				if p.Name == "main" {
					prefix = "Command "
				}
				if !strings.HasPrefix(file.Doc.Text(), prefix) {
					t.Errorf("%s: package comment in %s should start %q", p.ImportPath, f, prefix)
				}
			}
		}
		if !documented {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

// isPublic reports whether a package of the module is importable by users.
func isPublic(importPath string) bool {
	rel := strings.TrimPrefix(strings.TrimPrefix(importPath, module), "/")
	first, _, _ := strings.Cut(rel, "/")
	switch first {
	case "internal", "cmd", "examples", "bench":
		return false
	}
	return true
}

// Public packages import no database driver, no Redis client (except the
// Redis store adapter), no server or storage code and nothing of the
// application layer (internal/app: the assemblies and the commands): a user
// who pins a client does not link a database (tailscale's TestDeps idea).
func TestPublicPackageDeps(t *testing.T) {
	forbidden := []string{
		"database/sql",
		"modernc.org/sqlite",
		"github.com/jackc/pgx",
		"github.com/redis/go-redis",
		module + "/internal/controlplane",
		module + "/internal/store",
		module + "/internal/app",
		"net/http/pprof",
	}
	goTool, _ := exec.LookPath("go")
	public := 0
	for _, p := range listPackages(t) {
		if !isPublic(p.ImportPath) {
			continue
		}
		public++
		cmd := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", p.ImportPath)
		cmd.Dir = filepath.Join("..", "..", "..")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p.ImportPath, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep != f && !strings.HasPrefix(dep, f+"/") {
					continue
				}
				if strings.HasPrefix(f, "github.com/redis/go-redis") && p.ImportPath == module+"/ratelimit/redisstore" {
					continue
				}
				t.Errorf("public package %s depends on %s", p.ImportPath, dep)
			}
		}
	}
	if public == 0 {
		t.Fatal("no public packages found")
	}
}

func TestIsPublic(t *testing.T) {
	for path, want := range map[string]bool{
		module + "/pin":                  true,
		module + "/pin/report":           true,
		module + "/internal/app/cli":     false,
		module + "/cmd/rampart":          false,
		module + "/examples/payments":    false,
		module + "/ratelimit/redisstore": true,
	} {
		if got := isPublic(path); got != want {
			t.Errorf("isPublic(%s) = %v", path, got)
		}
	}
}

// `go test ./... -update` passes -update to every test binary, so every
// package with tests must define it: by importing internal/testing/golden.
func TestUpdateFlagEverywhere(t *testing.T) {
	for _, p := range listPackages(t) {
		imports := append(p.TestImports, p.XTestImports...)
		if len(imports) == 0 {
			continue
		}
		found := false
		for _, imp := range imports {
			found = found || imp == module+"/internal/testing/golden"
		}
		if !found && p.ImportPath != module+"/internal/testing/golden" {
			t.Errorf("the tests of %s do not import internal/testing/golden; go test ./... -update would fail there", p.ImportPath)
		}
	}
}
