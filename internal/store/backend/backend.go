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
	switch {
	case d == "":
		return nil, errors.New("no database given (a file path, sqlite:PATH or postgres://...)")
	case strings.HasPrefix(d, "postgres://"), strings.HasPrefix(d, "postgresql://"):
		return postgres.Open(ctx, d)
	case strings.HasPrefix(d, "sqlite:"):
		path := strings.TrimPrefix(d, "sqlite:")
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			// sqlite:///abs/path is a URL with an empty host;
			// sqlite://name would put the file name in the host.
			if !strings.HasPrefix(rest, "/") {
				return nil, errors.New("sqlite:// must be followed by an absolute path (sqlite:///path), or use sqlite:PATH")
			}
			path = rest
		}
		return sqlite.Open(ctx, path)
	case scheme.MatchString(d):
		return nil, fmt.Errorf("unsupported database scheme %q (want postgres:// or sqlite:)", scheme.FindStringSubmatch(d)[1])
	default:
		return sqlite.Open(ctx, d)
	}
}
