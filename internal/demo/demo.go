// Package demo runs Rampart's pinning story on loopback with no external
// service: a payment API with a private PKI, an attacker holding a valid
// certificate from a compromised CA that clients trust, a renewal on the
// offline backup key, and a report collector. It checks that pinned
// clients behave as they must and prints commands to try by hand.
//
// The PKI is throwaway, made by internal/testpki, and never fit for
// production.
package demo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rampartsec/rampart/internal/testpki"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// Host is the demo API's name; connections go to loopback whatever it
// resolves to.
const Host = "api.payments.test"

// Options configure Run.
type Options struct {
	// Dir receives the demo's files (trust store, policy, backup key). If
	// empty, a temporary directory is used and removed at the end.
	Dir string
	// Check runs the checklist, prints it and returns, instead of serving
	// until ctx is done.
	Check bool
	// Out receives the demo's output.
	Out io.Writer
}

// ErrCheckFailed is returned when a row of the checklist fails.
var ErrCheckFailed = errors.New("demo: a check failed")

// pkiFailure is how testpki's Fatalf surfaces here: demo setup does not run
// under a testing.T.
type pkiFailure struct{ msg string }

type panicTB struct{}

func (panicTB) Fatalf(format string, args ...any) { panic(pkiFailure{fmt.Sprintf(format, args...)}) }

// system is everything the demo starts.
type system struct {
	dir                    string
	policy, reportOnly     *pin.Policy
	api, attacker, renewed *server
	collector              *collector
	backupPin, leafPin     pin.Pin
	rootsFile, policyFile  string
	roots                  *tls.Config // trust store shared by every client
}

// Run starts the demo system, runs the checklist, and then either returns
// (Check) or serves until ctx is done.
func Run(ctx context.Context, o Options) (err error) {
	out := o.Out
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rampart-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	s, err := start(dir)
	if err != nil {
		return err
	}
	defer s.close()

	fmt.Fprintf(out, "Rampart demo: certificate pinning against a compromised CA\n\n")
	fmt.Fprintf(out, "  payment API      https://%s/ at %s (real certificate)\n", Host, s.api.addr)
	fmt.Fprintf(out, "  attacker         https://%s/ at %s (valid certificate from a compromised, trusted CA)\n", Host, s.attacker.addr)
	fmt.Fprintf(out, "  renewed API      https://%s/ at %s (certificate renewed on the offline backup key)\n", Host, s.renewed.addr)
	fmt.Fprintf(out, "  report collector %s\n", s.collector.url)
	fmt.Fprintf(out, "  files            %s\n\n", dir)
	fmt.Fprintf(out, "Pins of %s (policy %s):\n  %s  current key\n  %s  backup key, kept offline\n\n",
		Host, s.policyFile, s.leafPin, s.backupPin)

	ok := s.checklist(ctx, out)
	if o.Check {
		if !ok {
			return ErrCheckFailed
		}
		return nil
	}
	fmt.Fprintf(out, "\nTry it (rampart is 'go run ./cmd/rampart' from a checkout):\n")
	get := fmt.Sprintf("rampart pin get --policy %s --ca %s", s.policyFile, s.rootsFile)
	fmt.Fprintf(out, "  %s --connect %s https://%s/   # accepted\n", get, s.api.addr, Host)
	fmt.Fprintf(out, "  %s --connect %s https://%s/   # refused, and reported\n", get, s.attacker.addr, Host)
	fmt.Fprintf(out, "  rampart pin check --policy %s --ca %s --connect %s\n", s.policyFile, s.rootsFile, s.attacker.addr)
	fmt.Fprintf(out, "  rampart pin fetch --ca %s --connect %s %s\n", s.rootsFile, s.api.addr, Host)
	_, port, _ := net.SplitHostPort(s.api.addr)
	fmt.Fprintf(out, "  curl --cacert %s --resolve %s:%s:127.0.0.1 --pinnedpubkey '%s' https://%s:%s/\n",
		s.rootsFile, Host, port, curlPins(s.leafPin, s.backupPin), Host, port)
	fmt.Fprintf(out, "\nFailure reports arriving at the collector are printed below. Ctrl-C stops the demo.\n")
	s.collector.printTo(out)
	<-ctx.Done()
	fmt.Fprintf(out, "\nstopped\n")
	return nil
}

func curlPins(pins ...pin.Pin) string {
	var parts []string
	for _, p := range pins {
		parts = append(parts, "sha256//"+p.Base64())
	}
	return strings.Join(parts, ";")
}

func start(dir string) (s *system, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pkiFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("demo: %s", f.msg)
		}
	}()
	var t panicTB
	root := testpki.NewRoot(t, "Payments Demo Root CA")
	inter := root.NewIntermediate(t, "Payments Demo Issuing CA")
	valid := testpki.LeafOptions{DNSNames: []string{Host}, NotAfter: time.Now().AddDate(0, 0, 90)}
	leaf := inter.Issue(t, valid)
	rogueRoot := testpki.NewRoot(t, "Compromised Public CA")
	rogue := rogueRoot.NewIntermediate(t, "Compromised Issuing CA").Issue(t, valid)
	backupKey := testpki.NewKey(t, testpki.ECDSAP256)
	valid.Key = backupKey
	renewed := inter.Issue(t, valid)

	s = &system{dir: dir, roots: &tls.Config{RootCAs: testpki.Pool(root, rogueRoot)}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.leafPin = pin.FromCertificate(leaf.Cert)
	if s.backupPin, err = pin.FromPrivateKey(backupKey); err != nil {
		return nil, err
	}
	if s.collector, err = newCollector(); err != nil {
		return nil, err
	}
	for _, x := range []struct {
		srv  **server
		leaf *testpki.Leaf
	}{{&s.api, leaf}, {&s.attacker, rogue}, {&s.renewed, renewed}} {
		if *x.srv, err = newServer(x.leaf.TLS()); err != nil {
			return nil, err
		}
	}

	domain := pin.Domain{Name: Host, Pins: []pin.Pin{s.leafPin, s.backupPin}, ReportURI: s.collector.url}
	if s.policy, err = pin.NewPolicy("", domain); err != nil {
		return nil, err
	}
	domain.Mode = pin.ReportOnly
	if s.reportOnly, err = pin.NewPolicy("", domain); err != nil {
		return nil, err
	}
	s.rootsFile = filepath.Join(dir, "roots.pem")
	s.policyFile = filepath.Join(dir, "policy.yaml")
	policyYAML := fmt.Sprintf(`# Rampart pin policy for the demo API.
version: 1
domains:
  - domain: %s
    mode: enforce
    pins:
      - %s   # current key
      - %s   # backup key, kept offline (backup.key)
    report_uri: %s
`, Host, s.leafPin, s.backupPin, s.collector.url)
	files := map[string][]byte{
		s.rootsFile:                      testpki.CertPEM(root.Cert, rogueRoot.Cert),
		s.policyFile:                     []byte(policyYAML),
		filepath.Join(dir, "backup.key"): testpki.KeyPEM(t, backupKey),
	}
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *system) close() {
	for _, srv := range []*server{s.api, s.attacker, s.renewed} {
		if srv != nil {
			srv.Close()
		}
	}
	if s.collector != nil {
		s.collector.Close()
	}
}

// checklist runs the pinning checks and prints a pass/fail table.
func (s *system) checklist(ctx context.Context, out io.Writer) bool {
	quiet := slog.New(slog.DiscardHandler)
	client := func(p *pin.Policy, r pin.Reporter) *http.Client {
		v := pin.NewVerifier(p)
		v.Logger = quiet
		v.Reporter = r
		c, err := v.Client(s.transport())
		if err != nil {
			panic(err) // the demo's own transport is always pinnable
		}
		return c
	}
	unpinned := &http.Client{Transport: s.transport()}
	rep := &report.Reporter{Logger: quiet}
	defer rep.Close()

	rows := []struct {
		name  string
		check func() error
	}{
		{"pinned client accepts the real server", func() error {
			return s.get(ctx, client(s.policy, nil), s.api)
		}},
		{"rogue-CA certificate for the API's name is refused by a pinned client", func() error {
			err := s.get(ctx, client(s.policy, nil), s.attacker)
			var me *pin.MismatchError
			if errors.As(err, &me) {
				return nil
			}
			return fmt.Errorf("want a pin mismatch, got %v", err)
		}},
		{"the same certificate fools a client without pinning (the threat)", func() error {
			return s.get(ctx, unpinned, s.attacker)
		}},
		{"renewal on the backup key keeps pinned clients working", func() error {
			return s.get(ctx, client(s.policy, nil), s.renewed)
		}},
		{"report-only mode lets the connection through and reports it (RFC 7469)", func() error {
			before := s.collector.count()
			if err := s.get(ctx, client(s.reportOnly, rep), s.attacker); err != nil {
				return err
			}
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := rep.Flush(fctx); err != nil {
				return err
			}
			if s.collector.count() != before+1 {
				return fmt.Errorf("collector received %d reports, want 1", s.collector.count()-before)
			}
			return nil
		}},
	}
	allOK := true
	fmt.Fprintf(out, "Checklist:\n")
	for _, r := range rows {
		err := r.check()
		mark := "PASS"
		if err != nil {
			mark, allOK = "FAIL", false
		}
		fmt.Fprintf(out, "  %s  %s\n", mark, r.name)
		if err != nil {
			fmt.Fprintf(out, "        %s\n", strings.ReplaceAll(err.Error(), "\n", "\n        "))
		}
	}
	return allOK
}

// transport dials whichever demo server the request's context names.
func (s *system) transport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, ctx.Value(addrKey{}).(string))
		},
		TLSClientConfig:   s.roots.Clone(),
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
	}
}

type addrKey struct{}

func (s *system) get(ctx context.Context, c *http.Client, srv *server) error {
	ctx = context.WithValue(ctx, addrKey{}, srv.addr)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+Host+"/", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// server is an HTTPS server on loopback.
type server struct {
	*http.Server
	addr string
}

func newServer(cert tls.Certificate) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"service":"payments-demo","status":"ok"}`+"\n")
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // refused handshakes are the point
	}
	go srv.ServeTLS(ln, "", "")
	return &server{Server: srv, addr: ln.Addr().String()}, nil
}

// collector receives RFC 7469 reports over plain HTTP on loopback.
type collector struct {
	*http.Server
	url string

	mu      sync.Mutex
	reports int
	out     io.Writer
}

const maxReport = 64 << 10

func newCollector() (*collector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{url: "http://" + ln.Addr().String() + "/reports"}
	c.Server = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 5 * time.Second}
	go c.Serve(ln)
	return c, nil
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a report", http.StatusMethodNotAllowed)
		return
	}
	var rep report.Report
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReport)).Decode(&rep); err != nil {
		http.Error(w, "malformed report", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.reports++
	out := c.out
	c.mu.Unlock()
	if out != nil {
		fmt.Fprintf(out, "report: %s %s:%d rule %s (%s, %s), %d served certificates\n",
			rep.DateTime, rep.Hostname, rep.Port, rep.NotedHostname, rep.Mode, rep.Reason, len(rep.ServedCertificateChain))
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reports
}

func (c *collector) printTo(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = w
}
