package apikey

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by a Store for a key or client it does not
// have.
var ErrNotFound = errors.New("apikey: not found")

// ErrConflict is returned by a Store when a change contradicts the state:
// a client ID taken, a key already replaced or revoked.
var ErrConflict = errors.New("apikey: conflict")

// Client is who API keys and tokens are issued to.
type Client struct {
	// ID is the client identifier (OAuth2 client_id): lowercase letters,
	// digits, '-', '_' and '.', 1 to 64 characters.
	ID   string
	Name string
	// Scopes are what the client may be granted; a key carries a subset.
	Scopes   []string
	Disabled bool
	// TokenLifetime is the lifetime of the access tokens the client gets;
	// zero means the server's default (15 minutes). At most 24 hours.
	TokenLifetime time.Duration
	// CertSubject, CertURI and CertDNS name the client's certificate for
	// mutual-TLS client authentication (RFC 8705 §2.1.2: subject DN, URI
	// SAN such as a SPIFFE ID, DNS SAN); at most one is set, or none.
	CertSubject string
	CertURI     string
	CertDNS     string
	CreatedAt   time.Time
}

// Record is a stored API key: everything but the key itself.
type Record struct {
	ID       string
	ClientID string
	// Hash is the key's HMAC ([Hash]), the lookup index.
	Hash []byte
	// Hint is what may be shown: "rk_live_7Gq0…".
	Hint   string
	Scopes []string
	// CreatedAt and ExpiresAt bound the key's life; a zero ExpiresAt
	// never expires (rotation policy still marks the key due).
	CreatedAt time.Time
	ExpiresAt time.Time
	// RevokedAt is when the key was revoked; zero while it is not.
	RevokedAt time.Time
	// ReplacedBy is the ID of the key that rotated this one out; it works
	// until GraceUntil.
	ReplacedBy string
	GraceUntil time.Time
	LastUsedAt time.Time
	// ClientDisabled is the state of the key's client, read with the key.
	ClientDisabled bool
}

// Lookup is what a [Verifier] asks of the key store: the four reads and
// the one write of checking keys. All methods are safe for concurrent
// use.
type Lookup interface {
	// KeyByHash returns the key whose Hash is hash, with its client's
	// state, or ErrNotFound.
	KeyByHash(ctx context.Context, hash []byte) (*Record, error)
	// Key returns the key with that ID, or ErrNotFound.
	Key(ctx context.Context, id string) (*Record, error)
	// Generation returns a number that changes whenever a key is revoked
	// or rotated or a client disabled, by any instance: verifiers drop
	// what they cached when it moves.
	Generation(ctx context.Context) (int64, error)
	// TouchKeys records when keys were last used, by key ID.
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// Store keeps clients and API keys: the Lookup a Verifier uses and what a
// [Manager] changes. Implementations are in the control plane's storage
// (SQLite, PostgreSQL); all methods are safe for concurrent use.
type Store interface {
	Lookup

	CreateClient(ctx context.Context, c *Client) error // ErrConflict if the ID is taken
	Client(ctx context.Context, id string) (*Client, error)
	Clients(ctx context.Context) ([]Client, error)
	SetClientDisabled(ctx context.Context, id string, disabled bool) error

	CreateKey(ctx context.Context, r *Record) error
	// Keys lists the keys of a client, or of every client when clientID
	// is empty, oldest first.
	Keys(ctx context.Context, clientID string) ([]Record, error)
	// RotateKey stores next and marks key oldID replaced by it, working
	// until graceUntil, in one transaction. ErrConflict if oldID is
	// revoked or already replaced.
	RotateKey(ctx context.Context, oldID string, graceUntil time.Time, next *Record) error
	// RevokeKey marks a key revoked at t. ErrConflict if it already is.
	RevokeKey(ctx context.Context, id string, at time.Time) error
}
