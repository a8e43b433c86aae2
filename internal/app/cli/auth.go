package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/rampartsec/rampart/internal/app/controlplane"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/backend"
	"github.com/rampartsec/rampart/internal/util/secrets"
	"github.com/rampartsec/rampart/token/authserver"
)

// defaultScopes is the scope catalogue of a payment API, and the scope
// that lets a resource server introspect any client's tokens.
var defaultScopes = controlplane.DefaultScopes

// storeFlags are the flags of the commands that work on the control
// plane's database directly: the same --data and --db as rampart serve.
type storeFlags struct {
	data, db, config string
	// init lets open make a new database where there is none.
	init bool
	// scopes is the catalogue, from the config file or the default.
	scopes []string
	cmd    *cobra.Command // for its stderr
}

func (f *storeFlags) register(c *cobra.Command) {
	f.cmd = c
	c.Flags().BoolVar(&f.init, "init", false, "make a new database (and master key) if there is none; rampart serve makes one on first start")
	c.Flags().StringVar(&f.config, "config", "", "rampart serve's configuration `FILE` (for data_dir, db, scopes)")
	c.Flags().StringVar(&f.data, "data", "", "data `DIR` (default $RAMPART_DATA or ~/.local/share/rampart)")
	c.Flags().StringVar(&f.db, "db", "", "database `DSN`: postgres://... or a SQLite file (default DATA/rampart.db)")
}

// open opens the store and its master key, and says on stderr which
// database it works on. It makes a new database (and master key) only
// with --init: an admin command pointed at the wrong directory must not
// quietly start an installation no server uses. The master key must be
// the one the database was set up with (secrets.Verify). Commands derive
// from it the one key they use: the pepper (manager), or the signing key
// KEK (token rotate-keys).
func (f *storeFlags) open(ctx context.Context) (store.Store, *secrets.Master, error) {
	f.scopes = defaultScopes
	if f.config != "" {
		cfg, err := controlplane.LoadFile(f.config)
		if err != nil {
			return nil, nil, fail(ExitUsage, fmt.Errorf("--config %w", err))
		}
		if f.data == "" {
			f.data = cfg.DataDir
		}
		if f.db == "" {
			f.db = cfg.DB
		}
		if cfg.Scopes != nil {
			f.scopes = cfg.Scopes
		}
	}
	dir, err := dataDirPath(f.data)
	if err != nil {
		return nil, nil, fail(ExitUsage, fmt.Errorf("data directory: %w", err))
	}
	dsn := f.db
	if dsn == "" {
		dsn = filepath.Join(dir, "rampart.db")
	}
	file, isFile := backend.File(dsn)
	fresh := false
	if isFile {
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			fresh = true
		}
	}
	if fresh && !f.init && f.db == "" {
		return nil, nil, fail(ExitUsage, fmt.Errorf("no database at %s: this command works on rampart serve's database; point --data (or --db, --config) at it, or pass --init to make a new one here", file))
	}
	if fresh && f.init {
		if dir, err = dataDir(f.data); err != nil {
			return nil, nil, fail(ExitUsage, fmt.Errorf("data directory: %w", err))
		}
	}
	// A master key may be made here only for a new local database: for
	// one given with --db, or one that exists, the servers' key is
	// needed.
	keys, err := secrets.Load(dir, fresh && f.init && f.db == "")
	if err != nil {
		return nil, nil, fail(ExitUsage, err)
	}
	if fresh && !f.init {
		return nil, nil, fail(ExitUsage, fmt.Errorf("no database at %s: point --db at rampart serve's database, or pass --init to make a new one", file))
	}
	st, err := backend.Open(ctx, dsn)
	if err != nil {
		return nil, nil, fail(ExitFailure, err)
	}
	if err := secrets.Verify(ctx, store.MasterKeyRecords(st), keys); err != nil {
		st.Close()
		if errors.Is(err, secrets.ErrMismatch) {
			return nil, nil, fail(ExitUsage, err)
		}
		return nil, nil, fail(ExitFailure, err)
	}
	what := "database"
	if fresh {
		what = "new database"
	}
	fmt.Fprintf(f.cmd.ErrOrStderr(), "rampart: %s %s (master key from %s)\n", what, backend.Describe(dsn), keys.Source)
	return st, keys, nil
}

func (f *storeFlags) manager(st store.Store, keys *secrets.Master, env string) *apikey.Manager {
	return &apikey.Manager{Store: st.APIKeys(), Pepper: keys.Key(secrets.APIKeyPepper), Env: apikey.Env(env), Scopes: f.scopes}
}

func splitScopes(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// authError maps store and manager errors to exit codes and messages.
// An unknown ID or a conflict is the caller's (2), and is said in
// notFound or conflict (when given) rather than in the backend's words; a
// request the manager refuses is the caller's too; anything else is a
// failure (1), with its cause.
func authError(err error, notFound, conflict string) error {
	switch {
	case notFound != "" && errors.Is(err, apikey.ErrNotFound):
		return fail(ExitUsage, errors.New(notFound))
	case conflict != "" && errors.Is(err, apikey.ErrConflict):
		return fail(ExitUsage, errors.New(conflict))
	case errors.Is(err, apikey.ErrNotFound), errors.Is(err, apikey.ErrConflict), errors.Is(err, apikey.ErrRefused):
		return fail(ExitUsage, err)
	}
	return fail(ExitFailure, err)
}

func noClient(id string) string {
	return fmt.Sprintf("no client %s (rampart client list shows them)", id)
}

func noKey(id string) string {
	return fmt.Sprintf("no API key %s (rampart apikey list shows them)", id)
}

// adminExitCodesHelp are the exit codes of the client, apikey and token
// commands.
const adminExitCodesHelp = `Exit status:
  0  success
  1  failure: the database failed or could not be reached
  2  usage error, an unknown client, key or scope, a taken ID, or a database
     set up with another master key`

func newClientCmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "client",
		Short: "Register and manage the clients API keys and tokens are issued to",
		Long: `Register and manage clients: who API keys and OAuth2 tokens are issued to,
with the scopes they may hold (payment.read, payment.write, payment.withdraw).
These commands work on the control plane's database (--data, --db as for
rampart serve).

` + adminExitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newClientCreateCmd(stdio), newClientListCmd(stdio), newClientDisableCmd(stdio), newClientEnableCmd(stdio))
	return c
}

func newClientCreateCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	var name, scopes, certSubject, certURI, certDNS string
	var lifetime time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "create ID --scopes S[,S...] [--name N] [--token-lifetime D] [--cert-uri URI | --cert-subject DN | --cert-dns NAME]",
		Short: "Register a client",
		Long: `Register a client. --scopes lists what it may be granted (payment.read,
payment.write, payment.withdraw). --token-lifetime sets its access tokens'
lifetime (default 15m, at most 24h). --cert-uri (a SPIFFE ID, say),
--cert-subject or --cert-dns name the client certificate it may
authenticate with (tls_client_auth, RFC 8705).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			st, keys, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			cl, err := sf.manager(st, keys, "").CreateClient(c.Context(), apikey.Client{
				ID: a[0], Name: name, Scopes: splitScopes(scopes), TokenLifetime: lifetime,
				CertSubject: certSubject, CertURI: certURI, CertDNS: certDNS,
			})
			if err != nil {
				return authError(err, "", fmt.Sprintf("client %s exists already (rampart client list shows them)", a[0]))
			}
			if asJSON {
				return writeJSON(stdio.Out, clientJSON(*cl))
			}
			fmt.Fprintf(stdio.Out, "client %s created, scopes %s\n", cl.ID, strings.Join(cl.Scopes, " "))
			return nil
		},
	}
	sf.register(c)
	f := c.Flags()
	f.StringVar(&name, "name", "", "a human-readable `NAME`")
	f.StringVar(&scopes, "scopes", "", "the `SCOPES` the client may hold, comma-separated")
	f.Var((*durationFlag)(&lifetime), "token-lifetime", "access-token lifetime (`D`, such as 1h or 1d; default 15m, at most 24h)")
	f.StringVar(&certSubject, "cert-subject", "", "client certificate subject `DN` (tls_client_auth)")
	f.StringVar(&certURI, "cert-uri", "", "client certificate URI SAN (tls_client_auth), e.g. a SPIFFE `ID`")
	f.StringVar(&certDNS, "cert-dns", "", "client certificate DNS SAN `NAME` (tls_client_auth)")
	f.BoolVar(&asJSON, "json", false, "print the client as JSON")
	return c
}

type clientOut struct {
	ID            string    `json:"id"`
	Name          string    `json:"name,omitempty"`
	Scopes        []string  `json:"scopes"`
	Disabled      bool      `json:"disabled"`
	TokenLifetime string    `json:"token_lifetime"`
	CertSubject   string    `json:"cert_subject,omitempty"`
	CertURI       string    `json:"cert_uri,omitempty"`
	CertDNS       string    `json:"cert_dns,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
}

func clientJSON(c apikey.Client) clientOut {
	lt := c.TokenLifetime
	if lt == 0 {
		lt = authserver.DefaultLifetime
	}
	return clientOut{c.ID, c.Name, c.Scopes, c.Disabled, lt.String(), c.CertSubject, c.CertURI, c.CertDNS, c.CreatedAt.UTC()}
}

func newClientListCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the clients",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			st, _, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			cs, err := st.APIKeys().Clients(c.Context())
			if err != nil {
				return fail(ExitFailure, err)
			}
			out := make([]clientOut, len(cs))
			for i, cl := range cs {
				out[i] = clientJSON(cl)
			}
			if asJSON {
				return writeJSON(stdio.Out, out)
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT\tSTATUS\tSCOPES\tTOKENS\tCERTIFICATE")
			for _, cl := range out {
				status := "active"
				if cl.Disabled {
					status = "disabled"
				}
				cert := cl.CertURI + cl.CertSubject + cl.CertDNS
				if cert == "" {
					cert = "-"
				}
				lt, _ := time.ParseDuration(cl.TokenLifetime)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cl.ID, status, strings.Join(cl.Scopes, " "), shortDuration(lt), cert)
			}
			return tw.Flush()
		},
	}
	sf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newClientDisableCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	c := &cobra.Command{
		Use:   "disable ID",
		Short: "Disable a client: its API keys, certificate and access tokens stop working at once",
		Long: `Disable a client, the switch for an incident: its API keys and its
certificate stop authenticating, and every access token it holds stops
working, at once, on every instance (within 100 ms) and at every
token.Validator that checks revocations (rampart gateway with auth.api_keys).
The tokens it held stay revoked after client enable.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			st, _, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := st.APIKeys().Client(c.Context(), a[0]); err != nil {
				return authError(err, noClient(a[0]), "")
			}
			// Its tokens first: should disabling fail, they are revoked
			// all the same.
			now := time.Now().UTC()
			if err := st.RevokedTokens().RevokeClientTokens(c.Context(), a[0], now); err != nil {
				return fail(ExitFailure, err)
			}
			if err := st.APIKeys().SetClientDisabled(c.Context(), a[0], true); err != nil {
				return authError(err, noClient(a[0]), "")
			}
			fmt.Fprintf(stdio.Out, "client %s disabled; its access tokens issued until %s are revoked\n", a[0], now.Format(time.RFC3339))
			return nil
		},
	}
	sf.register(c)
	return c
}

func newClientEnableCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	c := &cobra.Command{
		Use:   "enable ID",
		Short: "Enable a disabled client again: its keys and certificate work; its old tokens stay revoked",
		Long: `Enable a disabled client again: its API keys and its certificate
authenticate again, on every instance within 100 ms, and it gets new access
tokens. The tokens it held when it was disabled stay revoked.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			st, _, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			cl, err := st.APIKeys().Client(c.Context(), a[0])
			if err != nil {
				return authError(err, noClient(a[0]), "")
			}
			if cl.Disabled {
				// A token server whose key check had not yet seen the
				// disable (it polls every 100 ms) could have issued tokens
				// after disable's revocation; while disabled they were
				// refused, and they must not come back: revoke again, up
				// to now, before enabling.
				if err := st.RevokedTokens().RevokeClientTokens(c.Context(), a[0], time.Now().UTC()); err != nil {
					return fail(ExitFailure, err)
				}
			}
			if err := st.APIKeys().SetClientDisabled(c.Context(), a[0], false); err != nil {
				return authError(err, noClient(a[0]), "")
			}
			fmt.Fprintf(stdio.Out, "client %s enabled\n", a[0])
			return nil
		},
	}
	sf.register(c)
	return c
}

func newAPIKeyCmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "apikey",
		Short: "Create, list, rotate and revoke API keys",
		Long: `Create, list, rotate and revoke API keys. A key is shown once, when it is
made; the database keeps only its HMAC. Rotation gives a new key and lets the
old one work for a grace period (requests with it get Deprecation and Sunset
headers); the rotation policy marks keys older than 90 days as due. Clients
can rotate their own key: POST /v1/apikeys/rotate with the current key.

` + adminExitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	c.AddCommand(newAPIKeyCreateCmd(stdio), newAPIKeyListCmd(stdio), newAPIKeyRotateCmd(stdio), newAPIKeyRevokeCmd(stdio))
	return c
}

type keyOut struct {
	Key        string     `json:"key,omitempty"`
	ID         string     `json:"id"`
	Client     string     `json:"client"`
	Hint       string     `json:"hint"`
	Scopes     []string   `json:"scopes"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	GraceUntil *time.Time `json:"grace_until,omitempty"`
	ReplacedBy string     `json:"replaced_by,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	Replaces   string     `json:"replaces,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func keyStatus(r apikey.Record, now time.Time) string {
	switch {
	case !r.RevokedAt.IsZero():
		return "revoked"
	case r.ClientDisabled:
		return "client-disabled"
	case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt):
		return "expired"
	case r.ReplacedBy != "" && !now.Before(r.GraceUntil):
		return "rotated"
	case r.ReplacedBy != "":
		return "grace"
	}
	return "active"
}

func keyJSON(r apikey.Record, now time.Time) keyOut {
	return keyOut{ID: r.ID, Client: r.ClientID, Hint: r.Hint, Scopes: r.Scopes, Status: keyStatus(r, now),
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: optTime(r.ExpiresAt), GraceUntil: optTime(r.GraceUntil),
		ReplacedBy: r.ReplacedBy, LastUsedAt: optTime(r.LastUsedAt)}
}

func newAPIKeyCreateCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	var client, scopes, expires, env string
	var asJSON bool
	c := &cobra.Command{
		Use:   "create --client ID [--scopes S,...] [--expires 90d|DATE] [--env live|test] [--json]",
		Short: "Make an API key (printed once, to stdout)",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if client == "" {
				return usagef("--client is required")
			}
			var exp time.Time
			if expires != "" {
				var err error
				if exp, err = parseExpiry(expires, time.Now().UTC()); err != nil {
					return usagef("%v", err)
				}
			}
			st, keys, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			k, rec, err := sf.manager(st, keys, env).Create(c.Context(), client, splitScopes(scopes), exp)
			if err != nil {
				return authError(err, noClient(client), "")
			}
			return printNewKey(stdio, asJSON, k, rec, "")
		},
	}
	sf.register(c)
	f := c.Flags()
	f.StringVar(&client, "client", "", "the `ID` of the client the key is for")
	f.StringVar(&scopes, "scopes", "", "the key's `SCOPES`, a subset of the client's (default: all of them)")
	f.StringVar(&expires, "expires", "", "expiry: a `DATE` (inclusive) or a duration (90d); default none")
	f.StringVar(&env, "env", "live", "key `ENV`: live (rk_live_) or test (rk_test_)")
	f.BoolVar(&asJSON, "json", false, "print JSON, the key included")
	return c
}

func printNewKey(stdio Stdio, asJSON bool, k apikey.Key, rec *apikey.Record, replaces string) error {
	if asJSON {
		out := keyJSON(*rec, time.Now())
		out.Key, out.Replaces = k.String(), replaces
		return writeJSON(stdio.Out, out)
	}
	fmt.Fprintln(stdio.Out, k.String())
	what := fmt.Sprintf("key %s for client %s (scopes %s)", rec.ID, rec.ClientID, strings.Join(rec.Scopes, " "))
	if replaces != "" {
		what += ", replacing " + replaces
	}
	fmt.Fprintf(stdio.Err, "rampart: %s; it is shown once: store it now\n", what)
	return nil
}

func newAPIKeyListCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	var client string
	var due, asJSON bool
	maxAge := 90 * 24 * time.Hour
	c := &cobra.Command{
		Use:   "list [--client ID] [--due [--max-age D]] [--json]",
		Short: "List API keys (never the keys themselves), or those due for rotation",
		Long: `List API keys, never the keys themselves. GRACE UNTIL is when a rotated key
stops working; LAST USED is when it last authenticated a request or a token
request, written by each instance once a minute (so up to a minute late).
Times are UTC. --due lists the keys the rotation policy says to rotate:
older than --max-age, or expiring within a tenth of it.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			st, keys, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			var recs []apikey.Record
			if due {
				m := sf.manager(st, keys, "")
				m.MaxAge = maxAge
				recs, err = m.Due(c.Context())
				recs = slices.DeleteFunc(recs, func(r apikey.Record) bool { return client != "" && r.ClientID != client })
			} else {
				recs, err = st.APIKeys().Keys(c.Context(), client)
			}
			if err != nil {
				return authError(err, noClient(client), "")
			}
			now := time.Now()
			out := make([]keyOut, len(recs))
			for i, r := range recs {
				out[i] = keyJSON(r, now)
			}
			if asJSON {
				return writeJSON(stdio.Out, out)
			}
			if len(out) == 0 {
				what := "no API keys"
				if due {
					what = fmt.Sprintf("no API keys are due for rotation (older than %s, or expiring within %s)", shortDuration(maxAge), shortDuration(maxAge/10))
				}
				if client != "" {
					what += " of client " + client
				}
				fmt.Fprintln(stdio.Out, what)
				return nil
			}
			tw := tabwriter.NewWriter(stdio.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tCLIENT\tHINT\tSTATUS\tSCOPES\tCREATED\tEXPIRES\tGRACE UNTIL\tLAST USED")
			for _, k := range out {
				grace := "-"
				if k.Status == "grace" {
					grace = minuteOr(k.GraceUntil)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Client, k.Hint, k.Status,
					strings.Join(k.Scopes, " "), k.CreatedAt.Format(time.DateOnly), dateOr(k.ExpiresAt), grace, minuteOr(k.LastUsedAt))
			}
			return tw.Flush()
		},
	}
	sf.register(c)
	f := c.Flags()
	f.StringVar(&client, "client", "", "only the keys of client `ID`")
	f.BoolVar(&due, "due", false, "only keys due for rotation (older than --max-age, or expiring soon)")
	f.Var((*durationFlag)(&maxAge), "max-age", "rotation policy: the maximum age of a key (`D`, such as 90d)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func dateOr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.DateOnly)
}

// minuteOr writes t to the minute, in UTC: 2026-12-02T09:41Z.
func minuteOr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04Z")
}

// rotateOptions are rampart apikey rotate's flags.
type rotateOptions struct {
	sf            storeFlags
	grace, maxAge time.Duration
	due, asJSON   bool
}

func newAPIKeyRotateCmd(stdio Stdio) *cobra.Command {
	o := rotateOptions{grace: 72 * time.Hour, maxAge: 90 * 24 * time.Hour}
	c := &cobra.Command{
		Use:   "rotate (ID | --due [--max-age D]) [--grace 72h] [--json]",
		Short: "Replace a key (or every key due) with a new one; the old works during the grace period",
		Args: args(func(c *cobra.Command, a []string) error {
			if o.due == (len(a) == 1) || len(a) > 1 {
				return errors.New("give one key ID, or --due")
			}
			return nil
		}),
		RunE: func(c *cobra.Command, a []string) error {
			return o.run(c.Context(), stdio, a)
		},
	}
	o.sf.register(c)
	f := c.Flags()
	f.Var((*durationFlag)(&o.grace), "grace", "how long the old key keeps working (`D`, such as 72h or 3d; at most 30 days)")
	f.BoolVar(&o.due, "due", false, "rotate every key due under the rotation policy")
	f.Var((*durationFlag)(&o.maxAge), "max-age", "rotation policy: the maximum age of a key (`D`, such as 90d)")
	f.BoolVar(&o.asJSON, "json", false, "print JSON, the new keys included")
	return c
}

func (o *rotateOptions) run(ctx context.Context, stdio Stdio, ids []string) error {
	st, keys, err := o.sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	m := o.sf.manager(st, keys, "")
	m.MaxAge = o.maxAge
	if o.due {
		recs, err := m.Due(ctx)
		if err != nil {
			return fail(ExitFailure, err)
		}
		ids = nil
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
	}
	var outs []keyOut
	for _, id := range ids {
		old, err := st.APIKeys().Key(ctx, id)
		if err != nil {
			return authError(err, noKey(id), "")
		}
		k, rec, err := m.Rotate(ctx, id, o.grace)
		if err != nil {
			return authError(err, noKey(id), "")
		}
		if o.due || o.asJSON {
			out := keyJSON(*rec, time.Now())
			out.Key, out.Replaces = k.String(), old.ID
			outs = append(outs, out)
			continue
		}
		if err := printNewKey(stdio, false, k, rec, old.ID); err != nil {
			return err
		}
		fmt.Fprintf(stdio.Err, "rampart: %s works until %s\n", old.ID, time.Now().UTC().Add(o.grace).Format(time.RFC3339))
	}
	return o.printRotated(stdio, outs)
}

// printRotated prints the keys --due or --json rotated (a plain rotation
// printed its key as it went).
func (o *rotateOptions) printRotated(stdio Stdio, outs []keyOut) error {
	if o.asJSON {
		if outs == nil {
			outs = []keyOut{}
		}
		return writeJSON(stdio.Out, outs)
	}
	if !o.due {
		return nil
	}
	for _, out := range outs {
		fmt.Fprintf(stdio.Out, "%s %s %s %s\n", out.Replaces, out.ID, out.Client, out.Key)
	}
	if len(outs) == 0 {
		fmt.Fprintf(stdio.Err, "rampart: no API keys are due for rotation (older than %s, or expiring within %s)\n", shortDuration(o.maxAge), shortDuration(o.maxAge/10))
		return nil
	}
	fmt.Fprintf(stdio.Err, "rampart: %d key(s) rotated; the old ones work for %s; the new keys are shown once\n", len(outs), shortDuration(o.grace))
	return nil
}

func newAPIKeyRevokeCmd(stdio Stdio) *cobra.Command {
	var sf storeFlags
	var chain, tokens bool
	c := &cobra.Command{
		Use:   "revoke ID [--chain] [--tokens]",
		Short: "Revoke a key at once, on every instance",
		Long: `Revoke a key at once, on every instance (within 100 ms). A key in its
rotation grace period ends early; its replacement keeps working. With
--chain, every key it was rotated into is revoked too: for a stolen key,
whose thief may have rotated it through POST /v1/apikeys/rotate.

The access tokens already issued with the key keep working until they
expire (at most the client's token lifetime): tokens do not record which
key they were issued for. With --tokens, every access token of the key's
client issued until now is revoked too (as rampart token revoke --client
ID --all does): for a stolen key, whose thief may hold tokens. The client's
other keys keep working and get new tokens.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			st, keys, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			m := sf.manager(st, keys, "")
			rec, err := st.APIKeys().Key(c.Context(), a[0])
			if err != nil {
				return authError(err, noKey(a[0]), "")
			}
			if !chain {
				if err := m.Revoke(c.Context(), a[0]); err != nil {
					return authError(err, noKey(a[0]), fmt.Sprintf("key %s is already revoked", a[0]))
				}
				fmt.Fprintf(stdio.Out, "key %s revoked\n", a[0])
			} else {
				ids, err := m.RevokeChain(c.Context(), a[0])
				for _, id := range ids {
					fmt.Fprintf(stdio.Out, "key %s revoked\n", id)
				}
				if err != nil {
					return authError(err, noKey(a[0]), "")
				}
				if len(ids) == 0 {
					fmt.Fprintf(stdio.Out, "key %s and its replacements were already revoked\n", a[0])
				}
			}
			if !tokens {
				fmt.Fprintf(stdio.Err, "rampart: access tokens issued with it work until they expire; to end them: rampart apikey revoke %s --tokens, or rampart token revoke --client %s --all\n", a[0], rec.ClientID)
				return nil
			}
			now := time.Now().UTC()
			if err := st.RevokedTokens().RevokeClientTokens(c.Context(), rec.ClientID, now); err != nil {
				return fail(ExitFailure, err)
			}
			fmt.Fprintf(stdio.Out, "access tokens of client %s issued until %s revoked\n", rec.ClientID, now.Format(time.RFC3339))
			return nil
		},
	}
	sf.register(c)
	c.Flags().BoolVar(&chain, "chain", false, "also revoke every key this one was rotated into")
	c.Flags().BoolVar(&tokens, "tokens", false, "also revoke every access token of the key's client issued until now")
	return c
}

func newTokenCmd(stdio Stdio) *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Revoke access tokens and rotate the OAuth2 token signing keys",
		Long: `Revoke access tokens (one, or every token of a client) and rotate the
OAuth2 token signing keys. These commands work on the control plane's
database (--data, --db as for rampart serve).

` + adminExitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error { return c.Help() },
	}
	var sf storeFlags
	var alg string
	rot := &cobra.Command{
		Use:   "rotate-keys [--alg ES256|EdDSA]",
		Short: "Rotate the token signing keys: next signs, current retires, a new next is published",
		Long: `Rotate the token signing keys. The next key, published in the JWKS since the
last rotation, starts signing; the current key retires and stays published
for 24 h 5 min (the longest token lifetime plus clock skew); a new next key
is made and published. Run it on a schedule; instances pick the change up
within 10 s. Private keys are stored sealed under the master key.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			if alg != "ES256" && alg != "EdDSA" {
				return usagef("--alg %q: want ES256 or EdDSA", alg)
			}
			st, keys, err := sf.open(c.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now()
			existing, err := st.SigningKeys().SigningKeys(c.Context())
			if err != nil {
				return fail(ExitFailure, err)
			}
			if !slices.ContainsFunc(existing, func(k authserver.StoredKey) bool { return k.State == authserver.Current }) {
				// A new store: make the first current and next keys; there
				// is nothing to retire yet.
				err = authserver.EnsureKeys(c.Context(), st.SigningKeys(), keys.Key(secrets.SigningKeyKEK), authserver.Algorithm(alg), now)
			} else {
				err = authserver.RotateKeys(c.Context(), st.SigningKeys(), keys.Key(secrets.SigningKeyKEK), authserver.Algorithm(alg), now)
			}
			if err != nil {
				return fail(ExitFailure, err)
			}
			ks, err := st.SigningKeys().SigningKeys(c.Context())
			if err != nil {
				return fail(ExitFailure, err)
			}
			printSigningKeys(stdio.Out, ks)
			return nil
		},
	}
	sf.register(rot)
	rot.Flags().StringVar(&alg, "alg", "ES256", "algorithm of the new key: `ES256` or EdDSA")
	c.AddCommand(rot, newTokenRevokeCmd(stdio))
	return c
}

const tokenRevokeLong = `Revoke access tokens at once (RFC 7009), on every instance and at every
token.Validator that checks revocations (rampart gateway with auth.api_keys);
introspection then answers inactive.

  rampart token revoke JTI              the token with that jti (from the audit
                                        log of rampart serve, or introspection)
  rampart token revoke - < token.txt    the token itself, read from stdin (or
                                        given as the argument): it must be
                                        signed by one of this database's keys
  rampart token revoke --client ID --all
                                        every token of the client issued until
                                        now; new ones can be issued (rampart
                                        client disable stops those too)

A token's iat is in whole seconds: --all also revokes the tokens issued
within the second it runs. A jti that starts with '-' (from another
issuer's tokens) goes after --: rampart token revoke -- -abc.`

// revokeOptions are rampart token revoke's flags.
type revokeOptions struct {
	sf     storeFlags
	client string
	all    bool
}

func newTokenRevokeCmd(stdio Stdio) *cobra.Command {
	var o revokeOptions
	c := &cobra.Command{
		Use:   "revoke (JTI | TOKEN | - | --client ID --all)",
		Short: "Revoke access tokens at once: one, by its jti or itself, or every token of a client",
		Long:  tokenRevokeLong,
		Args:  args(o.checkArgs),
		RunE: func(c *cobra.Command, a []string) error {
			return o.run(c.Context(), stdio, a)
		},
	}
	o.sf.register(c)
	c.Flags().StringVar(&o.client, "client", "", "with --all: the client `ID` whose tokens to revoke")
	c.Flags().BoolVar(&o.all, "all", false, "with --client: every token of the client issued until now")
	return c
}

func (o *revokeOptions) checkArgs(_ *cobra.Command, a []string) error {
	switch {
	case o.client != "" && !o.all:
		return errors.New("--client needs --all: every token of the client issued until now")
	case o.all && o.client == "":
		return errors.New("--all needs --client ID")
	case o.all && len(a) > 0:
		return errors.New("give a jti or a token, or --client ID --all, not both")
	case !o.all && len(a) != 1:
		return errors.New("give one jti or token (- reads it from stdin), or --client ID --all")
	}
	return nil
}

func (o *revokeOptions) run(ctx context.Context, stdio Stdio, a []string) error {
	st, _, err := o.sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now().UTC()
	if o.all {
		if _, err := st.APIKeys().Client(ctx, o.client); err != nil {
			return authError(err, noClient(o.client), "")
		}
		if err := st.RevokedTokens().RevokeClientTokens(ctx, o.client, now); err != nil {
			return fail(ExitFailure, err)
		}
		fmt.Fprintf(stdio.Out, "access tokens of client %s issued until %s revoked\n", o.client, now.Format(time.RFC3339))
		return nil
	}
	arg := a[0]
	if arg == "-" {
		b, err := io.ReadAll(io.LimitReader(stdio.In, 16<<10))
		if err != nil {
			return fail(ExitUsage, fmt.Errorf("reading the token from stdin: %w", err))
		}
		arg = strings.TrimSpace(string(b))
	}
	if !strings.Contains(arg, ".") {
		if !isJTI(arg) {
			return usagef("%q is neither a jti (1 to 255 printable characters) nor a token", truncated(arg))
		}
		// The token's expiry is unknown: keep the revocation as long as
		// any token can live.
		if err := st.RevokedTokens().RevokeToken(ctx, arg, now.Add(authserver.MaxLifetime+authserver.ClockSkew)); err != nil {
			return fail(ExitFailure, err)
		}
		fmt.Fprintf(stdio.Out, "token %s revoked\n", arg)
		return nil
	}
	return revokeIssued(ctx, stdio, st, arg, now)
}

// revokeIssued revokes a token given whole: one this database's keys
// signed, until it expires.
func revokeIssued(ctx context.Context, stdio Stdio, st store.Store, raw string, now time.Time) error {
	ref, err := authserver.ReadIssued(ctx, st.SigningKeys(), raw)
	switch {
	case errors.Is(err, authserver.ErrNotIssued):
		return fail(ExitUsage, fmt.Errorf("%w: revoke it where it was issued", err))
	case err != nil:
		return fail(ExitFailure, err)
	}
	if !now.Before(ref.Expires) {
		fmt.Fprintf(stdio.Out, "token %s of client %s expired at %s: nothing to revoke\n", ref.JTI, ref.ClientID, ref.Expires.UTC().Format(time.RFC3339))
		return nil
	}
	if err := st.RevokedTokens().RevokeToken(ctx, ref.JTI, ref.Expires); err != nil {
		return fail(ExitFailure, err)
	}
	fmt.Fprintf(stdio.Out, "token %s of client %s revoked (it would have expired at %s)\n", ref.JTI, ref.ClientID, ref.Expires.UTC().Format(time.RFC3339))
	return nil
}

// isJTI reports whether s can be a jti: 1 to 255 printable ASCII
// characters, no space.
func isJTI(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// truncated shortens s for a message.
func truncated(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func printSigningKeys(w io.Writer, ks []authserver.StoredKey) {
	order := map[authserver.KeyState]int{authserver.Current: 0, authserver.Next: 1, authserver.Retired: 2}
	slices.SortFunc(ks, func(a, b authserver.StoredKey) int { return order[a.State] - order[b.State] })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tSINCE")
	for _, k := range ks {
		since := k.CreatedAt
		switch k.State {
		case authserver.Current:
			since = k.ActivatedAt
		case authserver.Retired:
			since = k.RetiredAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Alg, k.State, since.UTC().Format(time.RFC3339))
	}
	tw.Flush()
}
