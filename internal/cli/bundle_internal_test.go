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
// --expires 9999-12-31 before lifetimes were bounded).
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
	for _, want := range []string{`"issued_at": "2026-12-02T00:00:00Z"`, `"expires_at": "10000-01-01T00:00:00Z"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
}
