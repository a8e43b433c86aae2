package cli_test

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/rampartsec/rampart/internal/app/cli"
	"github.com/rampartsec/rampart/internal/testing/golden"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

func stdio() cli.Stdio { return cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

func TestMain(m *testing.M) {
	// The test binary doubles as rampart for tests that must kill it
	// (serve_test.go).
	if os.Getenv("RAMPART_TEST_RUN_CLI") == "1" {
		os.Exit(cli.Run(context.Background(), os.Args[1:], stdio()))
	}
	testscript.Main(m, map[string]func(){
		// rampart is the real command line, run as a subprocess.
		"rampart": func() { os.Exit(cli.Run(context.Background(), os.Args[1:], stdio())) },
		// exits N rampart ARGS... runs rampart and succeeds only if it
		// exits with status N, so transcripts check exact exit codes.
		"exits": func() {
			if len(os.Args) < 3 || os.Args[2] != "rampart" {
				fmt.Fprintln(os.Stderr, "usage: exits CODE rampart ARGS...")
				os.Exit(100)
			}
			want, err := strconv.Atoi(os.Args[1])
			if err != nil {
				fmt.Fprintln(os.Stderr, "exits: bad code:", err)
				os.Exit(100)
			}
			if got := cli.Run(context.Background(), os.Args[3:], stdio()); got != want {
				fmt.Fprintf(os.Stderr, "exits: rampart exited %d, want %d\n", got, want)
				os.Exit(1)
			}
			os.Exit(0)
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *golden.Update,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"pki":        cmdPKI,
			"serve":      cmdServe,
			"collector":  cmdCollector,
			"subst":      cmdSubst,
			"der":        cmdDER,
			"truncate":   cmdTruncate,
			"samepin":    cmdSamePin,
			"perm":       cmdPerm,
			"freeport":   cmdFreePort,
			"waithttp":   cmdWaitHTTP,
			"tamper":     cmdTamper,
			"sleep":      cmdSleep,
			"waitlisten": cmdWaitListen,
			"capture":    cmdCapture,
			"contains":   cmdContains,
			"silent":     cmdSilent,
			"sighup":     cmdSighup,   // serve_test.go
			"waitbody":   cmdWaitBody, // serve_test.go
		},
	})
}

// pki writes a throwaway PKI into the work directory and exports its pins:
//
//	roots.pem        the trust store: the payment root and a compromised public root
//	api.pem/.key     api.payments.test, chain to the payment root (valid 90 days)
//	api-leaf.pem     the same leaf alone, without its intermediate
//	cp.pem/.key      a control plane on 127.0.0.1, chain to its own root, cp-root.pem
//	rogue-dots.pem/.key the compromised CA's certificate for api.payments.test.. too
//	rogue.pem/.key   api.payments.test, chain to the compromised root
//	renewed.pem/.key api.payments.test renewed on the backup key
//	backup.key       the offline backup key
//	short.pem/.key   api.payments.test on the api key, valid 10 days
//	fresh.pem/.key/.csr  a renewal on a new key, by the payment intermediate
//	backup.csr       a request for the backup key
//	issuing.pem      the payment intermediate and root (an issuing chain)
//	rogue-issuing.pem the compromised intermediate
//	spliced-issuing.pem the compromised intermediate, then the payment intermediate and root
//
// Variables: IN_10_DAYS (a date), LEAF_PIN, BACKUP_PIN, INT_PIN, ROOT_PIN, ROGUE_PIN, LEAF_CERT_PIN,
// and each with _RE appended, quoted for use in regular expressions.
func cmdPKI(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: pki")
	}
	host := "api.payments.test"
	root := testpki.NewRoot(ts, "Payments Root CA")
	inter := root.NewIntermediate(ts, "Payments Issuing CA")
	long := testpki.LeafOptions{DNSNames: []string{host}, NotAfter: time.Now().AddDate(0, 0, 90)}
	leaf := inter.Issue(ts, long)
	rogueRoot := testpki.NewRoot(ts, "Compromised Public CA")
	rogueInter := rogueRoot.NewIntermediate(ts, "Compromised Issuing CA")
	rogue := rogueInter.Issue(ts, long)
	dots := long
	dots.DNSNames = []string{host, host + "..", host + "..."}
	rogueDots := rogueInter.Issue(ts, dots)
	backup := testpki.NewKey(ts, testpki.ECDSAP256)
	renewedOpts := long
	renewedOpts.Key = backup
	renewed := inter.Issue(ts, renewedOpts)
	short := inter.Issue(ts, testpki.LeafOptions{DNSNames: []string{host}, Key: leaf.Key, NotAfter: time.Now().AddDate(0, 0, 10)})

	write := func(name string, data []byte) {
		ts.Check(os.WriteFile(ts.MkAbs(name), data, 0o600))
	}
	write("roots.pem", testpki.CertPEM(root.Cert, rogueRoot.Cert))
	for name, l := range map[string]*testpki.Leaf{"api": leaf, "rogue": rogue, "rogue-dots": rogueDots, "renewed": renewed, "short": short} {
		write(name+".pem", testpki.CertPEM(l.Chain...))
		write(name+".key", testpki.KeyPEM(ts, l.Key))
	}
	write("api-leaf.pem", testpki.CertPEM(leaf.Cert))
	cpRoot := testpki.NewRoot(ts, "Control Plane Root CA")
	cp := cpRoot.NewIntermediate(ts, "Control Plane Issuing CA").Issue(ts, testpki.LeafOptions{})
	write("cp.pem", testpki.CertPEM(cp.Chain...))
	write("cp.key", testpki.KeyPEM(ts, cp.Key))
	write("cp-root.pem", testpki.CertPEM(cpRoot.Cert))
	write("backup.key", testpki.KeyPEM(ts, backup))
	fresh := inter.Issue(ts, long) // a renewal on a new key
	write("fresh.pem", testpki.CertPEM(fresh.Chain...))
	write("fresh.key", testpki.KeyPEM(ts, fresh.Key))
	write("fresh.csr", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(ts, fresh.Key, host).Raw}))
	write("backup.csr", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: testpki.CSR(ts, backup, host).Raw}))
	write("issuing.pem", testpki.CertPEM(inter.Cert, root.Cert))
	write("rogue-issuing.pem", testpki.CertPEM(rogue.Chain[1:]...))
	write("spliced-issuing.pem", testpki.CertPEM(rogue.Chain[1], inter.Cert, root.Cert))
	ts.Setenv("IN_10_DAYS", time.Now().UTC().AddDate(0, 0, 10).Format(time.DateOnly))
	backupPin, err := pin.FromPrivateKey(backup)
	ts.Check(err)
	for name, p := range map[string]pin.Pin{
		"LEAF_PIN":      pin.FromCertificate(leaf.Cert),
		"LEAF_CERT_PIN": pin.Fingerprint(leaf.Cert),
		"BACKUP_PIN":    backupPin,
		"INT_PIN":       pin.FromCertificate(inter.Cert),
		"ROOT_PIN":      pin.FromCertificate(root.Cert),
		"ROGUE_PIN":     pin.FromCertificate(rogue.Cert),
	} {
		ts.Setenv(name, p.String())
		ts.Setenv(name+"_RE", regexp.QuoteMeta(p.String())) // for stdout/stderr patterns
	}
}

// serve NAME CHAIN.pem KEY.pem starts an HTTPS server on loopback for the
// rest of the script and sets $NAME to its address. It answers "hello from
// NAME".
func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: serve NAME CHAIN.pem KEY.pem")
	}
	name := args[0]
	cert, err := tls.LoadX509KeyPair(ts.MkAbs(args[1]), ts.MkAbs(args[2]))
	ts.Check(err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s\n", name)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	ts.Defer(func() { srv.Close() })
	ts.Setenv(name, ln.Addr().String())
}

// collector NAME starts a report collector on loopback and sets $NAME to
// its URL. Each report is saved as NAME-reports/N.json.
//
// collector NAME CHAIN.pem KEY.pem serves https with that certificate.
func cmdCollector(ts *testscript.TestScript, neg bool, args []string) {
	if neg || (len(args) != 1 && len(args) != 3) {
		ts.Fatalf("usage: collector NAME [CHAIN.pem KEY.pem]")
	}
	dir := ts.MkAbs(args[0] + "-reports")
	ts.Check(os.MkdirAll(dir, 0o700))
	var (
		mu sync.Mutex
		n  int
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		mu.Lock()
		n++
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.json", n)), body, 0o600)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	ts.Defer(func() { srv.Close() })
	if len(args) == 3 {
		cert, err := tls.LoadX509KeyPair(ts.MkAbs(args[1]), ts.MkAbs(args[2]))
		ts.Check(err)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		go srv.ServeTLS(ln, "", "")
		ts.Setenv(args[0], "https://"+ln.Addr().String()+"/reports")
		return
	}
	go srv.Serve(ln)
	ts.Setenv(args[0], "http://"+ln.Addr().String()+"/reports")
}

// subst IN OUT copies IN to OUT expanding $VARIABLES, so that policies in
// transcripts can use the pins pki made.
func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: subst IN OUT")
	}
	out := os.Expand(ts.ReadFile(args[0]), ts.Getenv)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(out), 0o600))
}

// der IN.pem OUT writes the first PEM block of IN as DER.
func cmdDER(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: der IN.pem OUT")
	}
	b, _ := pem.Decode([]byte(ts.ReadFile(args[0])))
	if b == nil {
		ts.Fatalf("%s: no PEM block", args[0])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b.Bytes, 0o600))
}

// truncate FILE N cuts FILE to N bytes.
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	ts.Check(os.Truncate(ts.MkAbs(args[0]), int64(n)))
}

// samepin A B checks that the first sha256/ pin in file A is the first in
// file B: a pin printed by one command recomputed by another.
func cmdSamePin(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: samepin A B")
	}
	re := regexp.MustCompile(`sha256/[A-Za-z0-9+/]{43}=`)
	a, b := re.FindString(ts.ReadFile(args[0])), re.FindString(ts.ReadFile(args[1]))
	if a == "" || b == "" {
		ts.Fatalf("no pin in %s (%q) or %s (%q)", args[0], a, args[1], b)
	}
	if (a == b) == neg {
		ts.Fatalf("pins %s and %s: equal=%v", a, b, a == b)
	}
}

// perm FILE MODE checks a file's permission bits, in octal.
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if got := fmt.Sprintf("%04o", fi.Mode().Perm()); got != args[1] {
		ts.Fatalf("%s has mode %s, want %s", args[0], got, args[1])
	}
}

// freeport NAME sets $NAME to a TCP port free on 127.0.0.1 (for a server
// started in the background, whose address the script must know).
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport NAME")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ts.Setenv(args[0], strconv.Itoa(port))
}

// silent NAME listens on loopback, accepts connections and never sends a
// byte (a server that stalls the TLS handshake), and sets $NAME to its
// address.
func cmdSilent(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: silent NAME")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	ts.Defer(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	ts.Setenv(args[0], ln.Addr().String())
}

// waithttp URL waits up to 30 s for URL to answer 200.
func cmdWaitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waithttp URL")
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(args[0])
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("%s did not answer 200 within 30 s", args[0])
}

// tamper IN OUT copies a JWS, changing one character of its payload.
func cmdTamper(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: tamper IN OUT")
	}
	parts := strings.Split(strings.TrimSpace(ts.ReadFile(args[0])), ".")
	if len(parts) != 3 || len(parts[1]) < 10 {
		ts.Fatalf("%s is not a compact JWS", args[0])
	}
	p := []byte(parts[1])
	// A character in the middle, replaced by another base64url one.
	if p[len(p)/2] == 'A' {
		p[len(p)/2] = 'B'
	} else {
		p[len(p)/2] = 'A'
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(parts[0]+"."+string(p)+"."+parts[2]+"\n"), 0o600))
}

// sleep DURATION waits, for what only time can do (a bundle expiring).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: sleep DURATION")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	time.Sleep(d)
}

// waitlisten ADDR waits up to 30 s for something to accept connections on
// ADDR (a TLS server, which waithttp cannot probe without trusting it).
func cmdWaitListen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitlisten ADDR")
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", args[0], time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("nothing listens on %s after 30 s", args[0])
}

// capture NAME REGEXP FILE sets $NAME to the first submatch of REGEXP in
// FILE (stdout and stderr name the last command's output), so that a
// transcript can use an ID a command printed.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: capture NAME REGEXP FILE")
	}
	re, err := regexp.Compile(args[1])
	ts.Check(err)
	var text string
	switch args[2] {
	case "stdout", "stderr":
		text = ts.ReadFile(args[2])
	default:
		text = ts.ReadFile(args[2])
	}
	m := re.FindStringSubmatch(text)
	if len(m) < 2 {
		ts.Fatalf("%s: no match for %s", args[2], args[1])
	}
	ts.Setenv(args[0], m[1])
}

// contains HAYSTACK NEEDLE checks that file HAYSTACK holds the (trimmed)
// content of file NEEDLE: "! contains list.txt key.txt" proves a secret
// is not printed.
func cmdContains(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: contains HAYSTACK NEEDLE")
	}
	needle := strings.TrimSpace(ts.ReadFile(args[1]))
	if needle == "" {
		ts.Fatalf("%s is empty", args[1])
	}
	if strings.Contains(ts.ReadFile(args[0]), needle) == neg {
		ts.Fatalf("%s contains %s: %v", args[0], args[1], !neg)
	}
}
