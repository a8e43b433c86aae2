package export

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"time"

	"github.com/rampartsec/rampart/pin"
)

// clientFormat is the format member of a rampart-client file.
const clientFormat = "rampart-client/1"

var bundleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// rampartClient renders the configuration of Rampart's own clients:
//
//	{"format": "rampart-client/1", "policy": {...}, "bundle_keys": {JWKS},
//	 "bundle_url": "https://...", "bundle_name": "mobile", "min_version": 7}
//
// The policy is the normalized policy, every rule included (these clients
// have report-only mode, expiry and include_subdomains as the Go package
// does), but a rule that requires SCTs is refused: those clients cannot
// check SCTs and refuse such a policy at load.
func (x *exporter) rampartClient() ([]byte, error) {
	for _, d := range x.rules {
		if d.RequireSCTs {
			return nil, x.errorf(d.Name, "require_scts: the Android and JavaScript clients cannot check SCTs and refuse a rule that requires them; remove require_scts for the policy you ship in those clients")
		}
	}
	o := x.opts
	if o.BundleURL != "" {
		if err := x.checkBundleURL(); err != nil {
			return nil, err
		}
	} else if o.BundleName != "" || o.MinVersion != 0 {
		return nil, x.errorf("", "the bundle name and minimum version need the bundle URL (--bundle-url)")
	}
	p := x.policy
	if o.Domain != "" {
		var err error
		if p, err = pin.NewPolicyWithCTLogs(p.ReportURI(), p.CTLogs(), x.rules...); err != nil {
			return nil, err
		}
	}
	raw, err := p.MarshalJSON()
	if err != nil {
		return nil, err
	}
	doc := struct {
		Format     string          `json:"format"`
		Comment    string          `json:"comment"`
		Policy     json.RawMessage `json:"policy"`
		BundleKeys json.RawMessage `json:"bundle_keys,omitempty"`
		BundleURL  string          `json:"bundle_url,omitempty"`
		BundleName string          `json:"bundle_name,omitempty"`
		MinVersion int64           `json:"min_version,omitempty"`
	}{Format: clientFormat, Comment: x.header(), Policy: raw, BundleURL: o.BundleURL, BundleName: o.BundleName, MinVersion: o.MinVersion}
	if x.jwks != "" {
		doc.BundleKeys = json.RawMessage(x.jwks)
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// checkBundleURL applies the updater's rules to the bundle URL: https, on
// a host the policy enforces (and whose rule has not expired), with keys
// and a name to verify what it serves.
func (x *exporter) checkBundleURL() error {
	o := x.opts
	u, err := url.Parse(o.BundleURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return x.errorf("", "bundle URL %q: want an https URL without credentials", o.BundleURL)
	}
	d := x.policy.Match(u.Hostname())
	switch {
	case d == nil:
		return x.errorf("", "bundle URL %s: the policy has no rule for %s, and the clients fetch bundles only over a connection the embedded policy pins; add an enforced rule for it", o.BundleURL, u.Hostname())
	case d.Mode != pin.Enforce:
		return x.errorf(d.Name, "bundle URL %s: the rule for %s is %s; the clients fetch bundles only from a host the embedded policy enforces", o.BundleURL, u.Hostname(), d.Mode)
	case d.Expired(x.now()):
		return x.errorf(d.Name, "bundle URL %s: the rule for %s has expired, so the clients would not fetch bundles", o.BundleURL, u.Hostname())
	}
	if x.jwks == "" {
		return x.errorf("", "a bundle URL needs the keys that verify its bundles (--bundle-key)")
	}
	if !bundleNameRE.MatchString(o.BundleName) {
		return x.errorf("", "bundle name %q: want [a-z0-9][a-z0-9._-]{0,63} (--bundle-name)", o.BundleName)
	}
	if o.MinVersion < 0 {
		return x.errorf("", "minimum version %d: want 0 or more", o.MinVersion)
	}
	return nil
}

func (x *exporter) now() time.Time {
	if !x.opts.Now.IsZero() {
		return x.opts.Now
	}
	return time.Now()
}
