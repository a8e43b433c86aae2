package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// fakeCT is the monitor's view: its store's certificates and a fixed log.
type fakeCT struct {
	st   store.Store
	logs []ct.Log
}

func (f *fakeCT) Status() []ct.LogStatus {
	return []ct.LogStatus{{Log: &f.logs[0], Head: ct.Head{Size: 1000}, Next: 990, Behind: 10, LastPoll: time.Now()}}
}

func (f *fakeCT) Certificates(ctx context.Context, flt store.CTFilter) ([]store.CTCertificate, error) {
	return f.st.CT().Certificates(ctx, flt)
}

// ctEnv is a control plane whose CT monitor has seen a rogue certificate on
// the key of the seeded reports, a rollover and an expected certificate.
func ctEnv(t *testing.T) (*testEnv, pin.Pin) {
	view := &fakeCT{logs: []ct.Log{{Description: "Test Log 2026", ID: [32]byte{7}, URL: "https://ct.example/"}}}
	e := newEnv(t, func(c *Config) { view.st = c.Store; c.CT = view })
	seed(t, e)
	rogue, _ := rogueLeaves(t)
	roguePin := pin.FromCertificate(rogue.Cert)
	for i, c := range []struct {
		class ct.Class
		spki  string
	}{{ct.Expected, "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}, {ct.Rollover, "sha256/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="}, {ct.Rogue, roguePin.String()}} {
		h := sha256.Sum256([]byte(c.spki))
		finding, _ := json.Marshal(map[string]any{"log": "Test Log 2026", "index": 100 + i, "precertificate": c.class == ct.Rogue,
			"rules": []map[string]any{{"rule": "api.payments.test", "mode": "enforce", "class": c.class}}})
		if _, err := e.store.CT().AddSighting(context.Background(), store.CTSighting{LogID: "log", Log: "Test Log 2026", Index: int64(100 + i),
			Logged: time.Now(), Seen: time.Now(), TBSHash: hex.EncodeToString(h[:]), Class: c.class, Alert: c.class != ct.Expected,
			SPKI: c.spki, Issuer: "CN=Compromised Issuing CA", Names: []string{"api.payments.test"}, Finding: finding}); err != nil {
			t.Fatal(err)
		}
	}
	return e, roguePin
}

// TestCTAPI: GET /v1/admin/ct lists the monitor's logs and certificates,
// rogue first, the rogue key with the clients whose reports name it.
func TestCTAPI(t *testing.T) {
	e, roguePin := ctEnv(t)
	code, _, body := e.do(t, "GET", "/v1/admin/ct", nil, "Authorization", "Bearer "+testToken)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var doc struct {
		Logs []struct {
			Behind int64 `json:"behind"`
		} `json:"logs"`
		Certificates []struct {
			Class   string `json:"class"`
			SPKI    string `json:"spki"`
			Clients int64  `json:"reported_by_clients"`
			Reports int64  `json:"reports"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Certificates) != 3 || doc.Certificates[0].Class != "rogue" || doc.Certificates[0].SPKI != roguePin.String() ||
		doc.Certificates[0].Reports == 0 || doc.Certificates[0].Clients == 0 || doc.Certificates[2].Class != "expected" || doc.Logs[0].Behind != 10 {
		t.Errorf("%s", body)
	}
	if code, _, _ := e.do(t, "GET", "/v1/admin/ct", nil); code != http.StatusUnauthorized {
		t.Errorf("without the admin token: %d", code)
	}
	if code, _, body := e.do(t, "GET", "/v1/admin/ct?class=rogue", nil, "Authorization", "Bearer "+testToken); code != http.StatusBadRequest {
		t.Errorf("an unknown parameter: %d %s", code, body)
	}
	off := newEnv(t, nil)
	if code, _, body := off.do(t, "GET", "/v1/admin/ct", nil, "Authorization", "Bearer "+testToken); code != http.StatusNotFound || !strings.Contains(string(body), "--ct-logs") {
		t.Errorf("without a monitor: %d %s", code, body)
	}
}

// TestCTViewInChromium: the dashboard's CT view in a real browser: the
// rogue certificate first, its key whole, "seen by N clients" linking to
// the dashboard filtered by that key, the logs' state; no console error.
func TestCTViewInChromium(t *testing.T) {
	chromium(t)
	e, roguePin := ctEnv(t)
	ctx := newBrowser(t, e, 1400)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#ct-link")), chromedp.WaitVisible(chromedp.CSS("#ct-certificates"))); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("RAMPART_SCREENSHOTS"); dir != "" {
		if b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "ct.png"), b, 0o644)
		}
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#ct-certificates tbody tr').className`); got != "ct-rogue" {
		t.Errorf("the first row is %q, want the rogue certificate", got)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#ct-certificates tbody tr code.pin').textContent`); got != roguePin.String() {
		t.Errorf("the rogue row shows the key %q", got)
	}
	seen := evalJS[string](t, ctx, `document.querySelector('#ct-certificates tbody tr td.seen-by a').textContent`)
	if !strings.HasPrefix(seen, "seen by ") || strings.HasPrefix(seen, "seen by 0") {
		t.Errorf("seen-by cell %q", seen)
	}
	if got := evalJS[int](t, ctx, `document.querySelectorAll('#ct-certificates tbody tr').length`); got != 3 {
		t.Errorf("%d certificate rows", got)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#ct-logs tbody tr').textContent`); !strings.Contains(got, "Test Log 2026") || !strings.Contains(got, "ok") {
		t.Errorf("log row %q", got)
	}
	// The link opens the report dashboard filtered by the rogue key.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#ct-certificates td.seen-by a")), chromedp.WaitVisible(chromedp.CSS("#active-filter"))); err != nil {
		t.Fatal(err)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#active-filter code.pin').textContent`); got != roguePin.String() {
		t.Errorf("the dashboard is filtered by %q", got)
	}
}
