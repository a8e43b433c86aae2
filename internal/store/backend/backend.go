// Package backend opens the [store.Store] a DSN names, so that callers
// (the control plane, the CLI) depend on one function instead of on every
// backend:
//
//   - postgres://... or postgresql://... opens [postgres.Open];
//   - sqlite:PATH, or a plain file path, opens [sqlite.Open] (sqlite:///abs
//     is accepted for /abs).
//
// Any other scheme is refused rather than taken for a file name. Error
// messages never contain the password of a DSN.
package backend

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/internal/dsn"
	"github.com/rampartsec/rampart/internal/store/postgres"
	"github.com/rampartsec/rampart/internal/store/sqlite"
)

// scheme matches a URL scheme followed by "://", RFC 3986's syntax.
var scheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)

// Open opens the store named by dsnString.
func Open(ctx context.Context, dsnString string) (store.Store, error) {
	s, err := open(ctx, dsnString)
	if err != nil {
		// The backends redact already; this covers what the DSN's
		// form hides from them (e.g. a DSN taken for a path).
		return nil, dsn.Redact(fmt.Errorf("store: %w", err), dsnString)
	}
	return s, nil
}

func open(ctx context.Context, d string) (store.Store, error) {
	if isPostgres(d) {
		return postgres.Open(ctx, d)
	}
	path, err := sqlitePath(d)
	if err != nil {
		return nil, err
	}
	return sqlite.Open(ctx, path)
}

func isPostgres(d string) bool {
	return strings.HasPrefix(d, "postgres://") || strings.HasPrefix(d, "postgresql://")
}

// sqlitePath returns the file a SQLite DSN names.
func sqlitePath(d string) (string, error) {
	switch {
	case d == "":
		return "", errors.New("no database given (a file path, sqlite:PATH or postgres://...)")
	case strings.HasPrefix(d, "sqlite:"):
		path := strings.TrimPrefix(d, "sqlite:")
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			// sqlite:///abs/path is a URL with an empty host;
			// sqlite://name would put the file name in the host.
			if !strings.HasPrefix(rest, "/") {
				return "", errors.New("sqlite:// must be followed by an absolute path (sqlite:///path), or use sqlite:PATH")
			}
			path = rest
		}
		return path, nil
	case scheme.MatchString(d):
		return "", fmt.Errorf("unsupported database scheme %q (want postgres:// or sqlite:)", scheme.FindStringSubmatch(d)[1])
	default:
		return d, nil
	}
}

// File returns the SQLite file a DSN names, absolute, and whether it
// names one (false for PostgreSQL and for DSNs Open refuses).
func File(d string) (string, bool) {
	if isPostgres(d) {
		return "", false
	}
	path, err := sqlitePath(d)
	if err != nil {
		return "", false
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, true
}

// Describe names the database of a DSN for messages, never with its
// password: the absolute file of a SQLite database; for PostgreSQL, the
// user, host, port and database it connects to (environment defaults
// applied, as the driver applies them).
func Describe(d string) string {
	if isPostgres(d) {
		return postgres.Describe(d)
	}
	if path, ok := File(d); ok {
		return path
	}
	return dsn.Scrub(d, d)
}
