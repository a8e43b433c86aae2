package suggest

import (
	"testing"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func TestClosest(t *testing.T) {
	known := []string{"domain", "since", "until", "mode", "served_pin", "app_version", "limit", "retention", "listen"}
	for _, tc := range []struct{ word, want string }{
		{"domian", "domain"}, // transposition
		{"retension", "retention"},
		{"listne", "listen"},
		{"Domain", "domain"}, // case
		{"sinse", "since"},
		{"servedpin", "served_pin"},
		{"limt", "limit"},
		{"format", ""}, // nothing near
		{"x", ""},
		{"", ""},
	} {
		if got := Closest(tc.word, known); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

// FuzzDistance: the distance is a metric's first properties: zero only
// for equal strings, symmetric, and at most the longer length.
func FuzzDistance(f *testing.F) {
	f.Add("domian", "domain")
	f.Add("", "abc")
	f.Add("ab", "ba")
	f.Fuzz(func(t *testing.T, a, b string) {
		d := distance(a, b)
		if d != distance(b, a) {
			t.Fatalf("distance(%q, %q) = %d but reversed %d", a, b, d, distance(b, a))
		}
		if (d == 0) != (string([]rune(a)) == string([]rune(b))) {
			t.Fatalf("distance(%q, %q) = %d", a, b, d)
		}
		if d > max(len([]rune(a)), len([]rune(b))) {
			t.Fatalf("distance(%q, %q) = %d, more than the longer length", a, b, d)
		}
	})
}
