// Package golden compares test output with files under testdata and owns
// the -update flag that rewrites them. Every package with tests imports
// it (the ones without golden files with a blank import), so that
// `go test ./... -update` is accepted by every test binary.
package golden

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

// Update is the -update flag: rewrite golden files and testscript
// transcripts instead of comparing with them.
var Update = flag.Bool("update", false, "rewrite golden files and transcripts")

// Check compares got with the file, or rewrites the file under -update.
func Check(t testing.TB, file string, got []byte) {
	t.Helper()
	if *Update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test -update and review the diff):\n%s", file, got)
	}
}
