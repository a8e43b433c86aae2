package authz

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Unit is a rate limit's unit of time, as envoyproxy/ratelimit and
// Envoy's RateLimitResponse name them.
type Unit string

// The units, and what they last: a month is 30 days and a year 365, as
// envoyproxy/ratelimit counts them.
const (
	Second Unit = "second"
	Minute Unit = "minute"
	Hour   Unit = "hour"
	Day    Unit = "day"
	Week   Unit = "week"
	Month  Unit = "month"
	Year   Unit = "year"
)

var units = map[string]time.Duration{
	"SECOND": time.Second, "MINUTE": time.Minute, "HOUR": time.Hour, "DAY": 24 * time.Hour,
	"WEEK": 7 * 24 * time.Hour, "MONTH": 30 * 24 * time.Hour, "YEAR": 365 * 24 * time.Hour,
}

// Duration is how long u lasts; 0 for an unknown unit.
func (u Unit) Duration() time.Duration { return units[strings.ToUpper(string(u))] }

// LimitConfig is one file of envoyproxy/ratelimit's configuration: a
// domain and its tree of descriptors. Read it with ParseLimitConfig.
type LimitConfig struct {
	Domain      string
	Descriptors []Descriptor
}

// Descriptor is a node of the tree: a key, and a value (empty: any
// value, each counted apart; ending in '*': any value with that prefix),
// an optional limit, and the descriptors below it.
type Descriptor struct {
	Key       string
	Value     string
	RateLimit *RateLimit
	// Descriptors are matched against the request's next entry.
	Descriptors []Descriptor
	// ShadowMode decides and counts, but never refuses.
	ShadowMode bool
	// QuotaMode reports a refusal as OK (envoyproxy/ratelimit's quota
	// mode): the engine is told the state, nothing is refused.
	QuotaMode bool
	// ShareThreshold, on a wildcard value, counts every value the
	// wildcard matches as one.
	ShareThreshold bool
	// DetailedMetric and ValueToMetric are envoyproxy/ratelimit's
	// metric settings, read and kept; Rampart's metrics are per rule.
	DetailedMetric bool
	ValueToMetric  bool
}

// RateLimit is a descriptor's limit: RequestsPerUnit per Unit, or
// Unlimited.
type RateLimit struct {
	RequestsPerUnit uint32
	Unit            Unit
	Unlimited       bool
	// Name names the limit, for Replaces and in the answer.
	Name string
	// Replaces are the names of limits this one replaces when both apply
	// to one request.
	Replaces []string
}

// ErrLimitConfig is what every error of ParseLimitConfig and NewLimits
// wraps (errors.Is).
var ErrLimitConfig = errors.New("authz: rate limit configuration")

func configErr(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrLimitConfig, name, fmt.Sprintf(format, args...))
}

// validKeys are the keys envoyproxy/ratelimit accepts, at any level of
// the file: what it refuses, this refuses, so that a file moves between
// the two unchanged.
var validKeys = map[string]bool{
	"domain": true, "key": true, "value": true, "descriptors": true, "rate_limit": true,
	"unit": true, "requests_per_unit": true, "unlimited": true, "shadow_mode": true,
	"quota_mode": true, "name": true, "replaces": true, "detailed_metric": true,
	"value_to_metric": true, "share_threshold": true,
}

// maxLimitConfig bounds a file: envoyproxy/ratelimit's are kilobytes.
const maxLimitConfig = 4 << 20

// ParseLimitConfig reads one file of envoyproxy/ratelimit's format (name
// names it in errors). It refuses what envoyproxy/ratelimit refuses at
// load: a YAML error, an unknown key at any level, a list of anything but
// maps, a value that is not a string, integer or boolean, an empty
// domain or key, a key (and value) twice at one level, an unknown unit, a
// unit with unlimited, an empty replaces entry or one naming its own
// limit, share_threshold on a value that is not a wildcard.
func ParseLimitConfig(name string, data []byte) (*LimitConfig, error) {
	if len(data) > maxLimitConfig {
		return nil, configErr(name, "the file is %d bytes, over the limit of %d", len(data), maxLimitConfig)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, configErr(name, "error loading config file: %v", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 { // an empty file
		return nil, configErr(name, "config file cannot have empty domain")
	}
	if root.Kind != yaml.MappingNode {
		return nil, configErr(name, "error loading config file: want a map at the top")
	}
	if err := checkKeys(name, root, 0); err != nil {
		return nil, err
	}
	var y yamlRoot
	if err := root.Decode(&y); err != nil {
		return nil, configErr(name, "error loading config file: %v", err)
	}
	if y.Domain == "" {
		return nil, configErr(name, "config file cannot have empty domain")
	}
	c := &LimitConfig{Domain: y.Domain}
	var err error
	if c.Descriptors, err = descriptors(name, y.Domain+".", y.Descriptors); err != nil {
		return nil, err
	}
	return c, nil
}

type yamlRoot struct {
	Domain      string           `yaml:"domain"`
	Descriptors []yamlDescriptor `yaml:"descriptors"`
}

type yamlDescriptor struct {
	Key            string           `yaml:"key"`
	Value          string           `yaml:"value"`
	RateLimit      *yamlRateLimit   `yaml:"rate_limit"`
	Descriptors    []yamlDescriptor `yaml:"descriptors"`
	ShadowMode     bool             `yaml:"shadow_mode"`
	QuotaMode      bool             `yaml:"quota_mode"`
	DetailedMetric bool             `yaml:"detailed_metric"`
	ValueToMetric  bool             `yaml:"value_to_metric"`
	ShareThreshold bool             `yaml:"share_threshold"`
}

type yamlRateLimit struct {
	RequestsPerUnit uint32 `yaml:"requests_per_unit"`
	Unit            string `yaml:"unit"`
	Unlimited       bool   `yaml:"unlimited"`
	Name            string `yaml:"name"`
	Replaces        []struct {
		Name string `yaml:"name"`
	} `yaml:"replaces"`
}

// maxDepth bounds the nesting of a file, so that a hostile one cannot
// exhaust the stack.
const maxDepth = 64

// checkKeys checks the keys of n, a map, and of every map in it, as
// envoyproxy/ratelimit's validateYamlKeys does.
func checkKeys(name string, n *yaml.Node, depth int) error {
	if depth > maxDepth {
		return configErr(name, "nested deeper than %d levels", maxDepth)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return configErr(name, "config error, key is not of type string: %v", k.Value)
		}
		if !validKeys[k.Value] {
			return configErr(name, "config error, unknown key '%s'", k.Value)
		}
		switch v.Kind {
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.MappingNode {
					return configErr(name, "config error, yaml file contains list of type other than map: %v", e.Value)
				}
				if err := checkKeys(name, e, depth+1); err != nil {
					return err
				}
			}
		case yaml.MappingNode:
			if err := checkKeys(name, v, depth+1); err != nil {
				return err
			}
		case yaml.ScalarNode:
			switch v.ShortTag() {
			case "!!str", "!!int", "!!bool", "!!null":
			default:
				return configErr(name, "error checking config: %s is a %s", k.Value, v.ShortTag())
			}
		default:
			return configErr(name, "error checking config: %s", k.Value)
		}
	}
	return nil
}

// descriptors checks and converts one level of the tree; parent is the
// composite key above it, for errors.
func descriptors(name, parent string, ys []yamlDescriptor) ([]Descriptor, error) {
	seen := map[string]bool{}
	var out []Descriptor
	for _, y := range ys {
		if y.Key == "" {
			return nil, configErr(name, "descriptor has empty key")
		}
		final := y.Key
		if y.Value != "" {
			final += "_" + y.Value
		}
		if seen[final] {
			return nil, configErr(name, "duplicate descriptor composite key '%s'", parent+final)
		}
		seen[final] = true
		d := Descriptor{Key: y.Key, Value: y.Value, ShadowMode: y.ShadowMode, QuotaMode: y.QuotaMode,
			ShareThreshold: y.ShareThreshold, DetailedMetric: y.DetailedMetric, ValueToMetric: y.ValueToMetric}
		if rl := y.RateLimit; rl != nil {
			_, known := units[strings.ToUpper(rl.Unit)]
			switch {
			case rl.Unlimited && known:
				return nil, configErr(name, "should not specify rate limit unit when unlimited")
			case !rl.Unlimited && !known:
				return nil, configErr(name, "invalid rate limit unit '%s'", rl.Unit)
			}
			d.RateLimit = &RateLimit{RequestsPerUnit: rl.RequestsPerUnit, Unit: Unit(strings.ToLower(rl.Unit)), Unlimited: rl.Unlimited, Name: rl.Name}
			for _, r := range rl.Replaces {
				switch r.Name {
				case "":
					return nil, configErr(name, "should not have an empty replaces entry")
				case rl.Name:
					return nil, configErr(name, "replaces should not contain name of same descriptor")
				}
				d.RateLimit.Replaces = append(d.RateLimit.Replaces, r.Name)
			}
		}
		if y.ShareThreshold && !strings.HasSuffix(final, "*") {
			return nil, configErr(name, "share_threshold can only be used with wildcard values (ending with '*'), but found key '%s'", final)
		}
		var err error
		if d.Descriptors, err = descriptors(name, parent+final+".", y.Descriptors); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ruleName is the ratelimit.Rule name of the limit at path (the
// composite keys from the domain down): the same in every instance that
// reads the same file, so that instances sharing a store share counts.
func ruleName(path string) string {
	sum := sha256.Sum256([]byte(path))
	return "rls." + hex.EncodeToString(sum[:10])
}

// gcra is the mapping of a fixed-window limit to GCRA: RequestsPerUnit
// per Unit, with a burst of RequestsPerUnit, so that a client may spend
// a whole unit's quota at once, as with fixed windows, and is then
// refilled continuously. In any interval of length w a key is admitted
// at most RequestsPerUnit × (1 + w/Unit) requests, and never 2 ×
// RequestsPerUnit within a moment, as fixed windows admit at their
// boundary.
func gcraBurst(rpu uint32) int {
	if rpu > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(rpu)
}
