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

// newBrowser starts a headless Chromium of the given window width and
// signs it in to e's dashboard.
func newBrowser(t *testing.T, e *testEnv, width int) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(width, 1000),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.http.URL+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), testToken),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#timeline")),
	); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func evalJS[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// At a 1400 px window, what an incident needs is on screen: the Clients
// column of "Unexpected keys" and of the recent reports (no horizontal
// scrolling), full pins, "Last seen" on one line, the chart's time zone,
// and the last tick label of the 7-day chart inside the chart.
func TestDashboardLayoutAt1400px(t *testing.T) {
	chromium(t)
	e := newEnv(t, nil)
	seed(t, e)
	ctx := newBrowser(t, e, 1400)
	shot := func(name string) {
		if dir := os.Getenv("RAMPART_SCREENSHOTS"); dir != "" {
			b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err == nil {
				os.MkdirAll(dir, 0o755)
				os.WriteFile(filepath.Join(dir, name), b, 0o644)
			}
		}
	}
	shot("dashboard-1400.png")
	for _, table := range []string{"#by-served-pin", "#groups"} {
		js := fmt.Sprintf(`(() => {
			const t = document.querySelector(%q), card = t.closest('.card');
			const th = t.querySelector('thead th:last-child').getBoundingClientRect();
			return card.scrollWidth <= card.clientWidth && th.right <= card.getBoundingClientRect().right && th.right <= window.innerWidth;
		})()`, table)
		if !evalJS[bool](t, ctx, js) {
			t.Errorf("%s: the last column (Clients) is clipped or behind a scroll bar at 1400 px", table)
		}
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#by-served-pin tbody code.pin').textContent`); !strings.HasPrefix(got, "sha256/") || len(got) != 51 || strings.Contains(got, "…") {
		t.Errorf("the Unexpected keys table shows the pin %q, want it whole", got)
	}
	if lines := evalJS[int](t, ctx, `Math.max(...[...document.querySelectorAll('#groups td.when')].map(td => {
			const r = document.createRange(); r.selectNodeContents(td);
			return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }))`); lines != 1 {
		t.Errorf("a Last/First seen cell takes %d lines, want 1", lines)
	}
	if tz := evalJS[string](t, ctx, `document.querySelector('#axis-tz').textContent`); tz != "UTC" {
		t.Errorf("the chart's axis says %q, want UTC", tz)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.http.URL+"/?range=7d"), chromedp.WaitVisible(chromedp.CSS("#timeline"))); err != nil {
		t.Fatal(err)
	}
	shot("dashboard-1400-7d.png")
	inside := evalJS[bool](t, ctx, `(() => {
		const svg = document.querySelector('#timeline').getBoundingClientRect();
		return [...document.querySelectorAll('#timeline text.tick')].every(t => { const b = t.getBoundingClientRect(); return b.left >= svg.left - 0.5 && b.right <= svg.right + 0.5; });
	})()`)
	if !inside {
		t.Error("a tick label of the 7-day chart is cut at the chart's edge")
	}
}
