package cli

import (
	"errors"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]string{
		"api.example.com":      "api.example.com:443",
		"API.Example.com.":     "api.example.com:443",
		"api.example.com:8443": "api.example.com:8443",
		"127.0.0.1:1":          "127.0.0.1:1",
		"[::1]:8443":           "[::1]:8443",
		"::1":                  "[::1]:443",
		"2001:db8::1":          "[2001:db8::1]:443",
		// Every trailing dot, as the pin library and crypto/tls strip them.
		"api.example.com..:8443": "api.example.com:8443",
		"API.EXAMPLE.COM...":     "api.example.com:443",
		"127.0.0.1..:1":          "127.0.0.1:1",
	} {
		got, err := parseTarget(in, 443)
		if err != nil || got.String() != want {
			t.Errorf("parseTarget(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":443", "host:0", "host:65536", "host:x", "https://host/", "[::1", "[::1]:", "api..example.com", ".api.example.com", "..:443"} {
		if _, err := parseTarget(in, 443); err == nil {
			t.Errorf("parseTarget(%q) succeeded", in)
		}
	}
}

// FuzzParseTarget: errors are usage errors; accepted targets have a host
// and a valid port, and their canonical form parses to the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"api.example.com", "a:1", "[::1]:443", "::1", "https://x/", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s, 443)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not a usage error", err)
			}
			return
		}
		if tg.host == "" || tg.port < 1 || tg.port > 65535 {
			t.Fatalf("parseTarget(%q) = %+v", s, tg)
		}
		again, err := parseTarget(tg.String(), 443)
		if err != nil || again.host != tg.host || again.port != tg.port {
			t.Fatalf("round trip of %q via %q: %+v, %v", s, tg.String(), again, err)
		}
	})
}
