package sqlq

import (
	"strings"

	"github.com/rampartsec/rampart/internal/store"
)

// ScanGroup reads a row of [GroupColumns]. scan is the Scan method of
// either driver's rows.
func ScanGroup(scan func(dest ...any) error) (store.ReportGroup, error) {
	var (
		g               store.ReportGroup
		c               = &g.Content
		firstMs, lastMs int64
	)
	var certPins string
	err := scan(&g.ID, &c.Digest, &c.Format, &c.Hostname, &c.Port, &c.NotedHostname,
		&c.IncludeSubdomains, &c.Mode, &c.Reason, &c.ServedPin, &c.ServedSubject,
		&c.AppBundleID, &c.AppVersion, &c.AppPlatform, &certPins, &c.Body,
		&g.Reports, &g.Clients, &firstMs, &lastMs)
	if err != nil {
		return store.ReportGroup{}, err
	}
	c.KnownCertPins = strings.Fields(certPins)
	if len(c.KnownCertPins) == 0 {
		c.KnownCertPins = nil
	}
	g.FirstSeen, g.LastSeen = Time(firstMs), Time(lastMs)
	return g, nil
}

// BundleColumns are the columns of bundles in the order [ScanBundle]
// reads them.
const BundleColumns = "name, version, key_id, issued_ms, expires_ms, published_ms, jws"

// BundleArgs returns the values of [BundleColumns] for b.
func BundleArgs(b store.Bundle) []any {
	return []any{b.Name, b.Version, b.KeyID, Millis(b.IssuedAt), Millis(b.ExpiresAt), Millis(b.PublishedAt), b.JWS}
}

// ScanBundle reads a row of [BundleColumns].
func ScanBundle(scan func(dest ...any) error) (store.Bundle, error) {
	var (
		b                 store.Bundle
		issued, exp, publ int64
	)
	if err := scan(&b.Name, &b.Version, &b.KeyID, &issued, &exp, &publ, &b.JWS); err != nil {
		return store.Bundle{}, err
	}
	b.IssuedAt, b.ExpiresAt, b.PublishedAt = Time(issued), Time(exp), Time(publ)
	return b, nil
}

// GroupArgs returns the values of [GroupInsertColumns] for g. A nil body is stored empty,
// because the column is NOT NULL.
func GroupArgs(g Distinct) []any {
	c := g.Content
	body := c.Body
	if body == nil {
		body = []byte{}
	}
	return []any{c.Digest, c.Format, c.Hostname, c.Port, c.NotedHostname,
		c.IncludeSubdomains, c.Mode, c.Reason, c.ServedPin, c.ServedSubject,
		c.AppBundleID, c.AppVersion, c.AppPlatform, strings.Join(c.KnownCertPins, " "), body}
}

// GroupInsertColumns are the columns [GroupArgs] gives values for. The
// known certificate pins are one column, space-separated
// (0005_known_cert_pins.sql).
const GroupInsertColumns = "digest, format, hostname, port, noted_hostname, " +
	"include_subdomains, mode, reason, served_pin, served_subject, " +
	"app_bundle_id, app_version, app_platform, known_cert_pins, body"
