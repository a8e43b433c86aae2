package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lineageWorld is a renewal endpoint whose clock the test moves, and a
// client for it that presents whichever certificate the test sets.
type lineageWorld struct {
	ca     *CA
	url    string
	clock  atomic.Int64 // the handler's offset from the real time
	cert   atomic.Pointer[tls.Certificate]
	client *http.Client
}

func newLineageWorld(t *testing.T, p RenewPolicy) *lineageWorld {
	t.Helper()
	lw := &lineageWorld{ca: newCA(t, td, time.Now().Add(-time.Hour))}
	p.Now = func() time.Time { return time.Now().Add(time.Duration(lw.clock.Load())) }
	cfg := &tls.Config{
		Certificates: []tls.Certificate{issue(t, lw.ca, controlPlane, time.Hour, time.Now())},
		ClientAuth:   tls.RequireAnyClientCert,
	}
	lw.url = "https://" + serveTLS(t, cfg, RenewHandler(lw.ca, p)) + "/renew"
	lw.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // the control plane is not under test
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return lw.cert.Load(), nil
			},
		},
	}}
	return lw
}

func (lw *lineageWorld) renew(t *testing.T, c tls.Certificate) (*tls.Certificate, error) {
	t.Helper()
	lw.cert.Store(&c)
	return Renewer(lw.url, lw.client, nil)(t.Context(), &c)
}

// A renewal keeps the lifetime the certificate was first issued with
// (second walkthrough, item 6: a 1 h certificate came back for 24 h), up
// to the endpoint's maximum, and renewals of renewals keep it too.
func TestRenewKeepsLifetime(t *testing.T) {
	lw := newLineageWorld(t, RenewPolicy{MaxLifetime: 3 * time.Hour})
	for _, tc := range []struct {
		name      string
		ttl, want time.Duration
	}{
		{"10 minutes", 10 * time.Minute, 10 * time.Minute},
		{"1 hour", time.Hour, time.Hour},
		{"a day, over the endpoint's maximum", 24 * time.Hour, 3 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := issue(t, lw.ca, gateway, tc.ttl, time.Now())
			for i := range 3 { // a renewal, and renewals of it
				next, err := lw.renew(t, cert)
				if err != nil {
					t.Fatal(err)
				}
				life := next.Leaf.NotAfter.Sub(next.Leaf.NotBefore) - Backdate
				if life < tc.want-time.Second || life > tc.want {
					t.Fatalf("renewal %d lives %v, want %v", i+1, life, tc.want)
				}
				if l, ok := LineageOf(next.Leaf); !ok || l.TTL != tc.ttl {
					t.Fatalf("renewal %d carries lineage %+v %v, want the first lifetime %v", i+1, l, ok, tc.ttl)
				}
				cert = *next
			}
		})
	}
}

// P11: a stolen key renews for ever no more. Renewals carry the time the
// first certificate of their lineage was issued, and the endpoint refuses
// them MaxLineage after it, however often they renewed in between.
func TestRenewalLineageLimit(t *testing.T) {
	lw := newLineageWorld(t, RenewPolicy{MaxLineage: 10 * 24 * time.Hour})
	first := issue(t, lw.ca, gateway, 24*time.Hour, time.Now())
	l, ok := LineageOf(first.Leaf)
	if !ok || l.TTL != 24*time.Hour || time.Since(l.Since) > time.Minute {
		t.Fatalf("a new certificate's lineage %+v %v, want since now for 24h", l, ok)
	}
	// Renewed every 20 hours for 220 hours (the handler's clock moves;
	// each certificate is valid at it, so that the handler takes it).
	cert := first
	for at := 20 * time.Hour; at <= 220*time.Hour; at += 20 * time.Hour {
		lw.clock.Store(int64(at))
		next, err := lw.renew(t, cert)
		if err != nil {
			t.Fatalf("at %v: %v", at, err)
		}
		if got, _ := LineageOf(next.Leaf); !got.Since.Equal(l.Since) {
			t.Fatalf("at %v: lineage since %v, want %v", at, got.Since, l.Since)
		}
		cert = *next
	}
	// Ten days after the first: the last renewal is still valid, but its
	// lineage is too old.
	lw.clock.Store(int64(240*time.Hour + time.Minute))
	_, err := lw.renew(t, cert)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden") || !strings.Contains(err.Error(), "the certificate's lineage began at "+l.Since.UTC().Format(time.RFC3339)+", more than 240h0m0s ago (the renewal limit): issue a new certificate for spiffe://pay.internal/ns/prod/sa/gateway") {
		t.Fatalf("renewal after the lineage limit: %v", err)
	}
	// A certificate issued anew starts a lineage of its own.
	if _, err := lw.renew(t, issue(t, lw.ca, gateway, 24*time.Hour, time.Now().Add(time.Duration(lw.clock.Load())))); err != nil {
		t.Errorf("a new certificate: %v", err)
	}
}

// A certificate issued before lineages were recorded (no policy) starts
// its lineage at its NotBefore, and keeps its lifetime.
func TestRenewalOfCertificateWithoutLineage(t *testing.T) {
	lw := newLineageWorld(t, RenewPolicy{})
	k := newKey(t)
	now := time.Now()
	old := rawCert(t, &x509.Certificate{
		NotBefore: now.Add(-Backdate), NotAfter: now.Add(2 * time.Hour), URIs: []*url.URL{gateway.URL()},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, lw.ca.Issuing, lw.ca.Key, k.Public())
	if _, ok := LineageOf(old); ok {
		t.Fatal("a certificate without the policy has a lineage")
	}
	next, err := lw.renew(t, tlsCert([]*x509.Certificate{old, lw.ca.Issuing}, k))
	if err != nil {
		t.Fatal(err)
	}
	l, ok := LineageOf(next.Leaf)
	if !ok || !l.Since.Equal(old.NotBefore) || l.TTL != 2*time.Hour {
		t.Errorf("lineage %+v %v, want since %v for 2h", l, ok, old.NotBefore)
	}
}

// A certificate whose policies extension this CA cannot read as a
// lineage (a future format, another issuer's policy) is refused rather
// than given a new lineage, which would restart at every renewal and never
// reach the limit (an independent review of P11's fix).
func TestRenewalOfUnreadableLineage(t *testing.T) {
	lw := newLineageWorld(t, RenewPolicy{})
	k := newKey(t)
	now := time.Now()
	old := rawCert(t, &x509.Certificate{
		NotBefore: now.Add(-Backdate), NotAfter: now.Add(2 * time.Hour), URIs: []*url.URL{gateway.URL()},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		Policies:    []x509.OID{mustOID(t, "1.3.6.1.4.1.99999.1")},
	}, lw.ca.Issuing, lw.ca.Key, k.Public())
	if _, ok := LineageOf(old); ok {
		t.Fatal("another policy reads as a lineage")
	}
	if _, err := lw.renew(t, tlsCert([]*x509.Certificate{old, lw.ca.Issuing}, k)); err == nil || !strings.Contains(err.Error(), "lineage cannot be read") {
		t.Errorf("renew: %v, want the lineage refused", err)
	}
}

func mustOID(t *testing.T, s string) x509.OID {
	t.Helper()
	o, err := x509.ParseOID(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// Renewal keeps IP addresses, and refuses to add one.
func TestRenewIPAddresses(t *testing.T) {
	lw := newLineageWorld(t, RenewPolicy{})
	cert := issue(t, lw.ca, gateway, time.Hour, time.Now(), "gw.pay.internal", "127.0.0.1", "::1")
	if got := cert.Leaf.IPAddresses; len(got) != 2 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) || !got[1].Equal(net.IPv6loopback) || len(cert.Leaf.DNSNames) != 1 {
		t.Fatalf("issued DNS %v IP %v", cert.Leaf.DNSNames, got)
	}
	next, err := lw.renew(t, cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := next.Leaf.IPAddresses; len(got) != 2 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) || !got[1].Equal(net.IPv6loopback) {
		t.Errorf("renewed IP %v", got)
	}
	// A request that adds an address.
	lw.cert.Store(&cert)
	csr, err := newCSR(gateway, []string{"gw.pay.internal"}, []net.IP{net.IPv4(10, 0, 0, 1)}, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := lw.client.Post(lw.url, "application/x-pem-file", strings.NewReader(string(csr)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a request adding 10.0.0.1: %d, want 403", resp.StatusCode)
	}
	// Zones have no place in a certificate.
	if _, err := lw.ca.Issue(gateway, []string{"fe80::1%eth0"}, time.Hour, newKey(t).Public(), time.Now()); err == nil || !strings.Contains(err.Error(), "zone") {
		t.Errorf("an address with a zone: %v", err)
	}
}

// The lineage record round-trips, and any other spelling is refused.
func TestParseLineage(t *testing.T) {
	l := Lineage{Since: time.Date(2026, 12, 2, 9, 37, 31, 0, time.UTC), TTL: 24 * time.Hour}
	ext, err := l.extension()
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseLineage(ext.Value)
	if err != nil || got != l {
		t.Fatalf("parseLineage = %+v, %v; want %+v", got, err, l)
	}
	if l.text() != "rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime 86400s" {
		t.Errorf("text %q", l.text())
	}
	mk := func(text string) []byte {
		v, err := asn1.Marshal([]policyInformation{{Policy: oidAnyPolicy, Qualifiers: []policyQualifier{{ID: oidUserNotice, Notice: userNotice{Text: text}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	other := asn1.ObjectIdentifier{1, 2, 3}
	two, _ := asn1.Marshal([]policyInformation{
		{Policy: oidAnyPolicy, Qualifiers: []policyQualifier{{ID: oidUserNotice, Notice: userNotice{Text: l.text()}}}},
		{Policy: other, Qualifiers: []policyQualifier{{ID: oidUserNotice, Notice: userNotice{Text: l.text()}}}},
	})
	otherPolicy, _ := asn1.Marshal([]policyInformation{{Policy: other, Qualifiers: []policyQualifier{{ID: oidUserNotice, Notice: userNotice{Text: l.text()}}}}})
	for name, der := range map[string][]byte{
		"trailing data":        append(ext.Value[:len(ext.Value):len(ext.Value)], 0),
		"two policies":         two,
		"another policy":       otherPolicy,
		"another text":         mk("Rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime 86400s"),
		"a time zone":          mk("rampart lineage: first issued 2026-12-02T10:37:31+01:00, lifetime 86400s"),
		"fractional seconds":   mk("rampart lineage: first issued 2026-12-02T09:37:31.5Z, lifetime 86400s"),
		"leading zero":         mk("rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime 086400s"),
		"plus sign":            mk("rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime +86400s"),
		"no lifetime":          mk("rampart lineage: first issued 2026-12-02T09:37:31Z"),
		"zero lifetime":        mk("rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime 0s"),
		"lifetime over MaxTTL": mk("rampart lineage: first issued 2026-12-02T09:37:31Z, lifetime 2592001s"),
		"empty":                nil,
	} {
		if got, err := parseLineage(der); err == nil {
			t.Errorf("%s: parsed as %+v", name, got)
		}
	}
}

// Whatever a certificate policies extension holds, parseLineage either
// refuses it or returns a lineage that extension writes back byte for
// byte, with a lifetime in (0, MaxTTL] of whole seconds.
func FuzzParseLineage(f *testing.F) {
	for _, l := range []Lineage{
		{Since: time.Date(2026, 12, 2, 9, 37, 31, 0, time.UTC), TTL: 24 * time.Hour},
		{Since: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), TTL: time.Second},
		{Since: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), TTL: MaxTTL},
	} {
		ext, err := l.extension()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ext.Value)
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		l, err := parseLineage(der)
		if err != nil {
			return
		}
		if l.TTL <= 0 || l.TTL > MaxTTL || l.TTL%time.Second != 0 || l.Since.Location() != time.UTC {
			t.Fatalf("parsed %+v", l)
		}
		ext, err := l.extension()
		if err != nil || string(ext.Value) != string(der) {
			t.Fatalf("%+v does not write back as its input: %v", l, err)
		}
	})
}
