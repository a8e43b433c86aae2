package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/util/safetext"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// maxField bounds the text the control plane keeps of a report (a
// certificate subject): what pin/report accepts of a text member.
const maxField = report.MaxText

// reportContent maps a report body to what the store keeps: the content
// that identical reports share, and the device that sent it, if the
// report says. What a report is, and which are refused, is package
// pin/report's (report.Parse); the control plane adds one rule of its
// own: the certificate the server presented must parse, because reports
// are aggregated and shown by its key. Every error is a *report.Error.
func reportContent(body []byte, certs *certCache) (store.ReportContent, string, error) {
	r, format, err := report.Parse(body)
	if err != nil {
		return store.ReportContent{}, "", err
	}
	member, presented := r.Presented()
	sc, err := certs.get([]byte(presented))
	if err != nil {
		return store.ReportContent{}, "", &report.Error{Field: member, Msg: member + ": " + err.Error(), Err: err}
	}
	mode, reason := r.Outcome()
	c := store.ReportContent{
		Digest:            r.Key(),
		Format:            string(format),
		Hostname:          r.Hostname,
		Port:              r.Port,
		NotedHostname:     r.NotedHostname,
		IncludeSubdomains: r.IncludeSubdomains,
		Mode:              string(mode),
		Reason:            reason,
		ServedPin:         sc.pin,
		ServedSubject:     sc.subject,
		KnownCertPins:     r.KnownCertPins,
		Body:              body,
	}
	switch {
	case format == report.TrustKit:
		c.AppBundleID, c.AppVersion, c.AppPlatform = r.AppBundleID, r.AppVersion, strings.ToLower(r.AppPlatform)
	case r.LibraryVersion != "":
		c.AppPlatform, c.AppVersion = "rampart-go", r.LibraryVersion
	}
	return c, r.AppVendorID, nil
}

// servedCert is what a report's presented certificate tells.
type servedCert struct{ pin, subject string }

// certCache remembers the certificates of recent reports: a failure seen
// by many clients (one rogue certificate) arrives as many reports with
// the same certificate, and parsing it is most of a report's cost. A
// Server has one.
type certCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]servedCert
}

func newCertCache() *certCache { return &certCache{m: make(map[[sha256.Size]byte]servedCert)} }

const maxCachedCerts = 4096

func (cc *certCache) get(pemBytes []byte) (servedCert, error) {
	key := sha256.Sum256(pemBytes)
	cc.mu.Lock()
	sc, ok := cc.m[key]
	cc.mu.Unlock()
	if ok {
		return sc, nil
	}
	cert, err := parsePEMCertificate(pemBytes)
	if err != nil {
		return sc, err
	}
	sc = servedCert{pin.FromCertificate(cert).String(), cleanText(cert.Subject.String(), maxField)}
	cc.mu.Lock()
	if len(cc.m) >= maxCachedCerts {
		clear(cc.m) // rare; simpler than LRU and as good for floods
	}
	cc.m[key] = sc
	cc.mu.Unlock()
	return sc, nil
}

func parsePEMCertificate(s []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(s)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, errors.New("not a valid certificate")
	}
	return cert, nil
}

// The control plane's rules for untrusted text are package safetext's,
// under the names its many callers here use.
func isControl(r rune) bool               { return safetext.IsControl(r) }
func cleanText(s string, n int) string    { return safetext.Clean(s, n) }
func truncate(s string, n int) string     { return safetext.Truncate(s, n) }
func checkHostname(field, h string) error { return safetext.CheckHostname(field, h) }
