package pin_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// The attack suite: each case is an attack or an operational event that
// pinning must get exactly right (RFC 7469 §2.6 validation semantics, applied
// to a client-side policy).

func mismatch(t *testing.T, err error) *pin.MismatchError {
	t.Helper()
	var me *pin.MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want a *pin.MismatchError", err)
	}
	return me
}

func TestAttackRogueTrustedCA(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))

	t.Run("real server accepted", func(t *testing.T) {
		if _, err := get(t, v, serve(t, w.leaf.TLS(), serverOptions{}), w.pool); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rogue CA refused", func(t *testing.T) {
		s := serve(t, w.rogueLeaf.TLS(), serverOptions{})
		// Without pinning the rogue certificate passes every CA check: the
		// incident this project exists for.
		plain := &http.Client{Transport: baseTransport(s.Listener.Addr().String(), w.pool)}
		resp, err := plain.Get("https://" + host + "/")
		if err != nil {
			t.Fatalf("unpinned client refused the rogue server (%v); the test PKI is wrong", err)
		}
		resp.Body.Close()

		_, err = get(t, v, s, w.pool)
		me := mismatch(t, err)
		if me.Host != host || len(me.Chains) != 1 || len(me.Chains[0]) != 3 {
			t.Fatalf("error = %+v, want one 3-certificate chain for %s", me, host)
		}
		if me.Chains[0][0].SPKI != spki(w.rogueLeaf) || me.Chains[0][2].Subject != w.rogueRoot.Cert.Subject.String() {
			t.Errorf("chain in error = %+v, want the rogue leaf up to the rogue root", me.Chains[0])
		}
		msg := err.Error()
		for _, want := range []string{spki(w.leaf).String(), w.backupPin.String(), spki(w.rogueLeaf).String(), "CN=Compromised Public CA"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error message lacks %q:\n%s", want, msg)
			}
		}
	})
}

// CVE-2016-2402: the attacker serves its rogue leaf with the real
// intermediate and root appended. A client that matches pins against the
// served certificates accepts it; one that matches the verified chain does
// not.
func TestAttackAppendedChain(t *testing.T) {
	w := newWorld(t)
	policy := mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{
		pin.FromCertificate(w.inter.Cert), pin.FromCertificate(w.root.Cert),
	}})
	s := serve(t, w.rogueLeaf.TLS(w.inter.Cert, w.root.Cert), serverOptions{})

	var served, verified [][]*x509.Certificate
	cfg, err := pin.NewVerifier(policy).TLSConfig(&tls.Config{RootCAs: w.pool, ServerName: host})
	if err != nil {
		t.Fatal(err)
	}
	hook := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		served = append(served, cs.PeerCertificates)
		verified = append(verified, cs.VerifiedChains...)
		return hook(cs)
	}
	_, err = tls.Dial("tcp", s.Listener.Addr().String(), cfg)
	me := mismatch(t, err)

	// The pinned certificates were served, so a served-chain matcher is
	// fooled...
	if len(served) != 1 || len(served[0]) != 4 {
		t.Fatalf("served %v, want one chain of 4 certificates (rogue leaf and intermediate, real intermediate and root)", served)
	}
	if r := policy.Check(host, [][]*x509.Certificate{served[0]}, time.Now()); !r.Matched {
		t.Fatal("a matcher over the served certificates should have been fooled; the attack chain is wrong")
	}
	// ...but the verified chain leads to the rogue root.
	if len(me.Chains) != 1 || me.Chains[0][2].Subject != w.rogueRoot.Cert.Subject.String() {
		t.Fatalf("verified chains in error = %+v, want the rogue chain", me.Chains)
	}
}

func TestPinOnUnservedRoot(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{pin.FromCertificate(w.root.Cert), w.backupPin}}))
	cfg, err := v.TLSConfig(&tls.Config{RootCAs: w.pool, ServerName: host})
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, w.leaf.TLS(), serverOptions{})
	conn, err := tls.Dial("tcp", s.Listener.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("pin on the root (from the trust store, never served) refused: %v", err)
	}
	defer conn.Close()
	for _, c := range conn.ConnectionState().PeerCertificates {
		if c.Equal(w.root.Cert) {
			t.Fatal("server sent the root; the case needs a root that is not served")
		}
	}
	r := v.Policy().Check(host, conn.ConnectionState().VerifiedChains, time.Now())
	if !r.Matched || r.Position != 2 {
		t.Fatalf("check = %+v, want a match at position 2 (the root)", r)
	}
}

func TestRenewal(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))

	t.Run("on the backup key accepted", func(t *testing.T) {
		renewed := w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}, Key: w.backupKey})
		if _, err := get(t, v, serve(t, renewed.TLS(), serverOptions{}), w.pool); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("on the same key accepted", func(t *testing.T) {
		renewed := w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}, Key: w.leaf.Key})
		if _, err := get(t, v, serve(t, renewed.TLS(), serverOptions{}), w.pool); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("on a fresh key refused", func(t *testing.T) {
		renewed := w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}})
		_, err := get(t, v, serve(t, renewed.TLS(), serverOptions{}), w.pool)
		mismatch(t, err)
	})
}

func TestCertificateFingerprintPins(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{pin.Fingerprint(w.leaf.Cert), w.backupPin}}))
	if _, err := get(t, v, serve(t, w.leaf.TLS(), serverOptions{}), w.pool); err != nil {
		t.Fatalf("pinned certificate refused: %v", err)
	}
	// A certificate pin breaks on renewal even on the same key: that is the
	// difference from an SPKI pin.
	renewed := w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{host}, Key: w.leaf.Key})
	_, err := get(t, v, serve(t, renewed.TLS(), serverOptions{}), w.pool)
	if me := mismatch(t, err); !strings.Contains(me.Error(), pin.Fingerprint(renewed.Cert).String()) {
		t.Errorf("error does not show the served certificate's fingerprint:\n%v", me)
	}
}

func TestExpiredPinSet(t *testing.T) {
	w := newWorld(t)
	expires := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	policy := mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}, Expires: expires})
	s := serve(t, w.rogueLeaf.TLS(), serverOptions{})

	for _, tc := range []struct {
		name    string
		now     time.Time
		refused bool
	}{
		{"last second of the expiry day still enforced", time.Date(2026, 1, 10, 23, 59, 59, 0, time.UTC), true},
		{"first second after it CA validation only", time.Date(2026, 1, 11, 0, 0, 0, 0, time.UTC), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			rec := new(recorder)
			v := pin.NewVerifier(policy)
			v.Now = func() time.Time { return tc.now }
			v.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			v.Reporter = rec
			_, err := get(t, v, s, w.pool)
			if tc.refused {
				mismatch(t, err)
				// The refusal is logged as the error it is, not as a
				// warning a scan of the logs would pass over.
				if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "connection refused") {
					t.Errorf("refusal not logged as an error; logs:\n%s", logs.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("expired pin set still enforced: %v", err)
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "pin set expired") {
				t.Errorf("no warning logged; logs:\n%s", logs.String())
			}
			f := rec.all()
			if len(f) != 1 || f[0].Reason != pin.ReasonExpired || f[0].Host != host {
				t.Fatalf("reported %+v, want one %s failure", f, pin.ReasonExpired)
			}
		})
	}
}

// collector is a local report endpoint (RFC 7469 §3 reports are POSTed as
// JSON). It keeps the raw bodies.
type collector struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	ct     []string
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.bodies = append(c.bodies, b)
		c.ct = append(c.ct, r.Header.Get("Content-Type"))
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) reports() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...)
}

func TestReportOnly(t *testing.T) {
	w := newWorld(t)
	col := newCollector(t)
	policy := mustPolicy(t, pin.Domain{Name: host, Mode: pin.ReportOnly, Pins: []pin.Pin{spki(w.leaf)}, ReportURI: col.URL + "/pins"})
	rep := &report.Reporter{}
	defer rep.Close()
	v := pin.NewVerifier(policy)
	v.Reporter = rep
	v.Logger = slog.New(slog.DiscardHandler)
	s := serve(t, w.rogueLeaf.TLS(), serverOptions{})

	if _, err := get(t, v, s, w.pool); err != nil {
		t.Fatalf("report-only mode refused the connection: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rep.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	bodies := col.reports()
	if len(bodies) != 1 {
		t.Fatalf("collector got %d reports, want 1", len(bodies))
	}
	if col.ct[0] != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", col.ct[0])
	}
	// RFC 7469 §3: every member of the report, with its JSON type.
	var r map[string]any
	if err := json.Unmarshal(bodies[0], &r); err != nil {
		t.Fatal(err)
	}
	checks := map[string]any{
		"hostname":                  host,
		"noted-hostname":            host,
		"include-subdomains":        false,
		"effective-expiration-date": nil,
		"known-pins":                []any{`pin-sha256="` + spki(w.leaf).Base64() + `"`},
		"rampart-mode":              "report-only",
		"rampart-reason":            "pin-mismatch",
	}
	for k, want := range checks {
		got, _ := json.Marshal(r[k])
		exp, _ := json.Marshal(want)
		if _, ok := r[k]; !ok || string(got) != string(exp) {
			t.Errorf("report[%q] = %s, want %s", k, got, exp)
		}
	}
	// The port of the URL the client asked for (the test dialer redirects
	// the TCP connection to the local server).
	if p, ok := r["port"].(float64); !ok || p != 443 {
		t.Errorf("report port = %v, want 443", r["port"])
	}
	if ts, _ := r["date-time"].(string); !strings.HasSuffix(ts, "Z") {
		t.Errorf("date-time = %v, want RFC 3339 UTC", r["date-time"])
	} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
		t.Errorf("date-time: %v", err)
	}
	if v, _ := r["rampart-library-version"].(string); v == "" {
		t.Error("rampart-library-version is empty")
	}
	served := pemCerts(t, r["served-certificate-chain"])
	validated := pemCerts(t, r["validated-certificate-chain"])
	if len(served) != 2 || !served[0].Equal(w.rogueLeaf.Cert) {
		t.Errorf("served chain = %d certs, want the rogue leaf and intermediate", len(served))
	}
	if len(validated) != 3 || !validated[2].Equal(w.rogueRoot.Cert) {
		t.Errorf("validated chain = %d certs, want it to end at the rogue root", len(validated))
	}
}

func pemCerts(t *testing.T, v any) []*x509.Certificate {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("chain is %T, want an array", v)
	}
	var out []*x509.Certificate
	for _, e := range list {
		s, _ := e.(string)
		b, rest := pem.Decode([]byte(s))
		if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("chain element is not one PEM certificate: %q", s)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestIncludeSubdomains(t *testing.T) {
	w := newWorld(t)
	rogue := serve(t, w.rogueLeaf.TLS(), serverOptions{})
	pins := []pin.Pin{spki(w.leaf), w.backupPin}

	t.Run("on: subdomain pinned", func(t *testing.T) {
		v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "payments.test", IncludeSubdomains: true, Pins: pins}))
		_, err := get(t, v, rogue, w.pool)
		if me := mismatch(t, err); me.Rule != "payments.test" {
			t.Errorf("rule = %q, want payments.test", me.Rule)
		}
	})
	t.Run("off: subdomain not pinned", func(t *testing.T) {
		v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "payments.test", Pins: pins}))
		if _, err := get(t, v, rogue, w.pool); err != nil {
			t.Fatalf("subdomain pinned by a rule without include_subdomains: %v", err)
		}
	})
	t.Run("most specific rule wins", func(t *testing.T) {
		v := pin.NewVerifier(mustPolicy(t,
			pin.Domain{Name: "payments.test", IncludeSubdomains: true, Pins: pins},
			pin.Domain{Name: host, Mode: pin.ReportOnly, Pins: pins},
		))
		v.Logger = slog.New(slog.DiscardHandler)
		if _, err := get(t, v, rogue, w.pool); err != nil {
			t.Fatalf("the exact report-only rule should win over the enforcing parent: %v", err)
		}
	})
}

func TestHostnameMismatch(t *testing.T) {
	w := newWorld(t)
	other := w.inter.Issue(t, testpki.LeafOptions{DNSNames: []string{"other.payments.test"}})
	// The pins match the certificate, but it is for another name: CA and
	// hostname validation run first and refuse it; pinning never widens
	// what they accept.
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(other), w.backupPin}}))
	_, err := get(t, v, serve(t, other.TLS(), serverOptions{}), w.pool)
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want an x509.HostnameError", err)
	}
}

func TestTLSVersionsAndHTTP2(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	for _, tc := range []struct {
		name    string
		o       serverOptions
		version uint16
		proto   int
	}{
		{"TLS 1.2", serverOptions{maxVersion: tls.VersionTLS12}, tls.VersionTLS12, 1},
		{"TLS 1.3", serverOptions{minVersion: tls.VersionTLS13}, tls.VersionTLS13, 1},
		{"HTTP/2", serverOptions{http2: true}, tls.VersionTLS13, 2},
		{"HTTP/2 over TLS 1.2", serverOptions{http2: true, maxVersion: tls.VersionTLS12}, tls.VersionTLS12, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := get(t, v, serve(t, w.leaf.TLS(), tc.o), w.pool)
			if err != nil {
				t.Fatal(err)
			}
			if resp.TLS.Version != tc.version || resp.ProtoMajor != tc.proto {
				t.Fatalf("got %s HTTP/%d, want %s HTTP/%d", tls.VersionName(resp.TLS.Version), resp.ProtoMajor, tls.VersionName(tc.version), tc.proto)
			}
			_, err = get(t, v, serve(t, w.rogueLeaf.TLS(), tc.o), w.pool)
			mismatch(t, err)
		})
	}
}

func TestIPAddressHost(t *testing.T) {
	w := newWorld(t)
	leaf := w.inter.Issue(t, testpki.LeafOptions{})       // localhost, 127.0.0.1
	rogue := w.rogueInter.Issue(t, testpki.LeafOptions{}) // the same names
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "127.0.0.1", Pins: []pin.Pin{spki(leaf), w.backupPin}}))
	base := &tls.Config{RootCAs: w.pool}
	ctx := context.Background()

	c, err := v.DialContext(ctx, "tcp", serve(t, leaf.TLS(), serverOptions{}).Listener.Addr().String(), base)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err = v.DialContext(ctx, "tcp", serve(t, rogue.TLS(), serverOptions{}).Listener.Addr().String(), base)
	if me := mismatch(t, err); me.Host != "127.0.0.1" {
		t.Errorf("host = %q, want 127.0.0.1", me.Host)
	}
}

// An IP address is not sent as SNI, so a hook on a config without
// ServerName cannot learn it; the pinned address must not silently become
// unpinned.
func TestIPAddressWithoutServerName(t *testing.T) {
	w := newWorld(t)
	leaf := w.inter.Issue(t, testpki.LeafOptions{})
	rogue := w.rogueInter.Issue(t, testpki.LeafOptions{})
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "127.0.0.1", Pins: []pin.Pin{spki(leaf), w.backupPin}}))
	cfg, err := v.TLSConfig(&tls.Config{RootCAs: w.pool})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	hook := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		names = append(names, cs.ServerName)
		return hook(cs)
	}
	c, err := tls.Dial("tcp", serve(t, leaf.TLS(), serverOptions{}).Listener.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err = tls.Dial("tcp", serve(t, rogue.TLS(), serverOptions{}).Listener.Addr().String(), cfg)
	if me := mismatch(t, err); me.Host != "127.0.0.1" {
		t.Errorf("host = %q, want 127.0.0.1", me.Host)
	}
	if len(names) != 2 || names[0] != "" {
		t.Fatalf("server names seen by the hook = %q; the case needs an empty one", names)
	}
}
