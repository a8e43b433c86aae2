package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"

	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func TestIsControl(t *testing.T) {
	for _, r := range []rune{0, '\n', 0x1b, 0x7f, 0x85, 0x9f, '\u00ad', '\u200b', '\u200e', '\u202e', '\u2066', '\u061c', '\ufeff', '\u2028', '\u2029'} {
		if !IsControl(r) {
			t.Errorf("IsControl(U+%04X) = false", r)
		}
	}
	for _, r := range []rune{' ', 'a', '~', '\u00a0', '\u00e9', '\u4e2d', '\U0001F600', utf8.RuneError} {
		if IsControl(r) {
			t.Errorf("IsControl(U+%04X) = true", r)
		}
	}
	if ControlKind(0) != "control character" || ControlKind('\u202e') != "format character" {
		t.Error("ControlKind")
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"O=Good":                "O=Good",
		"a\u202eb":              "a\uFFFDb",
		"x\x00y":                "x\uFFFDy",
		"\xff\xfe":              "\uFFFD",
		strings.Repeat("é", 10): strings.Repeat("é", 4), // 9 bytes: cut at a rune boundary
	} {
		if got := Clean(in, 9); got != want {
			t.Errorf("Clean(%q, 9) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckHostname(t *testing.T) {
	for _, h := range []string{"api.example.com", "*.example.com", "[::1]", "10.0.0.1", "a_b.test", strings.Repeat("a", 253)} {
		if err := CheckHostname("hostname", h); err != nil {
			t.Errorf("%q: %v", h, err)
		}
	}
	for h, msg := range map[string]string{
		"":                       "hostname: want a host name of 1 to 253 characters",
		strings.Repeat("a", 254): "hostname: want a host name of 1 to 253 characters",
		"API.example.com":        `hostname "API.example.com": not a host name`,
		"<script>":               `hostname "<script>": not a host name`,
		"bücher.test":            `hostname "bücher.test": not a host name`,
	} {
		if err := CheckHostname("hostname", h); err == nil || err.Error() != msg {
			t.Errorf("%q: %v, want %s", h, err, msg)
		}
	}
}
