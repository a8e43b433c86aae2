package dsn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func TestScrub(t *testing.T) {
	for _, tc := range []struct{ dsn, secret string }{
		{"postgres://u:hunter2@h/db", "hunter2"},
		{"postgres://u:hun%40ter2@h/db", "hun%40ter2"},
		{"postgres://u:hun%40ter2@h/db", "hun@ter2"},
		{"postgres://u:pass/word?x@h/db", "pass/word?x"},
		{"postgres://u:p@ss@h/db", "p@ss"},
		{"postgres://h/db?sslmode=disable&password=hunter2", "hunter2"},
		{"host=h password=hunter2 user=u", "hunter2"},
		{"host=h password = 'hunter 2' user=u", "hunter 2"},
		{"host=h sslpassword=hunter2", "hunter2"},
	} {
		msg := fmt.Sprintf("cannot connect with %s (%s)", tc.dsn, tc.secret)
		if got := Scrub(msg, tc.dsn); strings.Contains(got, tc.secret) {
			t.Errorf("Scrub(%q) = %q, still shows %q", tc.dsn, got, tc.secret)
		}
	}
	if got := Scrub("postgres://u@h/db", "postgres://u@h/db"); got != "postgres://u@h/db" {
		t.Errorf("Scrub changed a DSN without a password: %q", got)
	}
}

func TestRedactKeepsChain(t *testing.T) {
	err := fmt.Errorf("dial postgres://u:hunter2@h: %w", context.Canceled)
	r := Redact(err, "postgres://u:hunter2@h")
	if strings.Contains(r.Error(), "hunter2") {
		t.Errorf("Redact = %q", r)
	}
	if !errors.Is(r, context.Canceled) {
		t.Error("Redact broke the error chain")
	}
	if Redact(nil, "x") != nil {
		t.Error("Redact(nil) is not nil")
	}
}

// Whatever the password, once it is in a URL DSN no message about the DSN
// shows it.
func FuzzScrubURL(f *testing.F) {
	f.Add("u", "hunter2", "h:5432/db?sslmode=disable")
	f.Add("u", "p@ss:w/rd?#", "h/db")
	f.Add("", "%zz", "h")
	f.Fuzz(func(t *testing.T, user, password, rest string) {
		if password == "" || strings.Contains(Mask, password) ||
			strings.ContainsAny(user, ":@") || strings.Contains(rest, "@") {
			t.Skip()
		}
		dsn := "postgres://" + user + ":" + password + "@" + rest
		for _, msg := range []string{dsn, "error: " + dsn + ": " + password} {
			if got := Scrub(msg, dsn); strings.Contains(got, password) {
				t.Fatalf("Scrub(%q) = %q, shows the password %q", msg, got, password)
			}
		}
	})
}

// The same for keyword/value DSNs.
func FuzzScrubKeywordValue(f *testing.F) {
	f.Add("hunter2")
	f.Fuzz(func(t *testing.T, password string) {
		if password == "" || strings.Contains(Mask, password) || strings.ContainsAny(password, " \t\n\r\f\v'&\\") {
			t.Skip()
		}
		dsn := "host=h user=u password=" + password + " dbname=d"
		if got := Scrub("cannot parse "+dsn, dsn); strings.Contains(got, password) {
			t.Fatalf("Scrub = %q, shows the password %q", got, password)
		}
	})
}
