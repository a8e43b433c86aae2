package secrets

// Purpose names a key derived from the master key. Every purpose is
// listed here, with the processes that need its key; a process derives
// the keys of its purposes only ([Master.Key]), and hands each consumer
// the one key it uses.
//
// Secrets not derived from the master key, and so not listed here: the
// admin token ($RAMPART_ADMIN_TOKEN or DATA/admin-token) and the dashboard
// session key internal/controlplane/server derives from it (in memory only, so that
// changing the token ends every session), the CA's root key (offline),
// the bundle signing keys (offline; the control plane has the public
// halves) and the services' own keys. docs/secrets.md says who holds
// each.
//
// A purpose's HKDF info string is part of every installation's data:
// changing it makes what the key protects unreadable (API-key hashes no
// longer match, sealed keys no longer open). A new kind of secret gets a
// new purpose, with a new info string ending in a version.
type Purpose int

const (
	// APIKeyPepper keys the HMAC under which API keys are stored
	// (apikey.Hash). Needed by rampart serve (the API-key verifier and
	// manager), rampart gateway with auth.api_keys (the verifier, and
	// nothing else), and rampart client and apikey (the manager).
	APIKeyPepper Purpose = iota + 1
	// SigningKeyKEK seals the OAuth2 token signing keys in the database
	// (authserver.Server.KeyEncryptionKey). Needed by rampart serve (the
	// authorization server) and rampart token rotate-keys; never by the
	// gateway.
	SigningKeyKEK
	// CAKeyKEK seals the internal CA's issuing key in DATA/ca/issuing.key.
	// Needed by rampart serve (certificate renewal) and rampart ca init,
	// issue and rotate; never by the gateway.
	CAKeyKEK
	// CheckKey keys the check value a database keeps of the master key it
	// was set up with ([Verify]). Needed by every process that opens the
	// database with the master key; the check value tells nothing of the
	// other keys.
	CheckKey
)

// purposes are the derivations: HKDF-SHA256 with info, from the master
// key, or from the key of another purpose.
var purposes = map[Purpose]struct {
	name, info string
	// from is the purpose whose key this one is derived from; 0 is the
	// master key itself.
	from Purpose
}{
	APIKeyPepper:  {"API-key pepper", "rampart api key pepper v1", 0},
	SigningKeyKEK: {"token signing key KEK", "rampart token signing key encryption v1", 0},
	// The CA's key was first sealed with a key derived from the signing
	// key KEK rather than from the master key; it stays so, since issuing
	// keys on disk are sealed with it. Nothing that holds only the
	// signing key KEK is given it, though: both are the control plane's.
	CAKeyKEK: {"CA key KEK", "rampart ca issuing key v1", SigningKeyKEK},
	CheckKey: {"master key check key", "rampart master key check v1", 0},
}

// String is the purpose's name, for messages; it is not the info string.
func (p Purpose) String() string {
	if d, ok := purposes[p]; ok {
		return d.name
	}
	return "unknown purpose"
}
