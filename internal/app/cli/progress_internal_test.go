package cli

import (
	"bytes"
	"strings"
	"testing"
)

// The bar is drawn when the checks start, not when the first one ends:
// with every check hanging on a dead address, the terminal says what is
// running instead of staying blank (usability finding 18).
func TestProgressDrawsBeforeTheFirstStep(t *testing.T) {
	var b bytes.Buffer
	bar := newBar(&b, 2, "checking")
	if got := b.String(); !strings.Contains(got, "checking") || !strings.Contains(got, "0/2") {
		t.Fatalf("before any step the bar drew %q, want its blank state (checking, 0/2)", got)
	}
	bar.Add(1)
	bar.Finish()
}
