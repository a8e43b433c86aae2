package pin_test

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// Failure.Key is what makes two failures the same: everything a report of
// it says but the time.
func TestFailureKey(t *testing.T) {
	w := newWorld(t)
	a, b := pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))
	c := pin.Fingerprint(w.leaf.Cert)
	base := func() *pin.Failure {
		return &pin.Failure{
			Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Host: host, Port: 443,
			Domain: &pin.Domain{Name: "payments.test", IncludeSubdomains: true, Mode: pin.Enforce,
				Expires: time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC), Pins: []pin.Pin{a, b, c}},
			Reason: pin.ReasonMismatch,
			Served: w.rogueLeaf.Chain, Chains: [][]*x509.Certificate{w.rogueLeaf.Chain, w.leaf.Chain},
		}
	}
	key := base().Key()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(key) {
		t.Fatalf("key %q is not a hex SHA-256", key)
	}
	same := map[string]func(f *pin.Failure){
		"another time":          func(f *pin.Failure) { f.Time = f.Time.Add(time.Hour) },
		"another report URI":    func(f *pin.Failure) { f.Domain.ReportURI = "https://elsewhere.test/r" },
		"other verified chains": func(f *pin.Failure) { f.Chains = f.Chains[:1] },
		// A report lists SPKI pins and certificate pins apart.
		"SPKI and certificate pins interleaved": func(f *pin.Failure) { f.Domain.Pins = []pin.Pin{a, c, b} },
	}
	for name, change := range same {
		f := base()
		change(f)
		if got := f.Key(); got != key {
			t.Errorf("%s: key changed", name)
		}
	}
	differ := map[string]func(f *pin.Failure){
		"reason":             func(f *pin.Failure) { f.Reason = pin.ReasonExpired },
		"host":               func(f *pin.Failure) { f.Host = "cdn.payments.test" },
		"port":               func(f *pin.Failure) { f.Port = 8443 },
		"rule":               func(f *pin.Failure) { f.Domain.Name = "api.payments.test" },
		"mode":               func(f *pin.Failure) { f.Domain.Mode = pin.ReportOnly },
		"include subdomains": func(f *pin.Failure) { f.Domain.IncludeSubdomains = false },
		"expiry":             func(f *pin.Failure) { f.Domain.Expires = time.Time{} },
		"pins":               func(f *pin.Failure) { f.Domain.Pins = []pin.Pin{a, c} },
		"pin order":          func(f *pin.Failure) { f.Domain.Pins = []pin.Pin{b, a, c} },
		"served chain":       func(f *pin.Failure) { f.Served = f.Served[:1] },
		"served leaf":        func(f *pin.Failure) { f.Served = w.leaf.Chain },
		"first chain":        func(f *pin.Failure) { f.Chains = f.Chains[1:] },
		"no verified chain":  func(f *pin.Failure) { f.Chains = nil },
	}
	seen := map[string]string{key: "base"}
	for name, change := range differ {
		f := base()
		change(f)
		k := f.Key()
		if other, ok := seen[k]; ok {
			t.Errorf("%s: same key as %s", name, other)
		}
		seen[k] = name
	}
}

// The verifier logs a failure once a day per key: a second handshake
// failing the same way is not logged again; one failing another way is.
func TestVerifierLogsOncePerFailureKey(t *testing.T) {
	w := newWorld(t)
	policy := mustPolicy(t, pin.Domain{Name: host, Mode: pin.ReportOnly, Pins: []pin.Pin{spki(w.leaf)}})
	var logs bytes.Buffer
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	v := pin.NewVerifier(policy)
	v.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	v.Now = func() time.Time { return now }
	rogue := serve(t, w.rogueLeaf.TLS(), serverOptions{})
	other := serve(t, w.rogueInter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}}).TLS(), serverOptions{})
	for _, srv := range []*httptest.Server{rogue, rogue, other, rogue} {
		resp, err := get(t, v, srv, w.pool)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		now = now.Add(time.Minute)
	}
	if n := strings.Count(logs.String(), "pin validation failed"); n != 2 {
		t.Errorf("%d records, want 2 (one per distinct failure):\n%s", n, logs.String())
	}
}
