package controlplane

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Reload re-reads the configuration (Options.Source: the file; flags
// given at start keep overriding it) and applies what it can, logging
// what was done and what needs a restart. A configuration that does not
// load or is invalid changes nothing.
func (c *ControlPlane) Reload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	log := c.log
	if c.cert != nil {
		if c := c.cert.Certificate(); c != nil && c.Leaf != nil {
			log.Info("SIGHUP: the TLS certificate files are re-read whenever they change; serving this one",
				"not_after", c.Leaf.NotAfter.UTC(), "serial", fmt.Sprintf("%x", c.Leaf.SerialNumber))
		}
	}
	if c.o.Source.Path == "" {
		c.reloads.WithLabelValues("applied").Inc()
		log.Info("SIGHUP: no --config file, nothing else to reload (flags apply at start only)")
		return
	}
	next, org, err := c.o.Source.Load()
	if err != nil {
		c.reloads.WithLabelValues("refused").Inc()
		log.Error("SIGHUP: configuration not reloaded; the running one stays", "err", err)
		return
	}
	oldKeys := keyIDs(c.srv.Settings().BundleKeys)
	st, err := reloadable(next, org, log)
	if err == nil {
		err = c.srv.Update(st)
	}
	if err != nil {
		c.reloads.WithLabelValues("refused").Inc()
		log.Error("SIGHUP: configuration not reloaded; the running one stays", "config", c.o.Source.Path, "err", err)
		return
	}
	c.reloads.WithLabelValues("applied").Inc()
	var changed, restart, overridden []string
	for _, f := range fields {
		if !reflect.DeepEqual(f.get(c.cfg), f.get(next)) {
			if f.reload {
				changed = append(changed, f.name)
			} else {
				restart = append(restart, f.name)
			}
		}
	}
	if !slices.Contains(changed, "bundle_keys") && !slices.Equal(oldKeys, keyIDs(st.BundleKeys)) {
		changed = append(changed, "bundle_keys (the files' keys)")
	}
	for field := range org.inFile {
		if strings.HasPrefix(org.Of(field, flagOf(field)), "--") && flagOf(field) != "" {
			overridden = append(overridden, "--"+flagOf(field))
		}
	}
	slices.Sort(overridden)
	switch {
	case len(changed) > 0:
		log.Info("SIGHUP: configuration reloaded", "config", c.o.Source.Path, "changed", strings.Join(changed, ", "))
	default:
		log.Info("SIGHUP: configuration reloaded; no setting that applies while serving changed", "config", c.o.Source.Path)
	}
	if len(restart) > 0 {
		// The running value stays, so that the next SIGHUP reports them
		// again until the restart.
		log.Warn("SIGHUP: changed, but applied only at start: restart rampart serve for these", "config", c.o.Source.Path, "fields", strings.Join(restart, ", "))
	}
	if len(overridden) > 0 {
		log.Info("SIGHUP: flags given at start override the file", "flags", strings.Join(slices.Compact(overridden), ", "))
	}
	keep := *next
	for _, f := range fields {
		if !f.reload {
			// Compare the next file with what runs, not with itself.
			reflect.ValueOf(&keep).Elem().FieldByName(fieldName(f.name)).Set(reflect.ValueOf(c.cfg).Elem().FieldByName(fieldName(f.name)))
		}
	}
	c.cfg = &keep
}
