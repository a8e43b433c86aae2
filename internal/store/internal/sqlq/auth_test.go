package sqlq

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
)

func TestScopesRoundTrip(t *testing.T) {
	for _, scopes := range [][]string{nil, {"payment.read"}, {"payment.read", "payment.write", "a:b"}} {
		if got := SplitScopes(JoinScopes(scopes)); !reflect.DeepEqual(got, scopes) {
			t.Errorf("SplitScopes(JoinScopes(%q)) = %q", scopes, got)
		}
	}
	for _, bad := range [][]string{{""}, {"a b"}, {"a\tb"}, {"a", ""}} {
		if err := checkScopes(bad); err == nil {
			t.Errorf("checkScopes(%q) accepted scopes that would not read back", bad)
		}
	}
}

func TestNullTimes(t *testing.T) {
	if v := NullMillis(time.Time{}); v != nil {
		t.Errorf("NullMillis(zero) = %v, want NULL", v)
	}
	if got := NullTime(nil); !got.IsZero() {
		t.Errorf("NullTime(NULL) = %v, want zero", got)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 123_456_789, time.FixedZone("X", 3600))
	ms := NullMillis(at).(int64)
	if got, want := NullTime(&ms), time.Date(2026, 3, 1, 11, 0, 0, 123_000_000, time.UTC); got != want {
		t.Errorf("NullTime(NullMillis(%v)) = %v, want %v", at, got, want)
	}
}

func TestCheckNewKeyHidesHash(t *testing.T) {
	hash := []byte("\x01secret-looking-hash\x02")
	for _, r := range []*apikey.Record{
		{ID: "k", Hash: hash},
		{ID: "k", ClientID: "c", Hash: hash, RevokedAt: time.Unix(1, 0)},
		{ID: "k", ClientID: "c", Hash: hash, Scopes: []string{"a b"}},
	} {
		err := CheckNewKey(r)
		if err == nil {
			t.Fatalf("CheckNewKey(%+v) accepted it", r)
		}
		if strings.Contains(err.Error(), string(hash)) {
			t.Errorf("CheckNewKey error shows the hash: %v", err)
		}
	}
}
