// Package demo runs all of Rampart on loopback with no external service: a
// control plane (OAuth2 token server, API keys, failure reports, the
// internal CA's renewal endpoint), the edge gateway with a publicly
// trusted, pinned certificate, and the example payment service behind
// it over mutual TLS. An attacker holds a valid certificate for the API's
// name from a compromised CA that clients trust.
//
// Run checks that every control holds (pinning, renewal on the backup
// key, API-key rotation, scopes, rate limits, mutual TLS), prints a
// pass/fail table and commands to try by hand, and serves until its
// context ends.
//
// The public PKI is throwaway, made by internal/testing/testpki; the internal CA
// is package mtls's. Neither is fit for production.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/rampartsec/rampart/pin"
)

// Host is the demo API's public name; connections go to loopback whatever
// it resolves to.
const Host = "api.payments.test"

// TrustDomain is the internal services' SPIFFE trust domain.
const TrustDomain = "payments.demo"

// Options configure Run.
type Options struct {
	// Dir receives the demo's files (trust stores, pin policy, backup key,
	// the control plane's database, the gateway's configuration). If
	// empty, a temporary directory is used and removed at the end.
	Dir string
	// Check runs the checklist, prints it and returns, instead of serving
	// until ctx is done.
	Check bool
	// Out receives the demo's output.
	Out io.Writer
}

// ErrCheckFailed is returned when a row of the checklist fails.
var ErrCheckFailed = errors.New("demo: a check failed")

// Run starts the demo system, runs the checklist, and then either returns
// (Check) or serves until ctx is done.
func Run(ctx context.Context, o Options) (err error) {
	out := o.Out
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rampart-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logs := &switchWriter{}
	s, err := start(ctx, dir, logs)
	if err != nil {
		return err
	}
	defer s.close()

	// A --check run without --dir removes its files at exit: its URLs,
	// keys and paths would be of no use, so only the checklist is shown.
	if o.Check && o.Dir == "" {
		fmt.Fprintf(out, "Rampart demo --check: every control, end to end on loopback (files in a\ntemporary directory removed at exit; --dir DIR keeps them)\n\n")
		if !s.checklist(ctx, out) {
			return ErrCheckFailed
		}
		return nil
	}
	fmt.Fprintf(out, "Rampart demo: a payment API behind the Rampart gateway, on loopback\n\n")
	fmt.Fprintf(out, "  gateway          https://%s:%s/ at %s (pinned public certificate)\n", Host, port(s.gateway.addr), s.gateway.addr)
	fmt.Fprintf(out, "  gateway metrics  http://%s/metrics\n", s.admin.addr)
	fmt.Fprintf(out, "  payments         https://%s/ (mutual TLS, only from %s)\n", s.payments.addr, s.gatewayID)
	fmt.Fprintf(out, "  control plane    %s/ (dashboard; admin token in %s)\n", s.cpURL, s.file("admin-token"))
	fmt.Fprintf(out, "  token endpoint   %s/oauth2/token\n", s.cpURL)
	fmt.Fprintf(out, "  attacker         https://%s/ at %s (valid certificate from a compromised, trusted CA)\n", Host, s.attacker.addr)
	fmt.Fprintf(out, "  files            %s\n", dir)
	// Under `go run`, the go command ignores SIGINT and SIGTERM: a demo
	// sent to the background is stopped through its own process.
	fmt.Fprintf(out, "  process          pid %d (Ctrl-C, or kill -INT %d when it runs in the background)\n\n", os.Getpid(), os.Getpid())
	fmt.Fprintf(out, "Pins of %s (policy %s):\n  %s  current key\n  %s  backup key, kept offline (backup.key)\n\n",
		Host, s.file("policy.yaml"), s.leafPin, s.backupPin)
	fmt.Fprintf(out, "API key of client demo-app (payment.read, payment.write, payment.withdraw):\n  %s\n\n", s.appKey)

	ok := s.checklist(ctx, out)
	if o.Check {
		if !ok {
			return ErrCheckFailed
		}
		return nil
	}
	s.printTry(out)
	fmt.Fprintf(out, "\nThe gateway's access log follows. Ctrl-C stops the demo.\n")
	logs.set(out)
	<-ctx.Done()
	logs.set(nil)
	fmt.Fprintf(out, "\nstopped\n")
	return nil
}

// printTry prints commands to try by hand.
func (s *system) printTry(out io.Writer) {
	gwPort := port(s.gateway.addr)
	base := fmt.Sprintf("https://%s:%s", Host, gwPort)
	curl := fmt.Sprintf("curl --cacert %s --resolve %s:%s:127.0.0.1 --pinnedpubkey '%s'",
		s.file("roots.pem"), Host, gwPort, curlPins(s.leafPin, s.backupPin))
	fmt.Fprintf(out, "\nTry it (rampart is 'go run ./cmd/rampart' from a checkout):\n\n")
	fmt.Fprintf(out, "  # the API through the gateway, with the API key and the pins\n")
	fmt.Fprintf(out, "  %s -H 'X-API-Key: %s' %s/v1/payments\n", curl, s.appKey, base)
	fmt.Fprintf(out, "  %s -H 'X-API-Key: %s' -H 'Content-Type: application/json' \\\n      -d '{\"amount_minor\": 1250, \"currency\": \"EUR\", \"payee\": \"ACME Ltd\"}' %s/v1/payments\n", curl, s.appKey, base)
	fmt.Fprintf(out, "  %s -H 'X-API-Key: %s' -H 'Content-Type: application/json' \\\n      -d '{\"from\": \"EUR\", \"to\": \"USD\", \"from_minor\": 10000}' %s/v1/swaps\n", curl, s.appKey, base)
	fmt.Fprintf(out, "\n  # a short-lived token with one scope (RFC 6749 §4.4), then a call it may not make\n")
	fmt.Fprintf(out, "  TOKEN=$(curl -s --cacert %s -u 'demo-app:%s' -d grant_type=client_credentials -d scope=payment.read %s/oauth2/token | jq -r .access_token)\n",
		s.file("roots.pem"), s.appKey, s.cpURL)
	fmt.Fprintf(out, "  %s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{}' %s/v1/payments   # 403 insufficient_scope\n", curl, base)
	fmt.Fprintf(out, "\n  # pinning: the real gateway, then the attacker (refused, and reported)\n")
	get := fmt.Sprintf("rampart pin get --policy %s --ca %s", s.file("policy.yaml"), s.file("roots.pem"))
	fmt.Fprintf(out, "  %s --connect %s %s/healthz\n", get, s.gateway.addr, base)
	fmt.Fprintf(out, "  %s --connect %s %s/healthz\n", get, s.attacker.addr, base)
	fmt.Fprintf(out, "  rampart pin check --policy %s --ca %s --connect %s\n", s.file("policy.yaml"), s.file("roots.pem"), s.gateway.addr)
	fmt.Fprintf(out, "\n  # the payment service refuses anyone without the gateway's client certificate\n")
	fmt.Fprintf(out, "  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | openssl s_client -connect %s -quiet   # ... tlsv13 alert certificate required\n", s.payments.addr)
	fmt.Fprintf(out, "  curl -k https://%s/v1/payments   # curl shows only the broken connection: (55) or (56)\n", s.payments.addr)
}

func curlPins(pins ...pin.Pin) string {
	var parts []string
	for _, p := range pins {
		parts = append(parts, "sha256//"+p.Base64())
	}
	return strings.Join(parts, ";")
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// switchWriter discards until it is given somewhere to write: the logs of
// the demo's servers are shown only once the checklist is printed.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return len(p), nil
	}
	return s.w.Write(p)
}
