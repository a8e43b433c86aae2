package meta

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// deps returns the non-standard packages in the dependency closure of
// pkg (pkg included).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	cmd := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
	cmd.Dir = filepath.Join("..", "..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// within reports whether dep is one of prefixes or below one.
func within(dep string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return dep == p || strings.HasPrefix(dep, p+"/") })
}

// A resource server that imports token to check tokens links go-jose, a
// JSON decoder, the caller package and the standard library, nothing of
// the authorization server: no rate limiter, no Prometheus, no YAML, no
// API-key store (issue 11 §3). The caller package itself is a leaf: the
// standard library and the refusal writers.
func TestValidatorDeps(t *testing.T) {
	for _, tc := range []struct {
		pkg     string
		allowed []string
	}{
		{module + "/token", []string{
			module + "/token", module + "/token/internal", module + "/auth", module + "/internal/util/httpx",
			"github.com/go-jose/go-jose/v4", "github.com/go-json-experiment/json",
		}},
		{module + "/auth", []string{module + "/auth", module + "/internal/util/httpx"}},
	} {
		for _, dep := range deps(t, tc.pkg) {
			if !within(dep, tc.allowed) {
				t.Errorf("%s depends on %s; it may depend on the standard library and %s only", tc.pkg, dep, strings.Join(tc.allowed, ", "))
			}
		}
	}
	for _, dep := range deps(t, module+"/token") {
		for _, f := range []string{module + "/ratelimit", "github.com/prometheus", "go.yaml.in/yaml", "gopkg.in/yaml", module + "/apikey", module + "/token/authserver"} {
			if within(dep, []string{f}) {
				t.Errorf("token depends on %s", dep)
			}
		}
	}
}

// sourceFiles returns the parsed non-test Go files of the module, by
// path relative to its root, skipping testdata.
func sourceFiles(t *testing.T) map[string]*ast.File {
	t.Helper()
	files := map[string]*ast.File{}
	fset := token.NewFileSet()
	for _, p := range listPackages(t) {
		for _, f := range p.GoFiles {
			path := filepath.Join(p.Dir, f)
			file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
			files[filepath.ToSlash(filepath.Join(rel, f))] = file
		}
	}
	return files
}

// Every refusal is written by one of internal/util/httpx's two writers (issue
// 11 §4): no other code spells out a problem-details media type or an
// OAuth error body's members. Struct tags (a client decoding such a
// body) are not answers.
func TestRefusalsHaveOneWriter(t *testing.T) {
	for path, f := range sourceFiles(t) {
		if strings.HasPrefix(path, "internal/util/httpx/") {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				return false // its tag, if any: a client decoding such a body
			case *ast.CallExpr:
				// A log line's attributes are not an answer.
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "slog" {
						return false
					}
				}
			}
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, banned := range []string{"application/problem+json", "error_description"} {
				if strings.Contains(s, banned) {
					t.Errorf("%s: %q: refusals are written by internal/util/httpx (WriteProblem, WriteOAuthError)", path, s)
				}
			}
			return true
		})
	}
}

// errorTextRewords are the files allowed to reword an error's text:
// foreign errors with no typed form of their message (yaml.v3's and
// encoding/json's "yaml: " and "json: " prefixes), never to decide.
var errorTextRewords = map[string]bool{
	"pin/policy.go":                    true,
	"internal/app/edge/file.go":        true,
	"ratelimit/config.go":              true,
	"pin/report/parse.go":              true,
	"internal/store/storetest/auth.go": true, // a test suite in a non-test file
}

// readers are the strings (and bytes) functions that look into a text
// or cut it: given an error's text, a decision or a prefix stripper.
var readers = map[string]bool{
	"HasPrefix": true, "HasSuffix": true, "Contains": true, "ContainsAny": true, "ContainsRune": true,
	"Cut": true, "CutPrefix": true, "CutSuffix": true, "Index": true, "IndexAny": true, "IndexByte": true,
	"LastIndex": true, "EqualFold": true, "Count": true, "TrimPrefix": true, "TrimSuffix": true,
	"Trim": true, "TrimLeft": true, "TrimRight": true, "Fields": true, "Split": true, "SplitN": true,
}

// No decision is taken by reading an error's text (issue 11 §4): outside
// errorTextRewords, no non-test code hands err.Error() to a strings
// function that reads or cuts it, or compares it. errors.Is, errors.As
// and typed errors say what an error is; a description field says what
// to show. (Indenting a message, strings.ReplaceAll, is neither.)
func TestNoDecisionOnErrorText(t *testing.T) {
	isErrorCall := func(e ast.Expr) bool {
		c, ok := e.(*ast.CallExpr)
		if !ok || len(c.Args) != 0 {
			return false
		}
		sel, ok := c.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "Error"
	}
	for path, f := range sourceFiles(t) {
		if errorTextRewords[path] {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if pkg, ok := sel.X.(*ast.Ident); !ok || (pkg.Name != "strings" && pkg.Name != "bytes") || !readers[sel.Sel.Name] {
					return true
				}
				for _, a := range n.Args {
					if isErrorCall(a) {
						t.Errorf("%s: strings.%s(....Error()): decide with errors.Is/As, show a description", path, sel.Sel.Name)
					}
				}
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (isErrorCall(n.X) || isErrorCall(n.Y)) {
					t.Errorf("%s: comparing .Error(): decide with errors.Is/As", path)
				}
			}
			return true
		})
	}
}

// testOnly are the packages only tests may import: everything under
// internal/testing (test PKIs, database and golden-file helpers, these
// tests), the store conformance suite and the raw-socket framing checks.
var testOnly = []string{
	module + "/internal/testing",
	module + "/internal/store/storetest",
	module + "/internal/util/httpx/httpxtest",
}

// The rampart binary links no test-only package and nothing of examples/
// (issue 11 §7): the demo builds its PKI with internal/util/pki and serves its
// own payment API, so an example stays an example that nothing imports.
func TestBinaryDeps(t *testing.T) {
	bin := deps(t, module+"/cmd/rampart")
	if !slices.Contains(bin, module+"/internal/app/cli") {
		t.Fatalf("go list -deps cmd/rampart does not list internal/app/cli: %v", bin)
	}
	for _, dep := range bin {
		if within(dep, testOnly) || within(dep, []string{module + "/examples"}) {
			t.Errorf("the rampart binary links %s", dep)
		}
	}
}
