// Package dsn keeps database passwords out of error messages.
//
// A DSN such as postgres://rampart:secret@db/rampart carries a password,
// and errors about it end up in logs. The drivers redact what they
// recognise, on a best-effort basis, and say so; [Redact] removes, in
// addition, every password-like value found in the DSN as written, which
// still works when the DSN is too malformed for a parser to find its
// parts.
package dsn

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Mask replaces a password in messages.
const Mask = "xxxxx"

// kvPassword finds password=... (and sslpassword=...) in keyword/value
// DSNs and URL queries, quoted or not.
var kvPassword = regexp.MustCompile(`(?i)password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s&]*))`)

// secrets returns every value of dsn that may be a password, as written
// and decoded, longest first so that a secret containing another is
// replaced whole.
func secrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if u, err := url.PathUnescape(s); err == nil && u != s {
			out = append(out, u)
		}
		if u, err := url.QueryUnescape(s); err == nil && u != s {
			out = append(out, u)
		}
	}
	if _, rest, ok := strings.Cut(dsn, "://"); ok {
		// The userinfo runs to the last '@': a password may hold an
		// unescaped '@', '/' or '?', and over-masking is harmless.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
				add(pw)
			}
		}
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				add(pw)
			}
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		add(m[1]) // quoted
		add(m[2])
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// Scrub returns msg with every password of dsn replaced by [Mask].
func Scrub(msg, dsn string) string {
	for _, s := range secrets(dsn) {
		msg = strings.ReplaceAll(msg, s, Mask)
	}
	return msg
}

// Redact returns err with every password of dsn removed from its message.
// It still unwraps to err, so that callers can test for
// context.Canceled and the like; only its message is changed.
func Redact(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	scrubbed := Scrub(msg, dsn)
	if scrubbed == msg {
		return err
	}
	return &redacted{msg: scrubbed, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
