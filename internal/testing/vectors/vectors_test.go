package vectors

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
	"github.com/rampartsec/rampart/pin/report"
)

// dir is the committed vector directory.
var dir = filepath.Join("..", "..", "..", "clients", "testdata", "vectors")

func load(t *testing.T) (*BundleFile, *PKIFile) {
	t.Helper()
	if *golden.Update {
		if err := Write(dir); err != nil {
			t.Fatal(err)
		}
	}
	b, p, err := Read(dir)
	if err != nil {
		t.Fatalf("reading the vectors (regenerate with go test ./internal/testing/vectors -update): %v", err)
	}
	return b, p
}

// TestVectorsAreCurrent checks that the committed files hold the cases
// the generator writes, in its order: a case added to the generator and
// not regenerated fails here.
func TestVectorsAreCurrent(t *testing.T) {
	b, p := load(t)
	gb, err := BuildBundles()
	if err != nil {
		t.Fatal(err)
	}
	gp, err := BuildPKI()
	if err != nil {
		t.Fatal(err)
	}
	names := func(n int, f func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	if got, want := names(len(b.Cases), func(i int) string { return b.Cases[i].Name }), names(len(gb.Cases), func(i int) string { return gb.Cases[i].Name }); !slices.Equal(got, want) {
		t.Errorf("bundle cases in %s:\n got %v\nwant %v\n(go test ./internal/testing/vectors -update)", BundlesFile, got, want)
	}
	if got, want := names(len(p.Cases), func(i int) string { return p.Cases[i].Name }), names(len(gp.Cases), func(i int) string { return gp.Cases[i].Name }); !slices.Equal(got, want) {
		t.Errorf("PKI cases in %s:\n got %v\nwant %v\n(go test ./internal/testing/vectors -update)", PKIFileName, got, want)
	}
	for _, c := range p.Cases {
		for _, n := range append(slices.Clone(c.Roots), c.Served...) {
			crt, ok := p.Certificates[n]
			if !ok {
				t.Fatalf("%s: no certificate %q", c.Name, n)
			}
			if cert := parseCert(t, crt.PEM); time.Until(cert.NotAfter) < 90*24*time.Hour {
				t.Errorf("certificate %s expires %s: regenerate the vectors", n, cert.NotAfter)
			}
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// classOf maps an Updater error to the vectors' error class.
func classOf(err error) string {
	for class, s := range map[string]error{
		ErrMalformed: bundle.ErrMalformed, ErrUnknownKey: bundle.ErrUnknownKey, ErrBadSignature: bundle.ErrBadSignature,
		ErrExpired: bundle.ErrExpired, ErrNotYetValid: bundle.ErrNotYetValid, ErrRollback: bundle.ErrRollback, ErrWrongName: bundle.ErrWrongName,
	} {
		if errors.Is(err, s) {
			return class
		}
	}
	return "other: " + err.Error()
}

// Input returns the bundle the case hands to the client.
func (c *BundleCase) Input() string {
	if c.Oversize != nil {
		return c.Oversize.Prefix + strings.Repeat("A", c.Oversize.Length-len(c.Oversize.Prefix))
	}
	return c.JWS
}

// TestBundleVectors runs every bundle vector through the Go client: an
// Updater that loads the floor from its cache file and is handed the
// bundle ([bundle.Updater.Apply]).
func TestBundleVectors(t *testing.T) {
	f, _ := load(t)
	keys, err := bundle.ParseKeys(f.Keys)
	if err != nil {
		t.Fatal(err)
	}
	pemKeys, err := bundle.ParseKeys([]byte(f.PEMKeys))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys.IDs(), pemKeys.IDs()) {
		t.Fatalf("keys and pem_keys differ: %v, %v", keys.IDs(), pemKeys.IDs())
	}
	embedded, err := pin.ParsePolicy(f.Embedded)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "bundle.jws")
			if c.Floor != "" {
				if err := os.WriteFile(cache, []byte(c.Floor+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			now := time.Unix(c.Now, 0)
			u := &bundle.Updater{URL: f.URL, Name: f.Name, Keys: keys, Embedded: embedded, Verifier: pin.NewVerifier(embedded),
				CacheFile: cache, MinVersion: f.MinVersion, Now: func() time.Time { return now }, Logger: discard()}
			if err := u.Load(); err != nil {
				t.Fatal(err)
			}
			if st := u.State(); st.CacheError != "" {
				t.Fatalf("the floor of the vector does not load: %s", st.CacheError)
			}
			before := u.State().Updates
			err := u.Apply(c.Input())
			st := u.State()
			switch c.Expect.Result {
			case "refuse":
				if err == nil {
					t.Fatalf("accepted; want refused (%s)", c.Expect.Error)
				}
				if got := classOf(err); got != c.Expect.Error {
					t.Errorf("refused as %s (%v); want %s", got, err, c.Expect.Error)
				}
			case "apply", "unchanged":
				if err != nil {
					t.Fatalf("refused: %v; want %s", err, c.Expect.Result)
				}
				if applied := st.Updates > before; applied != (c.Expect.Result == "apply") {
					t.Errorf("applied = %v; want %s", applied, c.Expect.Result)
				}
			default:
				t.Fatalf("unknown result %q", c.Expect.Result)
			}
			if st.Version != c.Expect.Version {
				t.Errorf("version in effect %d; want %d", st.Version, c.Expect.Version)
			}
			raw, err := u.Verifier.Policy().MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Domains json.RawMessage `json:"domains"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, doc.Domains, c.Expect.Effective) {
				t.Errorf("effective domains\n got %s\nwant %s", doc.Domains, c.Expect.Effective)
			}
		})
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func parseCert(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type capture struct {
	mu sync.Mutex
	fs []*pin.Failure
}

func (c *capture) Report(f *pin.Failure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fs = append(c.fs, f)
}

// TestPKIVectors runs every PKI scenario through the Go client over a real
// TLS connection on loopback: crypto/tls validates, pin.Verifier pins in
// VerifyConnection, pin/report builds the report.
func TestPKIVectors(t *testing.T) {
	_, f := load(t)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			served := tls.Certificate{}
			for _, n := range c.Served {
				served.Certificate = append(served.Certificate, parseCert(t, f.Certificates[n].PEM).Raw)
			}
			kb, _ := pem.Decode([]byte(f.Certificates[c.Served[0]].KeyPEM))
			if kb == nil {
				t.Fatalf("no key for %s", c.Served[0])
			}
			key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			served.PrivateKey = key
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{served}})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					conn.(*tls.Conn).Handshake()
					conn.Close()
				}
			}()
			roots := x509.NewCertPool()
			for _, n := range c.Roots {
				roots.AddCert(parseCert(t, f.Certificates[n].PEM))
			}
			policy, err := pin.ParsePolicy(c.Policy)
			if err != nil {
				t.Fatal(err)
			}
			rep := new(capture)
			v := pin.NewVerifier(policy)
			now := time.Unix(c.Now, 0)
			v.Now, v.Reporter, v.Logger = func() time.Time { return now }, rep, discard()
			cfg, err := v.TLSConfig(&tls.Config{RootCAs: roots, ServerName: c.Host})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
			if err == nil {
				conn.Close()
			}
			var mismatch *pin.MismatchError
			switch {
			case c.Expect.Accept && err != nil:
				t.Fatalf("refused: %v; want accepted", err)
			case !c.Expect.Accept && err == nil:
				t.Fatalf("accepted; want refused (%s)", c.Expect.Failure)
			case err != nil && c.Expect.Failure == "pin" && !errors.As(err, &mismatch):
				t.Fatalf("refused by %v; want a pin failure", err)
			case err != nil && c.Expect.Failure == "tls" && errors.As(err, &mismatch):
				t.Fatalf("refused by the pins (%v); want the platform's validation", err)
			}
			if mismatch != nil {
				// RFC 7469 §2.6: the error names what was seen and what was pinned.
				for _, want := range c.Expect.Report.ValidatedChain {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("the error does not name the chain's pin %s:\n%v", want, err)
					}
				}
			}
			rep.mu.Lock()
			defer rep.mu.Unlock()
			if c.Expect.Report == nil {
				if len(rep.fs) != 0 {
					t.Fatalf("reported %s; want no report", rep.fs[0].Reason)
				}
				return
			}
			if len(rep.fs) != 1 {
				t.Fatalf("%d reports; want 1", len(rep.fs))
			}
			got := expectOf(t, report.New(rep.fs[0]))
			if !reflect.DeepEqual(got, *c.Expect.Report) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(c.Expect.Report)
				t.Errorf("report\n got %s\nwant %s", g, w)
			}
		})
	}
}

// expectOf reduces a report to what the vectors say of it.
func expectOf(t *testing.T, r *report.Report) ExpectReport {
	t.Helper()
	pins := func(chain []string) []string {
		out := []string{}
		for _, s := range chain {
			out = append(out, pin.FromCertificate(parseCert(t, s)).String())
		}
		return out
	}
	// Host names compare without regard to case: a client reports the
	// host as its HTTP stack spells it (OkHttp lowercases it).
	e := ExpectReport{Reason: r.Reason, Mode: r.Mode, Hostname: strings.ToLower(r.Hostname), NotedHostname: r.NotedHostname,
		IncludeSubdomains: r.IncludeSubdomains, EffectiveExpirationDate: r.EffectiveExpirationDate,
		KnownPins: r.KnownPins, KnownCertPins: r.KnownCertPins,
		ServedChain: pins(r.ServedCertificateChain), ValidatedChain: pins(r.ValidatedCertificateChain)}
	return e
}
