package cli

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a progress bar that draws only on a terminal.
type progress struct{ bar *progressbar.ProgressBar }

// newProgress returns a bar for n steps on w, or one that draws nothing
// when w is not a terminal (piped, redirected, or a test) or n < 2.
func newProgress(w io.Writer, n int, what string) *progress {
	f, ok := w.(*os.File)
	if !ok || n < 2 || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return newBar(w, n, what)
}

// newBar draws a bar on w at once, in its blank state: when every check
// hangs, the screen says that checks are running rather than nothing.
func newBar(w io.Writer, n int, what string) *progress {
	return &progress{bar: progressbar.NewOptions(n,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionThrottle(100_000_000), // redraw at most every 100 ms
	)}
}

func (p *progress) Add(n int) {
	if p.bar != nil {
		p.bar.Add(n)
	}
}

func (p *progress) Finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
