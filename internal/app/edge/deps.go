package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/ratelimit/redisstore"
	"github.com/rampartsec/rampart/token"
)

// auth builds the verifiers of the file's auth section: API keys checked
// in the control plane's database, tokens against the issuer's JWKS (and
// the database's revocations).
func (e *Edge) auth(ctx context.Context, dataDir func() (string, error)) error {
	var st store.Store
	if a := e.file.Auth.APIKeys; a != nil {
		var pepper []byte
		var err error
		if st, pepper, err = openKeyStore(ctx, a.DataDir, a.DB, dataDir); err != nil {
			return err
		}
		e.onClose(func() { st.Close() })
		v := &apikey.Verifier{Store: st.APIKeys(), Pepper: pepper, Logger: e.log}
		e.onClose(func() { v.Close() })
		e.deps.APIKeys = v
	}
	if t := e.file.Auth.Tokens; t != nil {
		v := &token.Validator{Issuer: t.Issuer, Audience: t.Audience, JWKSURL: t.JWKSURL, Logger: e.log}
		if t.JWKSRoots != "" {
			pool, err := loadPool("auth.tokens.jwks_roots", t.JWKSRoots)
			if err != nil {
				return err
			}
			v.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			}}
		}
		if st != nil {
			// The control plane's revocations (RFC 7009) apply at once.
			v.Revoked = st.RevokedTokens().TokenRevoked
		} else {
			e.warn("auth.tokens without auth.api_keys: revoked tokens are accepted until they expire; give auth.api_keys the control plane's database to check revocations")
		}
		// A misconfigured Validator: refuse to start rather than
		// answer 500 later.
		if err := v.Check(); err != nil {
			return fmt.Errorf("auth.tokens: %w", err)
		}
		e.deps.Tokens = v
	}
	return nil
}

// openKeyStore opens the control plane's database for checking API keys,
// checks its master key (which must exist: the gateway makes none), and
// returns the one key the gateway needs of it: the API-key pepper. The
// master key itself is not kept, nor any key that opens the token
// signing keys or the CA's (TestEdgeHoldsOnlyThePepper). An empty dir is
// dataDir's.
func openKeyStore(ctx context.Context, dir, dsn string, dataDir func() (string, error)) (store.Store, []byte, error) {
	// The gateway reads the control plane's directory: a name that does
	// not exist is a mistake, not a directory to make.
	if dir != "" {
		if fi, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("auth.api_keys: data_dir: %w", err)
		} else if !fi.IsDir() {
			return nil, nil, fmt.Errorf("auth.api_keys: data_dir: %s is not a directory", dir)
		}
	} else {
		if dataDir == nil {
			return nil, nil, errors.New("auth.api_keys: data_dir: none given, and no default")
		}
		var err error
		if dir, err = dataDir(); err != nil {
			return nil, nil, fmt.Errorf("data directory: %w", err)
		}
	}
	master, err := secrets.Load(dir, false)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.api_keys: %w", err)
	}
	if dsn == "" {
		dsn = filepath.Join(dir, "rampart.db")
	}
	// Nor is a SQLite file that does not exist one to create: every key
	// would be unknown. (sqlite: and postgres:// DSNs are taken as given.)
	if !strings.Contains(dsn, ":") {
		if _, err := os.Stat(dsn); err != nil {
			return nil, nil, fmt.Errorf("auth.api_keys: no database at %s: point data_dir or db at the control plane's (%w)", dsn, errors.Unwrap(err))
		}
	}
	st, err := backend.Open(ctx, dsn)
	if err != nil {
		return nil, nil, &StartError{err}
	}
	if err := secrets.Verify(ctx, store.MasterKeyRecords(st), master); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("auth.api_keys: %w", err)
	}
	return st, master.Key(secrets.APIKeyPepper), nil
}

// limitStore connects to the file's Redis, if it names one.
func (e *Edge) limitStore(ctx context.Context) error {
	s := e.file.LimitStore
	if s == nil {
		return nil
	}
	opts, err := redis.ParseURL(s.Redis)
	if err != nil {
		return fmt.Errorf("ratelimit_store.redis: %w", err)
	}
	// Fail fast: a decision waits at most one round trip on a Redis that
	// is down, then the rule's failure mode applies.
	opts.MaxRetries, opts.DialerRetries = -1, 1
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	// go-redis would log each failed dial on its own, in its own format;
	// the limiter logs the store's failures and recoveries.
	redis.SetLogger(redisLogger{e.log})
	rdb := redis.NewClient(opts)
	e.onClose(func() { rdb.Close() })
	prefix := s.Prefix
	if prefix == "" {
		prefix = "rampart:rl:gateway"
	}
	e.deps.RateLimitStore = redisstore.New(rdb, redisstore.Options{Prefix: prefix})
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		e.warn(fmt.Sprintf("ratelimit_store: redis at %s does not answer (%v); until it does, %s", opts.Addr, err, storeDown(e.file)))
	}
	return nil
}

// redisLogger sends go-redis's own log lines to the debug level.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// storeDown says what the edge rules do while the shared store is down.
func storeDown(f *File) string {
	var open, closed []string
	if f.limits != nil {
		for _, r := range f.limits.Rules {
			switch {
			case r.Kind == ratelimit.Business:
			case r.Failure == ratelimit.FailClosed:
				closed = append(closed, r.Name)
			default:
				open = append(open, r.Name)
			}
		}
	}
	var parts []string
	if len(open) > 0 {
		parts = append(parts, "open rules ("+strings.Join(open, ", ")+") limit on this instance alone")
	}
	if len(closed) > 0 {
		parts = append(parts, "closed rules ("+strings.Join(closed, ", ")+") refuse with 503")
	}
	if len(parts) == 0 {
		return "no rule uses it"
	}
	return strings.Join(parts, " and ")
}

// writePID writes this process's ID to name (if set), by renaming a new
// file into place; Close removes it if it still holds this process's ID
// (a second instance may have replaced it).
func (e *Edge) writePID(name string) error {
	if name == "" {
		return nil
	}
	pid := strconv.Itoa(os.Getpid())
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, []byte(pid+"\n"), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--pid-file: %w", err)
	}
	e.onClose(func() {
		if data, err := os.ReadFile(name); err == nil && strings.TrimSpace(string(data)) == pid {
			os.Remove(name)
		}
	})
	return nil
}

// section is a section of the file as reloads see it.
type section struct {
	name string
	of   func(*File) any
}

// The reload rules: every section of File is in one of these lists, or
// is routes (TestEverySectionHasAReloadRule).
var (
	// atStart are read at start only: the listeners, the TLS files
	// (watched from the paths given at start), the verifiers built from
	// auth, the rate limit store and the access log.
	atStart = []section{
		{"listen", func(f *File) any { return f.Listen }},
		{"tls", func(f *File) any { return f.TLS }},
		{"admin_listen", func(f *File) any { return f.AdminListen }},
		{"auth", func(f *File) any { return f.Auth }},
		{"ratelimit_store", func(f *File) any { return f.LimitStore }},
		{"access_log", func(f *File) any { return f.AccessLog }},
		{"authz", func(f *File) any { return f.Authz }},
	}
	// reloaded are applied by a reload, besides the routes.
	reloaded = []section{
		{"hosts", func(f *File) any { return f.Hosts }},
		{"identity", func(f *File) any { return f.Identity }},
		{"cors", func(f *File) any { return f.CORS }},
		{"ratelimit", func(f *File) any { return f.limits }},
	}
)

// startOnly refuses a reload that changes settings used only at start
// (atStart). Applying the rest would report success while, say, API keys
// a new auth section drops are still accepted.
func startOnly(file string, cur, next *File) error {
	var changed []string
	for _, s := range atStart {
		if !reflect.DeepEqual(s.of(cur), s.of(next)) {
			changed = append(changed, s.name)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s: %s: changed, applied only at start; restart the gateway", file, strings.Join(changed, ", "))
	}
	return nil
}

// configChanges says what a reload changed: routes added (+), removed
// (-) or changed (~), and the other sections that differ.
func configChanges(cur, next *File) string {
	var out []string
	old := map[string]Route{}
	for _, r := range cur.Routes {
		old[r.Prefix] = r
	}
	var routes []string
	for _, r := range next.Routes {
		o, ok := old[r.Prefix]
		switch {
		case !ok:
			routes = append(routes, "+"+r.Prefix)
		case !reflect.DeepEqual(o, r):
			routes = append(routes, "~"+r.Prefix)
		}
		delete(old, r.Prefix)
	}
	for _, r := range cur.Routes {
		if _, gone := old[r.Prefix]; gone {
			routes = append(routes, "-"+r.Prefix)
		}
	}
	if len(routes) > 0 {
		out = append(out, "routes "+strings.Join(routes, " "))
	}
	for _, s := range reloaded {
		if !reflect.DeepEqual(s.of(cur), s.of(next)) {
			out = append(out, s.name)
		}
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, "; ")
}
