package ratelimit

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is a rules file:
//
//	trusted_proxies: [10.0.0.0/8]      # whose X-Forwarded-For is believed
//	rules:
//	  - name: per-address              # an edge rule (by: request attributes)
//	    rate: 20                       # events per `per`
//	    per: 1s                        # default 1s
//	    burst: 40                      # default: rate
//	    by: [addr]                     # addr | credential | client | route
//	  - name: token-endpoint
//	    rate: 10
//	    per: 1m
//	    by: [addr, route]
//	    routes: ["POST /oauth2/token"]
//	    failure: closed                # open (edge default) | closed
//	  - name: swap                     # a business rule: Limiter.Allow(ctx, "swap", keyID)
//	    kind: business
//	    rate: 100
//	    per: 1m
//	    shadow: true                   # count, never refuse
//
// A Config is what the file says, for [Limiter.TrustedProxies] and
// [Limiter.Rules].
type Config struct {
	// TrustedProxies are trusted_proxies, as prefixes (an address is its
	// own /32 or /128). Empty: none.
	TrustedProxies []netip.Prefix
	// Rules are the rules, each checked as a Limiter checks it and with
	// the defaults filled in (per: 1s, burst: rate, kind, by, failure).
	// Empty: none.
	Rules []Rule
}

type fileConfig struct {
	TrustedProxies []string   `yaml:"trusted_proxies"`
	Rules          []fileRule `yaml:"rules"`
}

type fileRule struct {
	Name    string   `yaml:"name"`
	Kind    string   `yaml:"kind"`
	Rate    int      `yaml:"rate"`
	Per     string   `yaml:"per"`
	Burst   int      `yaml:"burst"`
	By      []string `yaml:"by"`
	Routes  []string `yaml:"routes"`
	Failure string   `yaml:"failure"`
	Shadow  bool     `yaml:"shadow"`
}

// ParseConfig reads a rules file (YAML; unknown fields are errors) and
// checks every rule as a Limiter would.
func ParseConfig(data []byte) (*Config, error) {
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		return nil, fmt.Errorf("ratelimit: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c := &Config{}
	for _, s := range fc.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("ratelimit: trusted proxy %q: want a CIDR such as 10.0.0.0/8", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, p.Masked())
	}
	seen := map[string]bool{}
	for i, fr := range fc.Rules {
		per := time.Second
		if fr.Per != "" {
			d, err := time.ParseDuration(fr.Per)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("ratelimit: rule %s (#%d): per %q: want a duration such as 1s or 1m", fr.Name, i+1, fr.Per)
			}
			per = d
		}
		burst := fr.Burst
		if burst == 0 {
			burst = fr.Rate
		}
		r := Rule{Name: fr.Name, Kind: Kind(fr.Kind), Limit: Limit{Rate: fr.Rate, Period: per, Burst: burst},
			Routes: fr.Routes, Failure: FailureMode(fr.Failure), Shadow: fr.Shadow}
		for _, b := range fr.By {
			r.By = append(r.By, By(b))
		}
		if err := r.check(); err != nil {
			return nil, err
		}
		if _, err := compile(r); err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("ratelimit: rule %s: named twice", r.Name)
		}
		seen[r.Name] = true
		c.Rules = append(c.Rules, r)
	}
	return c, nil
}
