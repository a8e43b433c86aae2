package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/controlplane/ctwatch"
	"github.com/rampartsec/rampart/internal/controlplane/server"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// registry is the metrics registry of the control plane, made once.
func (b *builder) registry() *prometheus.Registry {
	if b.reg == nil {
		b.reg = prometheus.NewRegistry()
		b.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return b.reg
}

// ctMonitor builds the Certificate Transparency monitor of cfg.CT, when
// it names logs; it starts with the server.
func (c *ControlPlane) ctMonitor(ctx context.Context, cfg *File, org *Origins, b *builder) error {
	f := cfg.CT
	if f.Logs == "" {
		return nil
	}
	where := func(field string) string { return org.Of("ct."+field, map[string]string{"logs": "ct-logs"}[field]) }
	logs, err := ct.ReadLogList(ctx, &http.Client{Timeout: 30 * time.Second}, f.Logs)
	if err != nil {
		return fmt.Errorf("%s: %w", where("logs"), err)
	}
	poll := 60 * time.Second
	if f.Poll != "" {
		if poll, err = time.ParseDuration(f.Poll); err != nil || poll < 100*time.Millisecond {
			return fmt.Errorf("%s %q: want a duration of at least 100ms (default 60s)", where("poll"), f.Poll)
		}
	}
	var start ct.Start
	switch f.Start {
	case "", "end":
	case "beginning":
		start.Beginning = true
	default:
		t, err := time.Parse(time.DateOnly, f.Start)
		if err != nil {
			return fmt.Errorf("%s %q: want end, beginning or a date (YYYY-MM-DD)", where("start"), f.Start)
		}
		start.Since = t
	}
	var hook *ctwatch.Webhook
	if f.Webhook.URL != "" {
		u, err := url.Parse(f.Webhook.URL)
		if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && httpx.IsLoopbackHost(u.Hostname()))) || u.User != nil {
			return fmt.Errorf("%s %q: want an https URL (http only on loopback) without credentials", where("webhook.url"), f.Webhook.URL)
		}
		if f.Webhook.SecretFile == "" {
			return fmt.Errorf("%s: a webhook needs ct.webhook.secret_file (at least 16 bytes; receivers check the HMAC)", where("webhook.url"))
		}
		secret, err := os.ReadFile(f.Webhook.SecretFile)
		if err != nil {
			return fmt.Errorf("%s: %w", where("webhook.secret_file"), err)
		}
		secret = []byte(strings.TrimSpace(string(secret)))
		if len(secret) < 16 {
			return fmt.Errorf("%s: the secret is %d bytes; use at least 16 random bytes", where("webhook.secret_file"), len(secret))
		}
		hook = &ctwatch.Webhook{URL: f.Webhook.URL, Secret: secret}
	}
	judge := func(ctx context.Context) (*ct.Judge, error) {
		var policy *pin.Policy
		var err error
		if f.Policy != "" {
			if policy, err = pin.LoadPolicy(f.Policy); err != nil {
				return nil, fmt.Errorf("%s: %w", where("policy"), err)
			}
		} else if policy, err = c.servedPolicy(ctx, b); err != nil {
			return nil, err
		}
		var ann []ct.Announcement
		if f.Expect != "" {
			if ann, err = ct.LoadAnnouncements(f.Expect); err != nil {
				return nil, fmt.Errorf("%s: %w", where("expect"), err)
			}
		}
		j, err := ct.NewJudge(policy, f.Watch, ann)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where("watch"), err)
		}
		return j, nil
	}
	w, err := ctwatch.New(ctx, ctwatch.Config{Store: c.st.CT(), Logs: logs, Judge: judge, Poll: poll, Start: start,
		Webhook: hook, Registry: b.registry(), Logger: c.log})
	if err != nil {
		return err
	}
	b.ct = w
	return nil
}

// servedPolicy is the union of the policies of the latest bundle of each
// name this control plane serves (verified with its bundle keys): a key
// pinned by any is the organisation's. Nil when there is none yet.
func (c *ControlPlane) servedPolicy(ctx context.Context, b *builder) (*pin.Policy, error) {
	keys := b.live.BundleKeys
	if c.srv != nil {
		keys = c.srv.Settings().BundleKeys
	}
	if keys == nil {
		return nil, nil
	}
	list, err := c.st.Bundles().List(ctx, "", 1000)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var policies []*pin.Policy
	for _, sb := range list {
		if seen[sb.Name] {
			continue // List is newest first: the latest of each name
		}
		seen[sb.Name] = true
		bd, err := bundle.Verify(sb.JWS, keys, time.Now())
		if err != nil {
			continue // expired or signed with a key no longer trusted
		}
		policies = append(policies, bd.Policy)
	}
	return mergePolicies(policies)
}

// mergePolicies joins policies: a domain in several keeps every pin and
// role, covers subdomains if any does, and is enforced if any is.
func mergePolicies(ps []*pin.Policy) (*pin.Policy, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	var order []string
	byName := map[string]*pin.Domain{}
	for _, p := range ps {
		for _, d := range p.Domains() {
			m, ok := byName[d.Name]
			if !ok {
				d := d
				// What the judge needs is the pins: not the report URIs,
				// nor the SCT rule (whose logs the join would need).
				d.AllowSinglePin, d.ReportURI, d.RequireSCTs = true, "", false
				byName[d.Name] = &d
				order = append(order, d.Name)
				continue
			}
			for _, pn := range d.Pins {
				if !slices.Contains(m.Pins, pn) {
					m.Pins = append(m.Pins, pn)
				}
			}
			for pn, r := range d.Roles {
				if m.Roles == nil {
					m.Roles = map[pin.Pin]pin.Role{}
				}
				m.Roles[pn] = r
			}
			m.IncludeSubdomains = m.IncludeSubdomains || d.IncludeSubdomains
			if d.Mode != pin.ReportOnly {
				m.Mode = pin.Enforce
			}
			if d.Expires.IsZero() || (!m.Expires.IsZero() && d.Expires.After(m.Expires)) {
				m.Expires = d.Expires
			}
		}
	}
	domains := make([]pin.Domain, 0, len(order))
	for _, n := range order {
		domains = append(domains, *byName[n])
	}
	p, err := pin.NewPolicy("", domains...)
	if err != nil {
		return nil, errors.Join(errors.New("joining the bundles' policies"), err)
	}
	return p, nil
}

// ctView is w as the server's CT view; nil (not a typed nil) without one.
func ctView(w *ctwatch.Watcher) server.CTView {
	if w == nil {
		return nil
	}
	return w
}
