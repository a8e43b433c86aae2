package pin_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// sctWorld is a pinned domain, its CA, and three real CT logs (TesseraCT)
// of which the policy lists two, of two operators.
type sctWorld struct {
	root            *testpki.CA
	ca              *testpki.CA
	leafKey, backup crypto.Signer
	a, b, c         *ctlog.Log
	logs            []pin.CTLog
}

func newSCTWorld(t *testing.T) *sctWorld {
	w := &sctWorld{}
	w.root = testpki.NewRoot(t, "SCT Root")
	w.ca = w.root.NewIntermediate(t, "SCT Issuing CA")
	w.leafKey = testpki.NewKey(t, testpki.ECDSAP256)
	w.backup = testpki.NewKey(t, testpki.ECDSAP256)
	w.a, w.b, w.c = ctlog.Start(t, w.root.Cert), ctlog.Start(t, w.root.Cert), ctlog.Start(t, w.root.Cert)
	for i, l := range []*ctlog.Log{w.a, w.b} {
		der, _ := x509.MarshalPKIXPublicKey(&l.Key.PublicKey)
		lg, err := pin.NewCTLog(der, fmt.Sprint("operator ", i), fmt.Sprint("log ", i))
		if err != nil {
			t.Fatal(err)
		}
		w.logs = append(w.logs, lg)
	}
	return w
}

func (w *sctWorld) policy(t *testing.T, mode pin.Mode) *pin.Policy {
	lp, _ := pin.FromPrivateKey(w.leafKey)
	bp, _ := pin.FromPrivateKey(w.backup)
	p, err := pin.NewPolicyWithCTLogs("", w.logs, pin.Domain{Name: "api.sct.test", Pins: []pin.Pin{lp, bp}, RequireSCTs: true, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// issue makes a certificate for api.sct.test on the pinned key valid for
// lifetime, embedding the SCTs that the logs give its precertificate.
func (w *sctWorld) issue(t *testing.T, lifetime time.Duration, logs ...*ctlog.Log) *testpki.Leaf {
	nb := time.Now().Add(-time.Hour).Truncate(time.Second)
	o := testpki.LeafOptions{DNSNames: []string{"api.sct.test"}, Key: w.leafKey, NotBefore: nb, NotAfter: nb.Add(lifetime), Serial: big.NewInt(time.Now().UnixNano())}
	var scts []ctlog.SCT
	if len(logs) > 0 {
		po := o
		po.ExtraExtensions = []pkix.Extension{ctlog.Poison()}
		pre := w.ca.Issue(t, po)
		for _, l := range logs {
			scts = append(scts, l.AddChain(t, true, pre.Cert, w.ca.Cert))
		}
		o.ExtraExtensions = []pkix.Extension{ctlog.SCTList(scts...)}
	}
	return w.ca.Issue(t, o)
}

type failures struct {
	mu sync.Mutex
	fs []*pin.Failure
}

func (r *failures) Report(f *pin.Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fs = append(r.fs, f)
}

// fetch connects to a server presenting cert (and, when given, SCTs in
// the TLS handshake) through a client pinned by p.
func (w *sctWorld) fetch(t *testing.T, p *pin.Policy, cert tls.Certificate, rep pin.Reporter) error {
	t.Helper()
	s := serve(t, cert, serverOptions{})
	v := pin.NewVerifier(p)
	v.Reporter = rep
	c, err := v.Client(baseTransport(s.Listener.Addr().String(), testpki.Pool(w.root)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get("https://api.sct.test/")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c.CloseIdleConnections()
	return err
}

// TestRequireSCTs checks the SCT rule on certificates logged in real CT
// logs: embedded SCTs (RFC 6962 §3.3) counted as Chrome and Apple count
// them — 2 from distinct logs for 180 days or less, 3 beyond, from two
// operators — or 2 delivered in the TLS handshake (§3.3's TLS extension).
func TestRequireSCTs(t *testing.T) {
	w := newSCTWorld(t)
	enforce := w.policy(t, pin.Enforce)
	day := 24 * time.Hour
	both := w.issue(t, 90*day, w.a, w.b)
	if err := w.fetch(t, enforce, both.TLS(), nil); err != nil {
		t.Fatalf("two SCTs of two operators: %v", err)
	}
	for _, c := range []struct {
		name string
		cert tls.Certificate
		want string
	}{
		{"no SCT", w.issue(t, 90*day).TLS(), "0 embedded (2 needed)"},
		{"one SCT", w.issue(t, 90*day, w.a).TLS(), "1 embedded (2 needed)"},
		{"an SCT of a log the policy does not list", w.issue(t, 90*day, w.a, w.c).TLS(), "which the policy does not list"},
		{"two SCTs, 200 days of validity", w.issue(t, 200*day, w.a, w.b).TLS(), "2 embedded (3 needed)"},
		{"SCTs of another certificate", func() tls.Certificate {
			// The SCTs of one precertificate pasted into another
			// certificate's list: they sign another TBS.
			other := w.issue(t, 90*day, w.a, w.b)
			nb := other.Cert.NotBefore
			var ext pkix.Extension
			for _, e := range other.Cert.Extensions {
				if e.Id.String() == "1.3.6.1.4.1.11129.2.4.2" {
					ext = e
				}
			}
			return w.ca.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.sct.test"}, Key: w.leafKey, NotBefore: nb, NotAfter: nb.Add(90 * day),
				ExtraExtensions: []pkix.Extension{ext}}).TLS()
		}(), "that does not verify"},
	} {
		err := w.fetch(t, enforce, c.cert, nil)
		var se *pin.SCTError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an SCT error saying %q", c.name, err, c.want)
		}
	}

	// SCTs in the TLS handshake: for the certificate as served (x509
	// entries), from the same two logs.
	plain := w.issue(t, 90*day)
	served := plain.TLS()
	for _, l := range []*ctlog.Log{w.a, w.b} {
		sct := l.AddChain(t, false, plain.Cert, w.ca.Cert)
		served.SignedCertificateTimestamps = append(served.SignedCertificateTimestamps, sct.Serialized())
	}
	if err := w.fetch(t, enforce, served, nil); err != nil {
		t.Errorf("two SCTs in the TLS handshake: %v", err)
	}

	// Report-only: the connection goes through, the failure is reported.
	rep := &failures{}
	if err := w.fetch(t, w.policy(t, pin.ReportOnly), w.issue(t, 90*day, w.a).TLS(), rep); err != nil {
		t.Errorf("report-only: %v", err)
	}
	if len(rep.fs) != 1 || rep.fs[0].Reason != pin.ReasonSCTs {
		t.Errorf("report-only failures %+v", rep.fs)
	}
}

// TestCTLogsInPolicyFile: ct_logs and require_scts in the policy file, as
// signed bundles carry them, and the refusals.
func TestCTLogsInPolicyFile(t *testing.T) {
	keyA := base64.StdEncoding.EncodeToString(ecKeyDER(t))
	keyB := base64.StdEncoding.EncodeToString(ecKeyDER(t))
	leaf, backup := "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sha256/BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="
	file := func(logs string) string {
		return "version: 1\nct_logs:\n" + logs + "domains:\n  - domain: api.sct.test\n    require_scts: true\n    pins: [" + leaf + ", " + backup + "]\n"
	}
	good := file("  - {key: " + keyA + ", operator: A, description: log a}\n  - {key: " + keyB + ", operator: B}\n")
	p, err := pin.ParsePolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.CTLogs()) != 2 || !p.Domains()[0].RequireSCTs {
		t.Fatalf("logs %d, rule %+v", len(p.CTLogs()), p.Domains()[0])
	}
	js, err := p.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := pin.ParsePolicy(js)
	if err != nil || len(back.CTLogs()) != 2 || !back.Domains()[0].RequireSCTs || back.CTLogs()[0].Operator != "A" {
		t.Errorf("round trip through JSON: %v %s", err, js)
	}
	for name, c := range map[string]struct{ file, want string }{
		"no logs":       {"version: 1\ndomains:\n  - domain: api.sct.test\n    require_scts: true\n    pins: [" + leaf + ", " + backup + "]\n", "require_scts needs ct_logs of at least two operators"},
		"one operator":  {file("  - {key: " + keyA + ", operator: A}\n  - {key: " + keyB + ", operator: A}\n"), "require_scts needs ct_logs of at least two operators"},
		"one log twice": {file("  - {key: " + keyA + ", operator: A}\n  - {key: " + keyA + ", operator: B}\n"), "is listed twice"},
		"bad key":       {file("  - {key: AAAA, operator: A}\n  - {key: " + keyB + ", operator: B}\n"), "key:"},
		"no operator":   {file("  - {key: " + keyA + "}\n  - {key: " + keyB + ", operator: B}\n"), "no operator"},
		"one operator spelled two ways": {file("  - {key: " + keyA + ", operator: Google}\n  - {key: " + keyB + ", operator: \"google \"}\n"),
			"require_scts needs ct_logs of at least two operators"},
	} {
		if _, err := pin.ParsePolicy([]byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

func ecKeyDER(t *testing.T) []byte {
	k := testpki.NewKey(t, testpki.ECDSAP256)
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}
