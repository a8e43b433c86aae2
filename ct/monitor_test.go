package ct_test

import (
	"context"
	"crypto"
	"slices"
	"sync"
	"testing"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
	"github.com/rampartsec/rampart/internal/testing/testpki"
	"github.com/rampartsec/rampart/pin"
)

// world is a pinned organisation, a trusted CA, a rogue CA and a real CT
// log that accepts both.
type world struct {
	good, goodInt, rogue *testpki.CA
	leafKey, backupKey   crypto.Signer
	policy               *pin.Policy
	log                  *ctlog.Log
	logs                 []ct.Log
}

func newWorld(t *testing.T) *world {
	w := newPKI(t)
	w.log = ctlog.Start(t, w.good.Cert, w.rogue.Cert)
	logs, err := ct.ParseLogList(w.log.LogList(t))
	if err != nil {
		t.Fatal(err)
	}
	w.logs = logs
	return w
}

// newPKI is the organisation and the CAs, without a log.
func newPKI(t *testing.T) *world {
	w := &world{}
	w.good = testpki.NewRoot(t, "Good Root")
	w.goodInt = w.good.NewIntermediate(t, "Good Issuing CA")
	w.rogue = testpki.NewRoot(t, "Rogue Root")
	w.leafKey = testpki.NewKey(t, testpki.ECDSAP256)
	w.backupKey = testpki.NewKey(t, testpki.ECDSAP256)
	leafPin, _ := pin.FromPrivateKey(w.leafKey)
	backupPin, _ := pin.FromPrivateKey(w.backupKey)
	caPin := pin.FromCertificate(w.goodInt.Cert)
	policy, err := pin.NewPolicy("",
		pin.Domain{Name: "api.pay.example", Pins: []pin.Pin{leafPin, backupPin},
			Roles: map[pin.Pin]pin.Role{leafPin: pin.RoleLeaf, backupPin: pin.RoleBackup}},
		pin.Domain{Name: "shop.pay.example", IncludeSubdomains: true, Mode: pin.ReportOnly, Pins: []pin.Pin{caPin, backupPin},
			Roles: map[pin.Pin]pin.Role{caPin: pin.RoleCA, backupPin: pin.RoleBackup}},
	)
	if err != nil {
		t.Fatal(err)
	}
	w.policy = policy
	return w
}

// submit logs a certificate for names (see ctlog.Log.Submit).
func (w *world) submit(t *testing.T, ca *testpki.CA, key crypto.Signer, pre bool, names ...string) []int64 {
	t.Helper()
	return w.log.Submit(t, ca, key, pre, names...)
}

func index(t *testing.T, s ctlog.SCT) int64 {
	t.Helper()
	i, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// collector is a sink that keeps findings by index.
type collector struct {
	mu sync.Mutex
	by map[int64][]*ct.Finding
}

func (c *collector) Found(_ context.Context, f *ct.Finding) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[int64][]*ct.Finding{}
	}
	c.by[f.Index] = append(c.by[f.Index], f)
	return nil
}

func (c *collector) get(i int64) []*ct.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[i]
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.by)
}

// judged counts how often each entry was judged.
type judged struct {
	mu sync.Mutex
	n  map[int64]int
}

func (j *judged) on(_ *ct.Log, i int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.n == nil {
		j.n = map[int64]int{}
	}
	j.n[i]++
}

// exactlyOnce fails unless entries 0..size-1 were each judged once.
func (j *judged) exactlyOnce(t *testing.T, size int64) {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := int64(0); i < size; i++ {
		if j.n[i] != 1 {
			t.Errorf("entry %d judged %d times", i, j.n[i])
		}
	}
	if int64(len(j.n)) != size {
		t.Errorf("%d entries judged, the log has %d", len(j.n), size)
	}
}

// TestMonitorRealLog submits the certificates a pinned organisation meets
// to a real static-ct-api log (TesseraCT) through its add-chain and
// add-pre-chain endpoints, and checks what the monitor makes of each.
func TestMonitorRealLog(t *testing.T) {
	w := newWorld(t)
	leafPin, _ := pin.FromPrivateKey(w.leafKey)
	plannedKey := testpki.NewKey(t, testpki.ECDSAP256)
	plannedPin, _ := pin.FromPrivateKey(plannedKey)

	expected := w.submit(t, w.goodInt, w.leafKey, false, "api.pay.example")
	rollover := w.submit(t, w.goodInt, w.backupKey, false, "api.pay.example")
	rogue := w.submit(t, w.rogue, nil, true, "api.pay.example") // precertificate, then certificate
	caPinned := w.submit(t, w.goodInt, nil, false, "shop.pay.example", "www.shop.pay.example")
	wildcard := w.submit(t, w.rogue, nil, false, "*.pay.example")
	unpinned := w.submit(t, w.goodInt, nil, false, "blog.pay.example")
	unrelated := w.submit(t, w.rogue, nil, false, "www.unrelated.example")
	announced := w.submit(t, w.goodInt, plannedKey, false, "api.pay.example")
	caPinnedPre := w.submit(t, w.goodInt, nil, true, "pay.shop.pay.example") // a precertificate: its issuer by key hash
	size := caPinnedPre[1] + 1
	w.log.WaitSize(t, size)

	sink := &collector{}
	seen := &judged{}
	judge := newJudge(t, w.policy, []string{"pay.example"}, []ct.Announcement{{Domain: "api.pay.example", SPKI: plannedPin, Note: "2027 renewal"}})
	m := &ct.Monitor{Logs: w.logs, Judge: judge, Sink: sink, Start: ct.Start{Beginning: true}, OnEntry: seen.on}
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, size)

	one := func(name string, i int64, class ct.Class) *ct.Finding {
		t.Helper()
		fs := sink.get(i)
		if len(fs) != 1 {
			t.Fatalf("%s (entry %d): %d findings", name, i, len(fs))
		}
		if fs[0].Verdict.Class != class {
			t.Errorf("%s (entry %d): class %s, want %s (%+v)", name, i, fs[0].Verdict.Class, class, fs[0].Verdict.Rules)
		}
		return fs[0]
	}
	f := one("the key in use", expected[0], ct.Expected)
	if r := f.Verdict.Rules[0]; r.Pin != leafPin || r.Role != pin.RoleLeaf || r.Position != 0 {
		t.Errorf("expected: matched %v (%s) at %d", r.Pin, r.Role, r.Position)
	}
	f = one("the backup key, unannounced", rollover[0], ct.Rollover)
	if r := f.Verdict.Rules[0]; r.Role != pin.RoleBackup {
		t.Errorf("rollover: role %s", r.Role)
	}
	pre := one("rogue precertificate", rogue[0], ct.Rogue)
	final := one("rogue certificate", rogue[1], ct.Rogue)
	if !pre.Precert || final.Precert {
		t.Errorf("precert flags: %v, %v", pre.Precert, final.Precert)
	}
	if pre.Certificate.TBSHash != final.Certificate.TBSHash {
		t.Error("the precertificate and its certificate have different TBS hashes")
	}
	if pre.Verdict.SPKI != final.Verdict.SPKI || pre.Verdict.Rules[0].Pin != (pin.Pin{}) {
		t.Errorf("rogue SPKI: %v / %v", pre.Verdict.SPKI, final.Verdict.SPKI)
	}
	if rogueName := w.rogue.Cert.Subject.String(); pre.Certificate.Issuer != rogueName || !slices.Equal(pre.ChainIssuers, []string{rogueName}) {
		t.Errorf("rogue issuer %q, chain %q", pre.Certificate.Issuer, pre.ChainIssuers)
	}
	f = one("a new key under the pinned CA", caPinned[0], ct.Expected)
	if r := f.Verdict.Rules[0]; r.Role != pin.RoleCA || r.Position != 1 || r.Mode != pin.ReportOnly {
		t.Errorf("CA pin: %+v", r)
	}
	if !slices.Equal(f.Verdict.Names, []string{"shop.pay.example", "www.shop.pay.example"}) {
		t.Errorf("names %q", f.Verdict.Names)
	}
	f = one("a rogue wildcard", wildcard[0], ct.Rogue)
	var rules []string
	for _, r := range f.Verdict.Rules {
		rules = append(rules, r.Rule+"="+string(r.Class))
	}
	slices.Sort(rules)
	if !slices.Equal(rules, []string{"api.pay.example=rogue", "shop.pay.example=rogue"}) {
		t.Errorf("wildcard rules %q", rules)
	}
	one("an unpinned name of the organisation", unpinned[0], ct.UnpinnedName)
	if fs := sink.get(unrelated[0]); len(fs) != 0 {
		t.Errorf("an unrelated certificate was reported: %+v", fs[0].Verdict)
	}
	f = one("an announced renewal", announced[0], ct.Expected)
	if !f.Verdict.Rules[0].Announced {
		t.Error("the announced renewal is not marked announced")
	}
	for _, i := range caPinnedPre {
		if f := one("a new key under the pinned CA, precertificate and certificate", i, ct.Expected); f.Verdict.Rules[0].Position != 1 {
			t.Errorf("entry %d: the CA pin matched at %d", i, f.Verdict.Rules[0].Position)
		}
	}
	if got, want := sink.count(), 10; got != want {
		t.Errorf("%d entries reported, want %d", got, want)
	}
	st := m.Status()[0]
	if st.Next != size || st.Behind != 0 || st.Head.Size != size || st.LastError != "" || st.Misbehaviour != "" {
		t.Errorf("status %+v", st)
	}
}

func testLeaf(key crypto.Signer, names ...string) testpki.LeafOptions {
	return testpki.LeafOptions{DNSNames: names, Key: key}
}

func newJudge(t testing.TB, policy *pin.Policy, watch []string, a []ct.Announcement) *ct.Judge {
	t.Helper()
	j, err := ct.NewJudge(policy, watch, a)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
