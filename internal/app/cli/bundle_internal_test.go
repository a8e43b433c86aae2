package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

// P13: bundle verify --json never fails on a time, even one past year
// 9999, which time.Time's MarshalJSON cannot write (a bundle signed with
// --expires 9999-12-31 before lifetimes were bounded). It writes RFC 3339,
// as the admin API does (api.Time): the last second of year 9999.
func TestBundleInfoJSONAnyYear(t *testing.T) {
	p, err := pin.ParsePolicy([]byte(`{"version":1,"domains":[{"domain":"api.payments.test","pins":["sha256/ZeNsopu/RkB+8hoTVbU5SFCi5VD/wnUY2WAsJXMWm8w=","sha256/ntOyHREjgVPungTgIC00VYfAX9aF6YYS/WoPSZd68UA="]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle.Bundle{Name: "mobile", Version: 1, KeyID: "kid", Policy: p,
		IssuedAt: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	info, err := newBundleInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := writeJSON(&out, info); err != nil {
		t.Fatalf("writeJSON: %v", err)
	}
	for _, want := range []string{`"issued_at": "2026-12-02T00:00:00Z"`, `"expires_at": "9999-12-31T23:59:59Z"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
}

// FuzzParseExpiry checks --expires for any input: an error names the
// flag; a success is a time after now, and a date (YYYY-MM-DD) means the
// midnight UTC that ends it.
func FuzzParseExpiry(f *testing.F) {
	for _, s := range []string{"90d", "720h", "1s", "2027-03-31", "9999-12-31", "36500d", "0d", "-1d", "1.5h", "d", "", "2027-02-30", "99999999999999999999d", "9223372036854775807d"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		exp, err := parseExpiry(s, now)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--expires ") {
				t.Fatalf("error %q does not name --expires", err)
			}
			return
		}
		if d, derr := time.Parse(time.DateOnly, s); derr == nil {
			if !exp.Equal(d.AddDate(0, 0, 1)) {
				t.Fatalf("%q: %s, want the end of that day", s, exp)
			}
			return
		}
		if !exp.After(now) {
			t.Fatalf("%q: %s is not after now", s, exp)
		}
	})
}
