package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// chromium returns the browser to drive, from RAMPART_TEST_CHROMIUM; the
// test is skipped without it (.ci/run sets it).
func chromium(t *testing.T) string {
	path := os.Getenv("RAMPART_TEST_CHROMIUM")
	if path == "" {
		t.Skip("RAMPART_TEST_CHROMIUM is not set (e.g. /usr/bin/chromium)")
	}
	return path
}

// seed stores reports spread over the last day: two rogue keys, three
// domains, both modes, an app.
func seed(t *testing.T, e *testEnv) {
	t.Helper()
	rogue, other := rogueLeaves(t)
	now := e.clock.Now()
	var rs []store.Report
	for i := range 60 {
		at := now.Add(-time.Duration(i*23) * time.Minute)
		host := []string{"api.payments.test", "cdn.payments.test", "auth.payments.test"}[i%3]
		leaf, mode := rogue, pin.Enforce
		if i%4 == 0 {
			leaf, mode = other, pin.ReportOnly
		}
		body := rfc7469(t, host, mode, leaf, at)
		if i%5 == 0 {
			body = trustKit(t, host, "5.1.0", fmt.Sprint("device-", i), true, leaf)
		}
		c, device, err := parseReport(body)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, store.Report{Received: at, Source: fmt.Sprintf("198.51.100.%d", i%7), UserAgent: "seed", Device: device, Content: c})
	}
	if err := e.store.Reports().AddReports(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
}

// The dashboard in a real browser: sign in through the form, the chart
// renders with bars, the tables hold the seeded data, and the console
// stays free of errors (CSP violations included).
func TestDashboardInChromium(t *testing.T) {
	exec := chromium(t)
	e := newEnv(t, nil)
	seed(t, e)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exec),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1400),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	// Collect every console message, exception and browser log entry from
	// the first navigation on.
	cctx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(cctx)
	var (
		mu       sync.Mutex
		problems []string
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" || m.Type == "warning" || m.Type == "assert" {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s: %s (%s)", m.Type, m.Text, m.URL))
				mu.Unlock()
			}
		}
	}()

	err := chromedp.Do(ctx,
		chromedp.Navigate(e.http.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#timeline")),
	)
	if err != nil {
		t.Fatal(err)
	}
	eval := func(js string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return n
	}
	bars := eval(`[...document.querySelectorAll('#timeline rect.bar')].filter(r => r.getBBox().height > 0).length`)
	chartWidth := eval(`Math.round(document.querySelector('#timeline').getBoundingClientRect().width)`)
	servedRows := eval(`document.querySelectorAll('#by-served-pin tbody tr').length`)
	domainRows := eval(`document.querySelectorAll('#by-domain tbody tr').length`)
	total, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#total")))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let late console messages arrive
	stopConsole()
	<-done

	if dir := os.Getenv("RAMPART_SCREENSHOTS"); dir != "" {
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "dashboard.png"), shot, 0o644)
	}
	if strings.TrimSpace(total) != "60" {
		t.Errorf("total shown %q, want 60", total)
	}
	// 60 reports 23 minutes apart cover 23 hours: at least 20 hourly bars.
	if bars < 20 {
		t.Errorf("%d bars drawn with a height, want at least 20", bars)
	}
	if chartWidth < 500 {
		t.Errorf("the chart is %d px wide", chartWidth)
	}
	if servedRows != 2 || domainRows != 3 {
		t.Errorf("tables: %d served keys, %d domains; want 2 and 3", servedRows, domainRows)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(problems, "\n"))
	}
}
