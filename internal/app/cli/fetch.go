package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampartsec/rampart/internal/util/certfile"
	"github.com/rampartsec/rampart/pin"
)

// target is a HOST[:PORT] argument.
type target struct {
	host      string
	port      int
	portGiven bool // the argument named the port
}

func (t target) String() string { return net.JoinHostPort(t.host, strconv.Itoa(t.port)) }

// parseTarget parses HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address.
func parseTarget(s string, defaultPort int) (target, error) {
	if s == "" {
		return target{}, usagef("empty host")
	}
	if strings.Contains(s, "://") {
		return target{}, usagef("%q: want HOST[:PORT], not a URL", s)
	}
	host, portText := s, ""
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return target{}, usagef("%q: %v", s, err)
		}
		if p == "" {
			return target{}, usagef("%q: empty port", s)
		}
		host, portText = h, p
	}
	port := defaultPort
	if portText != "" {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 {
			return target{}, usagef("%q: invalid port", s)
		}
		port = n
	}
	// The pin library's normal form, so that the rule found here is the
	// one a pinned client applies (every trailing dot stripped).
	canonical, err := pin.CanonicalHost(host)
	if err != nil || !validHost(canonical) {
		return target{}, usagef("%q: not a host name or IP address", s)
	}
	return target{host: canonical, port: port, portGiven: portText != ""}, nil
}

func validHost(h string) bool {
	if h == "" {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return !strings.Contains(h, "%") // zones are not for TLS names
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return !strings.Contains(h, "..") && h[0] != '.'

}

func parseTargets(args []string) ([]target, error) {
	out := make([]target, len(args))
	for i, a := range args {
		t, err := parseTarget(a, 443)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// loadRoots reads --ca: a PEM file of trusted roots that replaces the
// system trust store (nil when no file is given).
func loadRoots(file string) (*x509.CertPool, error) { return loadPool("--ca", file) }

// loadPool reads a PEM file of CA certificates given with flag.
func loadPool(flag, file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	items, err := certfile.ReadFile(file, nil)
	if err != nil {
		return nil, fail(ExitUsage, fmt.Errorf("%s %s: %w", flag, file, err))
	}
	pool := x509.NewCertPool()
	for _, it := range items {
		if it.Cert == nil {
			return nil, fail(ExitUsage, fmt.Errorf("%s %s: holds a %s; want certificates only", flag, file, it.Type))
		}
		pool.AddCert(it.Cert)
	}
	return pool, nil
}

// connectFlags are the connection options fetch, check and get share.
type connectFlags struct {
	ca      string
	connect string
	timeout time.Duration
}

func (f *connectFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.ca, "ca", "", "trust only the CA certificates in this PEM `FILE` (instead of the system roots)")
	c.Flags().StringVar(&f.connect, "connect", "", "connect to `ADDR:PORT` instead of resolving the host (SNI and verification still use the host)")
	c.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "connection and handshake timeout, a `DURATION` such as 3s")
}

// label names a target in text output: HOST:PORT, or with --connect
// "HOST (via ADDR:PORT)", since the default port is then not dialled (a
// port the argument names is kept: it is the user's label).
func (f *connectFlags) label(t target) string {
	if f.connect == "" {
		return t.String()
	}
	name := t.host
	if t.portGiven {
		name = t.String()
	}
	return name + " (via " + f.connect + ")"
}

// describeConnError says which step of a connection to addr failed, in
// the terms of --timeout: "context deadline exceeded" alone does not tell
// a server that never accepted the TCP connection from one that stalls
// the TLS handshake.
func describeConnError(err error, addr string, timeout time.Duration) string {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial" && op.Timeout():
		return fmt.Sprintf("no TCP connection to %s within %s (--timeout)", addr, timeout)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("TCP connected to %s, but the TLS handshake did not finish within %s (--timeout)", addr, timeout)
	}
	return err.Error()
}

// verifyHints suggest the next step when certificate verification failed:
// a chain without its intermediate (served is the chain as sent, leaf
// first), or a private CA without --ca.
func verifyHints(err error, served []*x509.Certificate, haveCA bool) []string {
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		return nil
	}
	var hints []string
	if len(served) == 1 && !bytes.Equal(served[0].RawIssuer, served[0].RawSubject) {
		hints = append(hints, "the chain has 1 certificate, the leaf: include the intermediate (the full chain, often fullchain.pem); clients do not fetch it")
	}
	if !haveCA {
		hints = append(hints, "a private CA? pass its root certificate with --ca FILE (the system roots were used)")
	}
	return hints
}

// loadPolicy loads --policy and --ca for check and get.
func (f *connectFlags) loadPolicy(policyFile string) (*pin.Policy, *x509.CertPool, error) {
	if policyFile == "" {
		return nil, nil, usagef("--policy is required")
	}
	policy, err := pin.LoadPolicy(policyFile)
	if err != nil {
		return nil, nil, fail(ExitUsage, err)
	}
	roots, err := loadRoots(f.ca)
	if err != nil {
		return nil, nil, err
	}
	return policy, roots, nil
}

// dialAddr is where to connect for t: --connect, or t itself.
func (f *connectFlags) dialAddr(t target) (string, error) {
	if f.connect == "" {
		return t.String(), nil
	}
	if _, _, err := net.SplitHostPort(f.connect); err != nil {
		return "", usagef("--connect %q: want ADDR:PORT", f.connect)
	}
	return f.connect, nil
}

// fetchJSON is one element of `pin fetch --json`.
type fetchJSON struct {
	Host           string              `json:"host"`
	Port           int                 `json:"port"`
	Address        string              `json:"address"`
	Served         []certJSON          `json:"served"`
	VerifiedChains [][]certJSON        `json:"verified_chains"`
	Error          string              `json:"error,omitempty"`
	Hints          []string            `json:"hints,omitempty"`
	label          string              // the text output's name for it
	verifyErr      error               // the verification error, if any
	served         []*x509.Certificate // what the server sent, on a verification error
}

// fetchLong is the help of rampart pin fetch.
const fetchLong = `Connect to each HOST (port 443 by default), verify its certificate as a client
would (system roots, or --ca), and show the certificates it served and the
verified chains with their pins. A verified chain runs from the leaf to the
trust anchor, which the server may not have sent: a pin on that root still
matches.

Chains and positions count from 0; position 0 is the leaf.

--json prints an array with one object per host:
  host, port       as given
  address          the address dialled (--connect, or host:port)
  served           the certificates in the order the server sent them
  verified_chains  each chain leaf first, ending in the trust anchor
  error            why verification or the connection failed (the served
                   certificates are still shown)
  hints            what to try next after such a failure
Each certificate has subject, issuer, not_before, not_after (RFC 3339), key,
spki_sha256 (its SPKI pin, "sha256/..."), cert_sha256 (hex SHA-256 of the
certificate) and cert_pin (its fingerprint pin, "cert-sha256:...").

Exit status: 0 every host verified; 1 a host failed verification or could
not be reached; 2 usage error.`

func newFetchCmd(stdio Stdio) *cobra.Command {
	var (
		asJSON     bool
		serverName string
		cf         connectFlags
	)
	c := &cobra.Command{
		Use:   "fetch [--json] [--servername NAME] [--connect ADDR:PORT] [--ca FILE] [--timeout DURATION] HOST[:PORT]...",
		Short: "Show the certificates a server sends and the chains they verify to",
		Long:  fetchLong,
		Example: `  rampart pin fetch api.example.com
  rampart pin fetch --json --ca dev-root.pem --connect 127.0.0.1:8443 api.example.test`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(c *cobra.Command, hosts []string) error {
			roots, err := loadRoots(cf.ca)
			if err != nil {
				return err
			}
			targets, err := parseTargets(hosts)
			if err != nil {
				return err
			}
			var results []fetchJSON
			failed := false
			for _, t := range targets {
				addr, err := cf.dialAddr(t)
				if err != nil {
					return err
				}
				name := t.host
				if serverName != "" {
					name = serverName
				}
				r := fetch(c.Context(), addr, name, roots, cf.timeout)
				r.Host, r.Port, r.Address, r.label = t.host, t.port, addr, cf.label(t)
				if r.Error != "" {
					r.Hints = append(r.Hints, fetchHints(r, cf.ca)...)
				}
				failed = failed || r.Error != ""
				results = append(results, r)
			}
			if asJSON {
				if err := writeJSON(stdio.Out, results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					printFetch(stdio, r)
				}
			}
			if failed {
				return fail(ExitFailure, nil)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (schema above)")
	c.Flags().StringVar(&serverName, "servername", "", "send and verify this server `NAME` instead of HOST")
	cf.register(c)
	return c
}

// fetch connects and verifies like a TLS client with the given roots
// (nil: system roots). Verification is never skipped: on failure the served
// certificates come from the verification error.
func fetch(ctx context.Context, addr, name string, roots *x509.CertPool, timeout time.Duration) fetchJSON {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := fetchJSON{Served: []certJSON{}, VerifiedChains: [][]certJSON{}}
	raw, err := new(net.Dialer).DialContext(ctx, "tcp", addr)
	if err != nil {
		r.Error = describeConnError(err, addr, timeout)
		return r
	}
	conn := tls.Client(raw, &tls.Config{ServerName: name, RootCAs: roots})
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) {
			r.Served = describeChain(ve.UnverifiedCertificates)
			r.verifyErr, r.served = err, ve.UnverifiedCertificates
		}
		if ctx.Err() != nil {
			r.Error = fmt.Sprintf("TCP connected to %s, but the TLS handshake did not finish within %s (--timeout)", addr, timeout)
		} else {
			r.Error = err.Error()
		}
		return r
	}
	cs := conn.ConnectionState()
	r.Served = describeChain(cs.PeerCertificates)
	for _, chain := range cs.VerifiedChains {
		r.VerifiedChains = append(r.VerifiedChains, describeChain(chain))
	}
	return r
}

func fetchHints(r fetchJSON, caFlag string) []string {
	return verifyHints(r.verifyErr, r.served, caFlag != "")
}

func printFetch(stdio Stdio, r fetchJSON) {
	fmt.Fprintf(stdio.Out, "%s\n", r.label)
	fmt.Fprintf(stdio.Out, "  served:\n")
	for i, c := range r.Served {
		printCert(stdio, i, c)
	}
	for i, chain := range r.VerifiedChains {
		fmt.Fprintf(stdio.Out, "  verified chain %d:\n", i)
		for j, c := range chain {
			printCert(stdio, j, c)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(stdio.Out, "  error: %s\n", r.Error)
	}
	for _, h := range r.Hints {
		fmt.Fprintf(stdio.Out, "  hint: %s\n", h)
	}
}

func printCert(stdio Stdio, i int, c certJSON) {
	fmt.Fprintf(stdio.Out, "    %d %s\n      %s, expires %s, issuer %s\n      %s\n",
		i, c.Subject, c.Key, c.NotAfter, c.Issuer, c.SPKISHA256)
}
