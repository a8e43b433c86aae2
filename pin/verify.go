package pin

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/rampartsec/rampart/internal/util/dedup"
)

// Reason says why a pin validation did not pass.
type Reason string

const (
	// ReasonMismatch: no pin matched any certificate of any verified chain.
	ReasonMismatch Reason = "pin-mismatch"
	// ReasonExpired: the rule's pin set has expired; the connection got CA
	// validation only.
	ReasonExpired Reason = "pin-set-expired"
	// ReasonNoVerifiedChain: the connection has no verified chain to check,
	// which happens only when certificate verification was skipped.
	ReasonNoVerifiedChain Reason = "no-verified-chain"
	// ReasonSCTs: a pin matched, but the rule requires SCTs
	// ([Domain.RequireSCTs]) and the certificate lacks valid ones.
	ReasonSCTs Reason = "sct-missing"
)

// Failure describes one pin validation failure. It is handed to the
// [Reporter] and must not be modified.
type Failure struct {
	Time   time.Time
	Host   string  // the server name the client connected to
	Port   int     // 0 when the hook did not know it (see [Verifier.TLSConfig])
	Domain *Domain // the rule that applied
	Reason Reason
	Served []*x509.Certificate   // the certificates as the server sent them
	Chains [][]*x509.Certificate // the verified chains, leaf first
}

// Key identifies the failure: two failures have the same key when their
// reports would say the same thing but for the time. It is the hex
// SHA-256 of the reason, the host and port, the rule (its name, mode,
// subdomain flag, expiry and pins), the certificates the server sent and
// the first verified chain (the one a report carries). It leaves out the
// time, the other verified chains, and where reports go.
//
// This is Rampart's one notion of "the same failure":
//
//   - the [Verifier] logs a failure once a day per key;
//   - [github.com/rampartsec/rampart/pin/report.Reporter] sends a report
//     once a day per key and report URI: the same failure reported to two
//     collectors is two reports;
//   - the control plane aggregates reports by
//     [github.com/rampartsec/rampart/pin/report.Report.Key], which is
//     equal for the reports of failures with equal keys. It deliberately
//     ignores more: the device that sent a TrustKit report, and the case
//     and final dot of host names, which it normalizes.
//
// Keys are stable within one version of this module, not across versions.
func (f *Failure) Key() string {
	h := sha256.New()
	var n [8]byte
	raw := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field := func(s string) { raw([]byte(s)) }
	count := func(i int) {
		binary.BigEndian.PutUint64(n[:], uint64(i))
		h.Write(n[:])
	}
	field(string(f.Reason))
	field(f.Host)
	field(strconv.Itoa(f.Port))
	d := f.Domain
	if d == nil {
		d = &Domain{}
	}
	field(d.Name)
	field(string(d.Mode))
	field(strconv.FormatBool(d.IncludeSubdomains))
	var exp string
	if t := d.ExpiresAt(); !t.IsZero() {
		exp = t.Format(time.RFC3339)
	}
	field(exp)
	// The pins as a report lists them: the SPKI pins, then the
	// certificate pins, each in the rule's order.
	for _, kind := range []Kind{SPKI, Cert} {
		var pins []Pin
		for _, p := range d.Pins {
			if p.Kind() == kind {
				pins = append(pins, p)
			}
		}
		count(len(pins))
		for _, p := range pins {
			digest := p.Digest()
			raw(digest[:])
		}
	}
	count(len(f.Served))
	for _, c := range f.Served {
		raw(c.Raw)
	}
	var chain []*x509.Certificate
	if len(f.Chains) > 0 {
		chain = f.Chains[0]
	}
	count(len(chain))
	for _, c := range chain {
		raw(c.Raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// A Reporter receives pin validation failures, in both modes.
// [github.com/rampartsec/rampart/pin/report.Reporter] implements it by sending
// RFC 7469 reports. Report is called during the TLS handshake: it must not
// block and must not keep f beyond the time it needs.
type Reporter interface {
	Report(f *Failure)
}

// Result is the outcome of checking a host's verified chains against a
// policy; see [Policy.Check].
type Result struct {
	// Domain is the rule that applies, nil when the host is not pinned.
	Domain *Domain
	// Expired reports that the rule's pin set has expired: the host gets CA
	// validation only.
	Expired bool
	// Matched reports whether a pin matched; Pin is that pin, found in
	// verified chain Chain at Position (0 is the leaf).
	Matched         bool
	Pin             Pin
	Chain, Position int
}

// Check matches verified chains against the rule for host, as the verifier
// does during a handshake, without reporting or logging anything. It
// returns the first match in chain order, leaf first.
func (p *Policy) Check(host string, chains [][]*x509.Certificate, now time.Time) Result {
	d := p.Match(host)
	if d == nil {
		return Result{}
	}
	r := Result{Domain: d, Expired: d.Expired(now)}
	r.Pin, r.Chain, r.Position, r.Matched = d.match(chains)
	return r
}

// match looks for a pin of d in chains. Certificate digests come from a
// cache, so each certificate is hashed once, not once per connection.
func (d *Domain) match(chains [][]*x509.Certificate) (Pin, int, int, bool) {
	for i, chain := range chains {
		for j, cert := range chain {
			var spki, fp *[sha256.Size]byte
			for _, p := range d.Pins {
				var sum *[sha256.Size]byte
				if p.kind == SPKI {
					if spki == nil {
						spki = spkiDigests.get(cert)
					}
					sum = spki
				} else {
					if fp == nil {
						fp = certDigests.get(cert)
					}
					sum = fp
				}
				if p.digest == *sum {
					return p, i, j, true
				}
			}
		}
	}
	return Pin{}, 0, 0, false
}

// digestCache maps certificates to a digest, keyed weakly by pointer so
// that entries die with their certificate. crypto/tls shares parsed
// certificates between connections (and the root pool holds its roots), so
// a steady client hits the cache on every handshake.
type digestCache struct {
	m   sync.Map // weak.Pointer[x509.Certificate] -> *[sha256.Size]byte
	sum func(*x509.Certificate) [sha256.Size]byte
}

var (
	spkiDigests = &digestCache{sum: func(c *x509.Certificate) [sha256.Size]byte {
		return sha256.Sum256(c.RawSubjectPublicKeyInfo)
	}}
	certDigests = &digestCache{sum: func(c *x509.Certificate) [sha256.Size]byte {
		return sha256.Sum256(c.Raw)
	}}
)

func (c *digestCache) get(cert *x509.Certificate) *[sha256.Size]byte {
	k := weak.Make(cert)
	if v, ok := c.m.Load(k); ok {
		return v.(*[sha256.Size]byte)
	}
	sum := c.sum(cert)
	v, loaded := c.m.LoadOrStore(k, &sum)
	if !loaded {
		runtime.AddCleanup(cert, func(k weak.Pointer[x509.Certificate]) { c.m.Delete(k) }, k)
	}
	return v.(*[sha256.Size]byte)
}

// policyGen numbers policies as verifiers install them, process-wide, so
// that session-cache keys never collide between verifiers or policies.
var policyGen atomic.Uint64

type policyState struct {
	policy *Policy
	gen    uint64
}

// A Verifier pins TLS connections to a [Policy]. It plugs into the standard
// library: [Verifier.TLSConfig] returns a clone of a *tls.Config with a
// VerifyConnection hook, and [Verifier.Transport], [Verifier.Client] and
// [Verifier.DialContext] build on it.
//
// The hook runs after crypto/tls has verified the certificate chain and host
// name against the configured roots, and only narrows that: a host is
// accepted when a pin of its rule matches a certificate of a verified chain
// (never merely a certificate the server sent), a root the server never sent
// included. Because it is a VerifyConnection hook it runs on resumed
// sessions too.
//
// Set the exported fields before first use; they must not change afterwards.
// A Verifier is safe for concurrent use.
type Verifier struct {
	// Reporter receives every pin validation failure, in both modes. If nil,
	// failures are only logged.
	Reporter Reporter
	// Logger receives a record per distinct failure ([Failure.Key]) per
	// 24 hours (a host mismatching on every connection is logged once a
	// day): an error for a refused connection, a warning for a
	// report-only failure or an expired pin set. If nil, slog.Default()
	// is used.
	Logger *slog.Logger
	// Now returns the current time, for pin-set expiry. If nil, time.Now.
	Now func() time.Time

	state   atomic.Pointer[policyState]
	notices dedup.Window

	setMu      sync.Mutex         // serializes SetPolicy
	mu         sync.Mutex         // guards the fields below
	transports []trackedTransport // made by Transport
	conns      []liveConn         // made by dialTLS
	pruneAt    int                // len(conns) at which to drop dead entries
}

// NewVerifier returns a Verifier for p. It panics if p is nil or was not
// built by [NewPolicy], [ParsePolicy] or [LoadPolicy]: a verifier must never
// run without a policy.
func NewVerifier(p *Policy) *Verifier {
	v := new(Verifier)
	v.SetPolicy(p)
	return v
}

// SetPolicy replaces the policy for new handshakes, and makes sure nothing
// checked under the old pins outlives them:
//
//   - live connections made by v ([Verifier.DialContext], and every HTTPS
//     connection of transports from [Verifier.Transport], direct or
//     through a proxy), idle or busy, HTTP/1.1 or HTTP/2, are checked
//     again under p and closed if p refuses them — in-flight requests on
//     them fail; the others keep working;
//   - a handshake that checked the server's certificate under the old
//     policy but finishes after SetPolicy is checked again under p before
//     its connection is handed out;
//   - TLS sessions cached under the old policy are no longer resumed.
//
// Connections made with a config from [Verifier.TLSConfig] belong to the
// caller; the hook checks them again only if they resume a session. So do
// connections a transport from [Verifier.Transport] makes itself after
// its Proxy, DialContext, DialTLSContext or TLSClientConfig was changed:
// SetPolicy closes only their idle connections.
func (v *Verifier) SetPolicy(p *Policy) {
	if p == nil || p.byName == nil {
		panic("pin: SetPolicy with a nil or unbuilt Policy")
	}
	// One update at a time, so that connections are re-checked against the
	// policy that ends up current.
	v.setMu.Lock()
	defer v.setMu.Unlock()
	v.state.Store(&policyState{policy: p, gen: policyGen.Add(1)})
	v.mu.Lock()
	var idle []*http.Transport
	v.transports = slices.DeleteFunc(v.transports, func(tt trackedTransport) bool {
		t := tt.t.Value()
		if t != nil && tt.untracked.Load() {
			idle = append(idle, t)
		}
		return t == nil
	})
	var conns []liveConn
	v.conns = slices.DeleteFunc(v.conns, func(c liveConn) bool {
		if c.conn.Value() == nil {
			return true
		}
		conns = append(conns, c)
		return false
	})
	v.mu.Unlock()

	now := v.now()
	for _, c := range conns {
		conn := c.conn.Value()
		if conn == nil {
			continue
		}
		cs := conn.ConnectionState()
		if cs.HandshakeComplete && p.refuses(c.host, &cs, now) {
			closeSocket(conn)
		}
	}
	for _, t := range idle {
		t.CloseIdleConnections()
	}
}

// trackedTransport is a transport made by the verifier, held weakly.
type trackedTransport struct {
	t         weak.Pointer[http.Transport]
	untracked *atomic.Bool // the transport made a connection itself (see Transport)
}

// liveConn is a connection made by the verifier, held weakly: the
// connection's owner decides its lifetime.
type liveConn struct {
	conn weak.Pointer[tls.Conn]
	host string
}

// track remembers conn for SetPolicy, pruning dead entries as the list
// grows so that it stays proportional to the live connections.
func (v *Verifier) track(conn *tls.Conn, host string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.conns) >= v.pruneAt {
		v.conns = slices.DeleteFunc(v.conns, func(c liveConn) bool { return c.conn.Value() == nil })
		v.pruneAt = 2*len(v.conns) + 64
	}
	v.conns = append(v.conns, liveConn{weak.Make(conn), host})
}

// refuses reports whether an enforcing client with policy p refuses a
// connection to host with state cs (without reporting anything). An unknown
// host ("") is judged by the IP rules its leaf covers, as in the hook.
func (p *Policy) refuses(host string, cs *tls.ConnectionState, now time.Time) bool {
	var rules []*Domain
	if host != "" {
		rules = append(rules, p.Match(host))
	} else {
		rules = p.ipRulesFor(cs)
	}
	for _, d := range rules {
		if d == nil || d.Mode != Enforce || d.Expired(now) {
			continue
		}
		if _, _, _, ok := d.match(cs.VerifiedChains); !ok {
			return true
		}
		if d.RequireSCTs && p.checkSCTs(host, d, cs, now) != nil {
			return true
		}
	}
	return false
}

// Policy returns the current policy.
func (v *Verifier) Policy() *Policy { return v.state.Load().policy }

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) logger() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}

// ErrNoVerifiedChain is returned for an enforced host when the connection
// has no verified chain: its certificate verification was skipped.
var ErrNoVerifiedChain = errors.New("pin: no verified certificate chain to check pins against (was certificate verification skipped?)")

// verify is the pin check under the current policy. host is the server
// name the client asked for ("" when unknown), port 0 when unknown.
func (v *Verifier) verify(cs *tls.ConnectionState, host string, port int) error {
	st := v.state.Load()
	if st == nil {
		return errors.New("pin: Verifier has no policy (use NewVerifier)")
	}
	return v.verifyWith(st.policy, cs, host, port)
}

func (v *Verifier) verifyWith(p *Policy, cs *tls.ConnectionState, host string, port int) error {
	if host != "" {
		return v.verifyRule(p, p.Match(host), cs, host, port)
	}
	// The hook cannot know the server name: an IP address, which is not
	// sent as SNI, dialled through a config without ServerName. Rather than
	// leave a pinned address unpinned, apply every IP rule whose address
	// the leaf is valid for.
	for _, d := range p.ipRulesFor(cs) {
		if err := v.verifyRule(p, d, cs, d.Name, port); err != nil {
			return err
		}
	}
	return nil
}

// ipRulesFor returns the IP rules whose address the connection's leaf
// certificate is valid for: the verified leaf, or the served one when
// verification was skipped (so that the rule then refuses the connection).
func (p *Policy) ipRulesFor(cs *tls.ConnectionState) []*Domain {
	var leaf *x509.Certificate
	switch {
	case len(cs.VerifiedChains) > 0:
		leaf = cs.VerifiedChains[0][0]
	case len(cs.PeerCertificates) > 0:
		leaf = cs.PeerCertificates[0]
	default:
		return nil
	}
	var out []*Domain
	for _, d := range p.ipRules {
		if leaf.VerifyHostname(d.Name) == nil {
			out = append(out, d)
		}
	}
	return out
}

// verifyRule applies rule d of p (nil: the host is not pinned) to a
// connection.
func (v *Verifier) verifyRule(p *Policy, d *Domain, cs *tls.ConnectionState, host string, port int) error {
	if d == nil {
		return nil
	}
	now := v.now()
	if d.Expired(now) {
		v.notify(&Failure{Time: now, Host: host, Port: port, Domain: d, Reason: ReasonExpired,
			Served: cs.PeerCertificates, Chains: cs.VerifiedChains})
		return nil
	}
	if len(cs.VerifiedChains) == 0 {
		v.notify(&Failure{Time: now, Host: host, Port: port, Domain: d, Reason: ReasonNoVerifiedChain,
			Served: cs.PeerCertificates})
		if d.Mode == ReportOnly {
			return nil
		}
		return ErrNoVerifiedChain
	}
	if _, _, _, ok := d.match(cs.VerifiedChains); ok {
		if !d.RequireSCTs {
			return nil
		}
		serr := p.checkSCTs(host, d, cs, now)
		if serr == nil {
			return nil
		}
		v.notify(&Failure{Time: now, Host: host, Port: port, Domain: d, Reason: ReasonSCTs,
			Served: cs.PeerCertificates, Chains: cs.VerifiedChains})
		if d.Mode == ReportOnly {
			return nil
		}
		return serr
	}
	v.notify(&Failure{Time: now, Host: host, Port: port, Domain: d, Reason: ReasonMismatch,
		Served: cs.PeerCertificates, Chains: cs.VerifiedChains})
	if d.Mode == ReportOnly {
		return nil
	}
	return newMismatchError(host, d, cs.VerifiedChains)
}

// notify hands f to the reporter and logs it once per day per
// [Failure.Key].
func (v *Verifier) notify(f *Failure) {
	if v.Reporter != nil {
		v.Reporter.Report(f)
	}
	if !v.notices.First(f.Key(), f.Time) {
		return
	}
	var leaf string
	if len(f.Served) > 0 {
		leaf = Pin{kind: SPKI, digest: *spkiDigests.get(f.Served[0])}.String()
	}
	attrs := []any{"host", f.Host, "rule", f.Domain.Name, "mode", string(f.Domain.Mode), "reason", string(f.Reason)}
	if leaf != "" {
		attrs = append(attrs, "served_leaf_pin", leaf)
	}
	switch {
	case f.Reason == ReasonExpired:
		v.logger().Warn("pin: pin set expired; host gets CA validation only",
			append(attrs, "expired_at", f.Domain.ExpiresAt().Format(time.RFC3339))...)
	case f.Domain.Mode == ReportOnly:
		v.logger().Warn("pin: pin validation failed; connection allowed (report-only)", attrs...)
	default:
		// A refusal is the error, not a warning: a key changed without a
		// policy update, or an interception.
		v.logger().Error("pin: pin validation failed; connection refused", attrs...)
	}
}

// ChainCert describes a certificate of a verified chain in a
// [MismatchError].
type ChainCert struct {
	Subject string
	SPKI    Pin // the certificate's public-key pin
	Cert    Pin // the certificate's fingerprint
}

// MismatchError is returned by the handshake of an enforced host whose
// verified chains match none of its pins. Like OkHttp's, it lists what an
// on-call engineer needs: every verified chain's pins with subjects, and the
// expected pins.
type MismatchError struct {
	Host   string        // the server name connected to
	Rule   string        // the domain of the rule that applied
	Chains [][]ChainCert // the verified chains, leaf first
	Pins   []Pin         // the rule's pins
}

func newMismatchError(host string, d *Domain, chains [][]*x509.Certificate) *MismatchError {
	e := &MismatchError{Host: host, Rule: d.Name, Pins: slices.Clone(d.Pins), Chains: make([][]ChainCert, len(chains))}
	for i, chain := range chains {
		e.Chains[i] = make([]ChainCert, len(chain))
		for j, c := range chain {
			e.Chains[i][j] = ChainCert{
				Subject: c.Subject.String(),
				SPKI:    Pin{kind: SPKI, digest: *spkiDigests.get(c)},
				Cert:    Pin{kind: Cert, digest: *certDigests.get(c)},
			}
		}
	}
	return e
}

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pin: certificate pinning failure for %s", e.Host)
	if e.Rule != e.Host {
		fmt.Fprintf(&b, " (rule %s)", e.Rule)
	}
	b.WriteString(": no pin matches the verified chain")
	withCert := false
	for _, p := range e.Pins {
		withCert = withCert || p.kind == Cert
	}
	for i, chain := range e.Chains {
		if len(e.Chains) > 1 {
			fmt.Fprintf(&b, "\n  verified chain %d:", i) // 0-based, as Result.Chain
		} else {
			b.WriteString("\n  verified chain:")
		}
		for _, c := range chain {
			fmt.Fprintf(&b, "\n    %s: %s", c.SPKI, c.Subject)
			if withCert {
				fmt.Fprintf(&b, "\n      %s", c.Cert)
			}
		}
	}
	b.WriteString("\n  pinned:")
	for _, p := range e.Pins {
		fmt.Fprintf(&b, "\n    %s", p)
	}
	return b.String()
}
