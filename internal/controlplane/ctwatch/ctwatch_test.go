package ctwatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/controlplane/ctwatch"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/postgres"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	_ "github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/internal/testing/pgtest"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// receiver is a webhook endpoint that checks signatures, refuses the
// first deliveries, and records the ones it accepts.
type receiver struct {
	t      *testing.T
	secret []byte
	refuse int

	mu       sync.Mutex
	seen     int
	accepted map[int64][]map[string]any // by alert ID
	at       map[int64]time.Time
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sig := r.Header.Get(ctwatch.SignatureHeader)
	if err := ctwatch.Verify(rc.secret, sig, body, time.Now(), time.Minute); err != nil {
		rc.t.Errorf("a delivery with a bad signature %q: %v", sig, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.seen++
	if rc.seen <= rc.refuse {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var d map[string]any
	if err := json.Unmarshal(body, &d); err != nil {
		rc.t.Errorf("delivery %s: %v", body, err)
	}
	id := int64(d["alert_id"].(float64))
	rc.accepted[id] = append(rc.accepted[id], d)
	if _, ok := rc.at[id]; !ok {
		rc.at[id] = time.Now()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.accepted)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoInstancesOneDatabase runs two control-plane watchers on one
// PostgreSQL database against a real log: they split the work (every
// entry judged once in all), raise one alert per certificate, deliver
// each once to a webhook that refuses the first attempts, and catch a new
// rogue certificate within a poll interval.
func TestTwoInstancesOneDatabase(t *testing.T) {
	dsn := pgtest.Database(t)
	open := func() store.Store {
		db, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	runWatchers(t, open(), open())
}

// TestWatcherSQLite is the same on the default store, one instance.
func TestWatcherSQLite(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	runWatchers(t, db)
}

func runWatchers(t *testing.T, stores ...store.Store) {
	good := testpki.NewRoot(t, "Good Root")
	goodInt := good.NewIntermediate(t, "Good Issuing CA")
	rogue := testpki.NewRoot(t, "Rogue Root")
	leafKey := testpki.NewKey(t, testpki.ECDSAP256)
	backupKey := testpki.NewKey(t, testpki.ECDSAP256)
	leafPin, _ := pin.FromPrivateKey(leafKey)
	backupPin, _ := pin.FromPrivateKey(backupKey)
	policy, err := pin.NewPolicy("", pin.Domain{Name: "api.pay.example", Pins: []pin.Pin{leafPin, backupPin},
		Roles: map[pin.Pin]pin.Role{backupPin: pin.RoleBackup}})
	if err != nil {
		t.Fatal(err)
	}
	log := ctlog.Start(t, good.Cert, rogue.Cert)
	logs, err := ct.ParseLogList(log.LogList(t))
	if err != nil {
		t.Fatal(err)
	}
	rogueIdx := log.Submit(t, rogue, nil, true, "api.pay.example")
	log.Submit(t, goodInt, backupKey, false, "api.pay.example")
	log.Submit(t, goodInt, leafKey, false, "api.pay.example")
	log.Submit(t, goodInt, nil, false, "www.unrelated.example")
	log.WaitSize(t, 5)

	rc := &receiver{t: t, secret: []byte("0123456789abcdef-webhook"), refuse: 2, accepted: map[int64][]map[string]any{}, at: map[int64]time.Time{}}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	const poll = 300 * time.Millisecond
	var regs []*prometheus.Registry
	var watchers []*ctwatch.Watcher
	for i, st := range stores {
		reg := prometheus.NewRegistry()
		regs = append(regs, reg)
		w, err := ctwatch.New(context.Background(), ctwatch.Config{
			Store: st.CT(), Logs: logs, Judge: func(context.Context) (*ct.Judge, error) { return ct.NewJudge(policy, nil, nil) },
			Poll: poll, Start: ct.Start{Beginning: true}, Owner: fmt.Sprint("instance-", i), LeaseTTL: 2 * time.Second,
			Webhook:  &ctwatch.Webhook{URL: hook.URL, Secret: rc.secret, RetryBase: 50 * time.Millisecond},
			Registry: reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		w.Start(context.Background())
		watchers = append(watchers, w)
	}
	defer func() {
		for _, w := range watchers {
			w.Close()
		}
	}()
	// Two alerts: the rogue certificate (once for its precertificate and
	// certificate) and the unannounced rollover.
	waitFor(t, "two alerts delivered", func() bool { return rc.count() == 2 })
	judged := func() float64 {
		var n float64
		for _, reg := range regs {
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				if mf.GetName() == "rampart_ct_entries_judged_total" {
					for _, m := range mf.GetMetric() {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
		return n
	}
	waitFor(t, "every entry judged", func() bool { return judged() >= 5 })
	time.Sleep(3 * poll)
	if n := judged(); n != 5 {
		t.Errorf("%v entries judged by the instances together, the log has 5", n)
	}
	rc.mu.Lock()
	for id, ds := range rc.accepted {
		if len(ds) != 1 {
			t.Errorf("alert %d delivered %d times", id, len(ds))
		}
	}
	classes := map[string]bool{}
	for _, ds := range rc.accepted {
		classes[ds[0]["class"].(string)] = true
		f := ds[0]["finding"].(map[string]any)
		if ds[0]["class"] == "rogue" && f["index"].(float64) != float64(rogueIdx[0]) {
			t.Errorf("the rogue alert names entry %v, not the precertificate %d", f["index"], rogueIdx[0])
		}
	}
	rc.mu.Unlock()
	if !classes["rogue"] || !classes["rollover"] {
		t.Errorf("alerts %v", classes)
	}
	certs, err := stores[0].CT().Certificates(context.Background(), store.CTFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 || certs[0].Class != ct.Rogue || certs[0].Sightings != 2 {
		t.Errorf("certificates: %d, first %+v", len(certs), certs[0])
	}

	// A rogue certificate logged now is caught within a poll interval.
	before := rc.count()
	start := time.Now()
	log.Submit(t, rogue, nil, false, "api.pay.example")
	waitFor(t, "the new rogue certificate's alert", func() bool { return rc.count() == before+1 })
	t.Logf("detection latency (add-chain answered, with the checkpoint covering the entry, to the webhook delivery): %v with a %v poll interval", time.Since(start).Round(time.Millisecond), poll)

	var failing, tree float64
	for _, reg := range regs {
		if n, err := testutil.GatherAndCount(reg, "rampart_ct_log_tree_size"); err != nil || n != 1 {
			t.Errorf("rampart_ct_log_tree_size: %d series, %v", n, err)
		}
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			switch mf.GetName() {
			case "rampart_ct_log_failing":
				failing += mf.GetMetric()[0].GetGauge().GetValue()
			case "rampart_ct_log_tree_size":
				tree = max(tree, mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
	}
	if failing != 0 || tree != 6 {
		t.Errorf("metrics: failing %v, tree size %v", failing, tree)
	}
}

// TestHostileCertificate: a certificate anyone can log with thousands of
// names, names that are not text and a huge issuer is stored (bounded and
// cleaned), never refused: a refused sighting would stop the monitor on
// that entry forever.
func TestHostileCertificate(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	names := []string{"api.pay.example", "bad\x00name", "\xff\xfe.pay.example", "\x1b[31mred.pay.example"}
	for range 64 {
		names = append(names, strings.Repeat("<", 480)+".pay.example") // JSON escapes each < to six bytes
	}
	for i := range 5000 {
		names = append(names, fmt.Sprintf("n%d.pay.example", i))
	}
	issuer := strings.Repeat("CN=\x1b]0;title\x07", 10000)
	logs := []ct.Log{{Description: "log\x00name", ID: [32]byte{1}, URL: "https://ct.example/"}}
	f := &ct.Finding{Log: &logs[0], Index: 3, Timestamp: time.Now(), Certificate: &ct.Certificate{Issuer: issuer, SPKI: []byte{1}, TBSHash: [32]byte{9}},
		Verdict: ct.Verdict{Class: ct.Rogue, Names: names, SPKI: pin.FromSPKI([]byte{1})}, ChainIssuers: []string{issuer}}
	w, err := ctwatch.New(context.Background(), ctwatch.Config{Store: db.CT(), Logs: logs,
		Judge: func(context.Context) (*ct.Judge, error) { return ct.NewJudge(nil, []string{"pay.example"}, nil) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctwatch.SinkOf(w).Found(context.Background(), f); err != nil {
		t.Fatalf("a hostile certificate was refused: %v", err)
	}
	certs, err := db.CT().Certificates(context.Background(), store.CTFilter{})
	if err != nil || len(certs) != 1 {
		t.Fatal(certs, err)
	}
	c := certs[0]
	if len(c.Names) == 0 || len(c.Names) > 64 || len(c.Issuer) > 512 || strings.ContainsAny(c.Issuer, "\x1b\x07") || strings.ContainsRune(strings.Join(c.Names, ""), 0) || len(c.Finding) > 64<<10 {
		t.Errorf("stored %d names, issuer of %d bytes, finding of %d bytes", len(c.Names), len(c.Issuer), len(c.Finding))
	}
}

// TestVerify: a receiver's check refuses a changed body, another secret,
// a stale or future time and a malformed header (RFC 2104 HMAC).
func TestVerify(t *testing.T) {
	secret := []byte("0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"ct.alert"}`)
	sig := ctwatch.Sign(secret, now, body)
	if err := ctwatch.Verify(secret, sig, body, now.Add(30*time.Second), time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		secret []byte
		sig    string
		body   []byte
		at     time.Time
	}{
		"changed body":    {secret, sig, []byte(`{"type":"ct.alert "}`), now},
		"another secret":  {[]byte("fedcba9876543210"), sig, body, now},
		"replayed later":  {secret, sig, body, now.Add(2 * time.Minute)},
		"from the future": {secret, sig, body, now.Add(-2 * time.Minute)},
		"no time":         {secret, strings.TrimPrefix(sig, "t="), body, now},
		"truncated MAC":   {secret, sig[:len(sig)-2], body, now},
	} {
		if err := ctwatch.Verify(c.secret, c.sig, c.body, c.at, time.Minute); !errors.Is(err, ctwatch.ErrBadSignature) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestWebhookRefusesRedirects: a delivery goes to the configured URL only;
// a redirect is a failed attempt, and the URL (which may hold the
// receiver's secret) is in no error kept.
func TestWebhookRefusesRedirects(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	elsewhere := 0
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere++ }))
	defer other.Close()
	redirect := httptest.NewServer(http.RedirectHandler(other.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	logs := []ct.Log{{Description: "log", ID: [32]byte{1}, URL: "https://ct.example/"}}
	for _, hook := range []string{redirect.URL + "/hook/s3cr3t-token", "http://127.0.0.1:1/hook/s3cr3t-token"} {
		w, err := ctwatch.New(context.Background(), ctwatch.Config{Store: db.CT(), Logs: logs,
			Judge:   func(context.Context) (*ct.Judge, error) { return ct.NewJudge(nil, []string{"pay.example"}, nil) },
			Webhook: &ctwatch.Webhook{URL: hook, Secret: []byte("0123456789abcdef")}})
		if err != nil {
			t.Fatal(err)
		}
		f := &ct.Finding{Log: &logs[0], Index: int64(len(hook)), Timestamp: time.Now(), Certificate: &ct.Certificate{SPKI: []byte{1}, TBSHash: [32]byte{byte(len(hook))}},
			Verdict: ct.Verdict{Class: ct.Rogue, Names: []string{"api.pay.example"}, SPKI: pin.FromSPKI([]byte{1})}}
		if err := ctwatch.SinkOf(w).Found(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		ctwatch.DeliverDue(w, context.Background())
	}
	if elsewhere != 0 {
		t.Errorf("the redirect was followed %d times", elsewhere)
	}
	due, err := db.CT().DueAlerts(context.Background(), "check", time.Now().Add(time.Hour), time.Minute, 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("%d alerts due for a retry, %v", len(due), err)
	}
	for _, a := range due {
		if a.Attempts != 1 || a.LastError == "" || strings.Contains(a.LastError, "s3cr3t") {
			t.Errorf("alert %d: %d attempts, last error %q", a.ID, a.Attempts, a.LastError)
		}
	}
}
