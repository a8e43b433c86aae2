package pin_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// P3: every spelling of a pinned name is pinned at every entry point. A
// rogue but trusted CA issues dNSNames with two or more trailing dots (and
// empty labels), which crypto/x509 matches exactly against the same
// spelling, while crypto/tls strips every trailing dot from the SNI (RFC
// 6066 §3: the HostName carries no trailing dot). A spelling that the
// policy cannot map to a rule must be refused, never left unpinned.
func TestHostNormalisation(t *testing.T) {
	w := newWorld(t)
	trailing := []string{host + "..", host + "...", "API.PAYMENTS.TEST..", host + ".", "API.Payments.Test"}
	empty := []string{"api..payments.test", ".api.payments.test", "api.payments..test.."}
	rogue := w.rogueInter.Issue(t, testpki.LeafOptions{DNSNames: append(append([]string{host}, trailing...), empty...)})
	s := serve(t, rogue.TLS(), serverOptions{http2: true})
	addr := s.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))

	refused := func(t *testing.T, name string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: the rogue certificate was accepted", name)
		}
		var me *pin.MismatchError
		if !errors.As(err, &me) && !errors.Is(err, pin.ErrInvalidServerName) {
			t.Fatalf("%s: err = %v, want a pin mismatch or ErrInvalidServerName", name, err)
		}
	}
	for _, name := range append(trailing, empty...) {
		t.Run(name, func(t *testing.T) {
			t.Run("DialContext", func(t *testing.T) {
				c, err := v.DialContext(context.Background(), "tcp", addr, &tls.Config{RootCAs: w.pool, ServerName: name})
				if err == nil {
					c.Close()
				}
				refused(t, name, err)
			})
			t.Run("Client", func(t *testing.T) {
				c, err := v.Client(baseTransport(addr, w.pool))
				if err != nil {
					t.Fatal(err)
				}
				defer c.CloseIdleConnections()
				resp, err := c.Get("https://" + net.JoinHostPort(name, port) + "/")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					t.Fatalf("the rogue server answered %q", body)
				}
				refused(t, name, err)
			})
			t.Run("TLSConfig", func(t *testing.T) {
				cfg, err := v.TLSConfig(&tls.Config{RootCAs: w.pool, ServerName: name})
				if err != nil {
					t.Fatal(err)
				}
				c, err := tls.Dial("tcp", addr, cfg)
				if err == nil {
					c.Close()
				}
				refused(t, name, err)
			})
		})
	}
	if _, err := pin.CanonicalHost("api..payments.test"); !errors.Is(err, pin.ErrInvalidServerName) {
		t.Errorf("CanonicalHost(empty label): err = %v", err)
	}
	for in, want := range map[string]string{
		host + "...": host, "API.PAYMENTS.TEST.": host, "127.0.0.1..": "127.0.0.1",
		"[::ffff:127.0.0.1].": "127.0.0.1", "[::1]": "::1",
	} {
		if got, err := pin.CanonicalHost(in); got != want || err != nil {
			t.Errorf("CanonicalHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// P3 for IP rules: "127.0.0.1.." is not an IP address to crypto/x509,
// which matches it against a dNSName of that spelling, but it is the
// pinned address to the rule.
func TestIPRuleTrailingDots(t *testing.T) {
	w := newWorld(t)
	legit := w.inter.Issue(t, testpki.LeafOptions{})
	rogue := w.rogueInter.Issue(t, testpki.LeafOptions{DNSNames: []string{"127.0.0.1..", "127.0.0.1."}})
	s := serve(t, rogue.TLS(), serverOptions{})
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: "127.0.0.1", Pins: []pin.Pin{spki(legit), w.backupPin}}))
	for _, name := range []string{"127.0.0.1..", "127.0.0.1."} {
		c, err := v.DialContext(context.Background(), "tcp", s.Listener.Addr().String(), &tls.Config{RootCAs: w.pool, ServerName: name})
		if err == nil {
			c.Close()
			t.Fatalf("%s: the rogue certificate escaped the 127.0.0.1 rule", name)
		}
		mismatch(t, err)
	}
	if d := v.Policy().Match("127.0.0.1..."); d == nil || d.Name != "127.0.0.1" {
		t.Errorf("Match(127.0.0.1...) = %v", d)
	}
}

// P9: a base TLSClientConfig.ServerName would verify, and pin, every URL
// under that one name: a pinned URL host would get another name's rule.
// Transport and Client refuse such a base.
func TestTransportRefusesBaseServerName(t *testing.T) {
	w := newWorld(t)
	v := pin.NewVerifier(mustPolicy(t, pin.Domain{Name: host, Pins: []pin.Pin{spki(w.leaf), w.backupPin}}))
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.pool, ServerName: "unpinned.test"}}
	if _, err := v.Transport(base); !errors.Is(err, pin.ErrServerNameSet) {
		t.Errorf("Transport: err = %v, want ErrServerNameSet", err)
	}
	if _, err := v.Client(base); !errors.Is(err, pin.ErrServerNameSet) {
		t.Errorf("Client: err = %v, want ErrServerNameSet", err)
	}
	// DialContext and TLSConfig take a ServerName by design: one connection.
	if _, err := v.TLSConfig(base.TLSClientConfig); err != nil {
		t.Errorf("TLSConfig: %v", err)
	}
}

// redirectServer answers host with a redirect to target and records the
// Authorization header every other name receives.
func redirectServer(t *testing.T, w *world, target string) (addr string, got chan string) {
	t.Helper()
	got = make(chan string, 4)
	leaf := w.inter.Issue(t, testpki.LeafOptions{Key: w.leaf.Key, DNSNames: []string{host, "x." + host, "other.test"}})
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Host, host) {
			http.Redirect(rw, r, target, http.StatusFound)
			return
		}
		got <- r.Header.Get("Authorization")
		io.WriteString(rw, "ok")
	}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), got
}

// P10: a pinned client does not follow a redirect from a pinned host to one
// that is not pinned: Go keeps Authorization on a redirect to a subdomain,
// and an open redirect would hand the credential to an unpinned
// connection (CWE-601, CWE-295).
func TestClientRefusesRedirectToUnpinnedHost(t *testing.T) {
	w := newWorld(t)
	pins := []pin.Pin{spki(w.leaf), w.backupPin}
	call := func(t *testing.T, p *pin.Policy, target string) (error, chan string) {
		addr, got := redirectServer(t, w, target)
		v := pin.NewVerifier(p)
		c, err := v.Client(baseTransport(addr, w.pool))
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/", nil)
		req.Header.Set("Authorization", "Bearer api-secret")
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err, got
	}
	for _, tc := range []struct {
		name   string
		target string
		rules  []pin.Domain
	}{
		{"subdomain not pinned", "https://x." + host + "/", nil},
		{"other host not pinned", "https://other.test/", nil},
		{"report-only target", "https://other.test/", []pin.Domain{{Name: "other.test", Mode: pin.ReportOnly, Pins: pins}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, append([]pin.Domain{{Name: host, Pins: pins}}, tc.rules...)...)
			err, got := call(t, p, tc.target)
			if !errors.Is(err, pin.ErrUnpinnedRedirect) {
				t.Errorf("err = %v, want ErrUnpinnedRedirect", err)
			}
			select {
			case a := <-got:
				t.Fatalf("the unpinned host was reached, with Authorization %q", a)
			default:
			}
		})
	}
	t.Run("pinned target followed", func(t *testing.T) {
		p := mustPolicy(t, pin.Domain{Name: host, IncludeSubdomains: true, Pins: pins})
		err, got := call(t, p, "https://x."+host+"/")
		if err != nil {
			t.Fatal(err)
		}
		if a := <-got; a != "Bearer api-secret" {
			t.Errorf("Authorization = %q at the pinned subdomain", a)
		}
	})
	t.Run("from an unpinned host", func(t *testing.T) {
		// Nothing to protect on the first hop: the redirect is followed.
		p := mustPolicy(t, pin.Domain{Name: "elsewhere.test", Pins: pins})
		if err, _ := call(t, p, "https://other.test/"); err != nil {
			t.Fatal(err)
		}
	})
}

// CanonicalHost is the one normalisation of every entry point: whatever
// the spelling, its result is a fixed point, has no trailing dot and no
// upper-case ASCII, and a name it accepts finds the same rule as its
// canonical form, so that no spelling escapes a rule (CWE-180).
func FuzzCanonicalHost(f *testing.F) {
	for _, s := range []string{host, host + "..", "API.PAYMENTS.TEST...", ".api.payments.test", "api..payments.test",
		"127.0.0.1..", "[::ffff:127.0.0.1].", "[::1]", "fe80::1%eth0", "x.api.payments.test.", "", ".", "..", "[]", "xn--bcher-kva.test"} {
		f.Add(s)
	}
	p := mustPolicy(f, pin.Domain{Name: host, Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))}},
		pin.Domain{Name: "payments.test", IncludeSubdomains: true, Pins: []pin.Pin{pin.FromSPKI([]byte("c")), pin.FromSPKI([]byte("d"))}},
		pin.Domain{Name: "127.0.0.1", Pins: []pin.Pin{pin.FromSPKI([]byte("e")), pin.FromSPKI([]byte("f"))}})
	f.Fuzz(func(t *testing.T, name string) {
		c, err := pin.CanonicalHost(name)
		if err != nil {
			if !errors.Is(err, pin.ErrInvalidServerName) {
				t.Fatalf("CanonicalHost(%q): untyped error %v", name, err)
			}
			return
		}
		if again, err := pin.CanonicalHost(c); err != nil || again != c {
			t.Fatalf("CanonicalHost(%q) = %q, but CanonicalHost(%q) = %q, %v", name, c, c, again, err)
		}
		if strings.HasSuffix(c, ".") || strings.ContainsAny(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("CanonicalHost(%q) = %q", name, c)
		}
		if p.Match(name) != p.Match(c) {
			t.Fatalf("Match(%q) = %v but Match(%q) = %v", name, p.Match(name), c, p.Match(c))
		}
	})
}
