package ct_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/testpki"
)

// rfcLog serves the read API of RFC 6962 §4 (get-sth, get-sth-consistency,
// get-proof-by-hash, get-entries) over a Merkle tree kept with tlog. No
// RFC 6962 log can run on this machine (Trillian needs its own database
// and servers), so the protocol is tested against this implementation of
// the RFC; the tiled path is tested against a real log.
type rfcLog struct {
	t   *testing.T
	key *ecdsa.PrivateKey
	srv *httptest.Server

	mu        sync.Mutex
	leaves    [][]byte // MerkleTreeLeaf
	extras    [][]byte
	stored    []tlog.Hash
	published int64 // the size get-sth serves
	maxPer    int   // get-entries answers at most this many
	proofs    int   // get-sth-consistency requests answered
	sth       func(size int64) []byte
	corrupt   map[int64]bool
	age       time.Duration // how old the heads it signs say they are
}

func newRFCLog(t *testing.T) *rfcLog {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l := &rfcLog{t: t, key: key, maxPer: 100, corrupt: map[int64]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ct/v1/get-sth", l.getSTH)
	mux.HandleFunc("GET /ct/v1/get-sth-consistency", l.getConsistency)
	mux.HandleFunc("GET /ct/v1/get-entries", l.getEntries)
	mux.HandleFunc("GET /ct/v1/get-proof-by-hash", l.getProof)
	l.srv = httptest.NewServer(mux)
	t.Cleanup(l.srv.Close)
	return l
}

func (l *rfcLog) list(t *testing.T) []ct.Log {
	der, _ := x509.MarshalPKIXPublicKey(&l.key.PublicKey)
	id := sha256.Sum256(der)
	doc, _ := json.Marshal(map[string]any{"operators": []any{map[string]any{"name": "test", "logs": []any{
		map[string]any{"description": "RFC 6962 log", "log_id": id[:], "key": der, "url": l.srv.URL + "/", "mmd": 86400},
	}}}})
	logs, err := ct.ParseLogList(doc)
	if err != nil {
		t.Fatal(err)
	}
	return logs
}

func (l *rfcLog) hashes() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = l.stored[x]
		}
		return out, nil
	})
}

// add appends a certificate entry (or, with pre, a precertificate entry
// for tbs) and publishes the new size.
func (l *rfcLog) add(cert []byte, chain [][]byte, pre bool) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	te := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixMilli()))
	var extra []byte
	u24 := func(b []byte, data []byte) []byte {
		b = append(b, byte(len(data)>>16), byte(len(data)>>8), byte(len(data)))
		return append(b, data...)
	}
	var chainList []byte
	for _, c := range chain {
		chainList = u24(chainList, c)
	}
	if pre {
		te = binary.BigEndian.AppendUint16(te, 1)
		ikh := sha256.Sum256([]byte("issuer key"))
		te = append(te, ikh[:]...)
		te = u24(te, cert)
		extra = u24(extra, cert)
	} else {
		te = binary.BigEndian.AppendUint16(te, 0)
		te = u24(te, cert)
	}
	extra = u24(extra, chainList)
	te = append(te, 0, 0) // no extensions
	leaf := append([]byte{0, 0}, te...)
	n := int64(len(l.leaves))
	hs, err := tlog.StoredHashes(n, leaf, l.hashes())
	if err != nil {
		l.t.Fatal(err)
	}
	l.stored = append(l.stored, hs...)
	l.leaves = append(l.leaves, leaf)
	l.extras = append(l.extras, extra)
	l.published = n + 1
	return n
}

func (l *rfcLog) root(size int64) tlog.Hash {
	h, err := tlog.TreeHash(size, l.hashes())
	if err != nil {
		l.t.Fatal(err)
	}
	return h
}

func (l *rfcLog) signedSTH(size int64, root tlog.Hash) []byte {
	ts := uint64(time.Now().Add(-l.age).UnixMilli())
	msg := []byte{0, 1}
	msg = binary.BigEndian.AppendUint64(msg, ts)
	msg = binary.BigEndian.AppendUint64(msg, uint64(size))
	msg = append(msg, root[:]...)
	d := sha256.Sum256(msg)
	sig, _ := ecdsa.SignASN1(rand.Reader, l.key, d[:])
	ds := append([]byte{4, 3, byte(len(sig) >> 8), byte(len(sig))}, sig...)
	b, _ := json.Marshal(map[string]any{"tree_size": size, "timestamp": ts, "sha256_root_hash": root[:], "tree_head_signature": ds})
	return b
}

func (l *rfcLog) getSTH(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sth != nil {
		w.Write(l.sth(l.published))
		return
	}
	w.Write(l.signedSTH(l.published, l.root(l.published)))
}

func num(r *http.Request, name string) int64 {
	n, err := strconv.ParseInt(r.URL.Query().Get(name), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

func (l *rfcLog) getConsistency(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.proofs++
	first, second := num(r, "first"), num(r, "second")
	if first < 0 || second > l.published || first > second {
		http.Error(w, "bad range", http.StatusBadRequest)
		return
	}
	p, err := tlog.ProveTree(second, first, l.hashes())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out := [][]byte{}
	for _, h := range p {
		out = append(out, h[:])
	}
	json.NewEncoder(w).Encode(map[string]any{"consistency": out})
}

func (l *rfcLog) getProof(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := num(r, "tree_size")
	var want tlog.Hash
	copy(want[:], mustB64(r.URL.Query().Get("hash")))
	for i := int64(0); i < size && i < int64(len(l.leaves)); i++ {
		if tlog.RecordHash(l.leaves[i]) == want {
			p, err := tlog.ProveRecord(size, i, l.hashes())
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			out := [][]byte{}
			for _, h := range p {
				out = append(out, h[:])
			}
			json.NewEncoder(w).Encode(map[string]any{"leaf_index": i, "audit_path": out})
			return
		}
	}
	http.Error(w, "no such leaf", http.StatusNotFound)
}

func mustB64(s string) []byte {
	var b []byte
	json.Unmarshal([]byte(strconv.Quote(s)), &b)
	return b
}

func (l *rfcLog) getEntries(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	start, end := num(r, "start"), num(r, "end")
	if start < 0 || end < start || start >= int64(len(l.leaves)) {
		http.Error(w, "bad range", http.StatusBadRequest)
		return
	}
	end = min(end, int64(len(l.leaves))-1, start+int64(l.maxPer)-1)
	type entry struct {
		Leaf  []byte `json:"leaf_input"`
		Extra []byte `json:"extra_data"`
	}
	var out []entry
	for i := start; i <= end; i++ {
		leaf := l.leaves[i]
		if l.corrupt[i] {
			leaf = append([]byte(nil), leaf...)
			leaf[len(leaf)-3] ^= 1
		}
		out = append(out, entry{leaf, l.extras[i]})
	}
	json.NewEncoder(w).Encode(map[string]any{"entries": out})
}

// TestRFC6962Log follows an RFC 6962 log from the beginning, in batches
// smaller than the log (so entries are tied to the head by consistency
// proofs), then as it grows, across a restart, and through faults.
func TestRFC6962Log(t *testing.T) {
	w := newPKI(t)
	policy := w.policy
	log := newRFCLog(t)
	log.maxPer = 7 // logs answer get-entries with fewer than asked
	issue := func(ca *testpki.CA, names ...string) []byte {
		key := w.leafKey // the key in use, for the trusted CA
		if ca == w.rogue {
			key = nil // a key of the attacker's
		}
		return ca.Issue(t, testpki.LeafOptions{DNSNames: names, Key: key}).Cert.Raw
	}
	rogueAt := map[int64]bool{}
	for i := range 2500 {
		switch {
		case i%500 == 17:
			rogueAt[log.add(issue(w.rogue, "api.pay.example"), [][]byte{w.rogue.Cert.Raw}, false)] = true
		case i == 1234:
			// A precertificate entry holds a TBSCertificate.
			c, _ := x509.ParseCertificate(issue(w.rogue, "api.pay.example"))
			rogueAt[log.add(c.RawTBSCertificate, [][]byte{w.rogue.Cert.Raw}, true)] = true
		case i%3 == 0:
			log.add(issue(w.goodInt, "api.pay.example"), [][]byte{w.goodInt.Cert.Raw}, false)
		default:
			log.add(issue(w.goodInt, "www.example.org"), [][]byte{w.goodInt.Cert.Raw}, false)
		}
	}
	logs := log.list(t)
	sink := &collector{}
	seen := &judged{}
	state := &ct.MemoryState{}
	judge := newJudge(t, policy, nil, nil)
	mon := func() *ct.Monitor {
		return &ct.Monitor{Logs: logs, Judge: judge, Sink: sink, State: state, Start: ct.Start{Beginning: true}, OnEntry: seen.on}
	}
	m := mon()
	ctx := context.Background()
	if err := m.Once(ctx); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, 2500)
	for i := range rogueAt {
		if fs := sink.get(i); len(fs) != 1 || fs[0].Verdict.Class != ct.Rogue {
			t.Errorf("entry %d: %v", i, fs)
		}
	}
	if fs := sink.get(1234); len(fs) != 1 || !fs[0].Precert {
		t.Error("the precertificate entry is not reported as one")
	}

	// Growth across a restart: only the new entries are judged.
	for range 300 {
		log.add(issue(w.goodInt, "api.pay.example"), nil, false)
	}
	m = mon()
	if err := m.Once(ctx); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, 2800)

	// A corrupted entry: nothing of its batch is judged, then it is.
	n := log.add(issue(w.rogue, "api.pay.example"), nil, false)
	log.corrupt[n] = true
	before := sink.count()
	if err := m.Step(ctx, &m.Logs[0]); !errors.Is(err, ct.ErrCorrupt) {
		t.Errorf("corrupted entry: %v", err)
	}
	if sink.count() != before {
		t.Error("a finding was delivered from an unverified batch")
	}
	delete(log.corrupt, n)
	if err := m.Step(ctx, &m.Logs[0]); err != nil {
		t.Fatal(err)
	}
	seen.exactlyOnce(t, 2801)
	if fs := sink.get(n); len(fs) != 1 || fs[0].Verdict.Class != ct.Rogue {
		t.Errorf("the recovered entry: %v", fs)
	}

	// Two heads for one size, then a larger head of a tree in which an
	// entry already judged was replaced: no consistency proof holds.
	log.sth = func(size int64) []byte { return log.signedSTH(size, tlog.Hash{2}) }
	if err := m.Step(ctx, &m.Logs[0]); !errors.Is(err, ct.ErrSplitView) {
		t.Errorf("two heads for one size: %v", err)
	}
	// A signed head too large for proof arithmetic is refused, at once.
	log.sth = func(size int64) []byte { return log.signedSTH(1<<62+1, tlog.Hash{3}) }
	if err := m.Step(ctx, &m.Logs[0]); !errors.Is(err, ct.ErrCorrupt) {
		t.Errorf("a head of 2^62+1 entries: %v", err)
	}
	log.sth = nil
	log.rewrite(1500, issue(w.goodInt, "www.example.org"))
	log.add(issue(w.goodInt, "www.example.org"), nil, false)
	if err := m.Step(ctx, &m.Logs[0]); !errors.Is(err, ct.ErrInconsistent) {
		t.Errorf("a head of a rewritten tree: %v", err)
	}
	seen.exactlyOnce(t, 2801)
	if st := m.Status()[0]; st.Misbehaviour == "" || st.Head.Size != 2801 {
		t.Errorf("status after misbehaviour: %+v", st)
	}
}

// rewrite replaces entry i with a certificate entry for cert: the log
// rewrites its history.
func (l *rfcLog) rewrite(i int64, cert []byte) {
	l.mu.Lock()
	leaves, extras := l.leaves, l.extras
	l.leaves, l.extras, l.stored = nil, nil, nil
	l.mu.Unlock()
	for j := range leaves {
		if int64(j) == i {
			l.add(cert, nil, false)
			continue
		}
		l.mu.Lock()
		n := int64(len(l.leaves))
		hs, err := tlog.StoredHashes(n, leaves[j], l.hashes())
		if err != nil {
			l.t.Fatal(err)
		}
		l.stored = append(l.stored, hs...)
		l.leaves = append(l.leaves, leaves[j])
		l.extras = append(l.extras, extras[j])
		l.published = n + 1
		l.mu.Unlock()
	}
}

// TestRFC6962StartAtEnd starts on a log with entries, at its end: the
// compact range is rebuilt from an audit path, and the next entries are
// verified with it.
func TestRFC6962StartAtEnd(t *testing.T) {
	w := newPKI(t)
	policy := w.policy
	for _, size := range []int{1, 2, 3, 255, 256, 1000} {
		log := newRFCLog(t)
		for range size {
			log.add(w.rogue.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.pay.example"}}).Cert.Raw, nil, false)
		}
		sink := &collector{}
		seen := &judged{}
		m := &ct.Monitor{Logs: log.list(t), Judge: newJudge(t, policy, nil, nil), Sink: sink, OnEntry: seen.on}
		ctx := context.Background()
		if err := m.Once(ctx); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if sink.count() != 0 {
			t.Errorf("size %d: entries before the start were judged", size)
		}
		n := log.add(w.rogue.Issue(t, testpki.LeafOptions{DNSNames: []string{"api.pay.example"}}).Cert.Raw, nil, false)
		if err := m.Once(ctx); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if fs := sink.get(n); len(fs) != 1 || fs[0].Verdict.Class != ct.Rogue || sink.count() != 1 {
			t.Errorf("size %d: the new entry: %v", size, fs)
		}
	}
}

// TestUnparsedEntries: an entry whose certificate cannot be read is
// counted and logged, and reported as a finding when its bytes mention a
// watched name: never dropped unseen.
func TestUnparsedEntries(t *testing.T) {
	w := newPKI(t)
	log := newRFCLog(t)
	mentions := log.add([]byte("\x30\x80 not DER, but it names API.pay.example"), nil, false)
	log.add([]byte("\x30\x80 not DER, no name of ours"), nil, true)
	log.add(w.goodInt.Issue(t, testpki.LeafOptions{DNSNames: []string{"www.example.org"}}).Cert.Raw, nil, false)
	// Read in part: a SAN whose first name has a non-minimal length, then
	// our name; what parses names nothing of ours, the bytes do.
	partial := log.add(wrapCert(rawTBS([]byte{1}, rawName(cbasn1.UTF8String, []byte("x")), keyDER(t, elliptic.P256()),
		sanExt(func(b *cryptobyte.Builder) {
			b.AddBytes([]byte{0x82, 0x81, 0x01, 'x'})
			b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("api.pay.example")) })
		}))), nil, false)
	sink := &collector{}
	m := &ct.Monitor{Logs: log.list(t), Judge: newJudge(t, w.policy, nil, nil), Sink: sink, Start: ct.Start{Beginning: true}}
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	fs := sink.get(mentions)
	if len(fs) != 1 || fs[0].Verdict.Class != ct.Unparsed || fs[0].Certificate != nil || fs[0].ParseError == "" || sink.count() != 2 {
		t.Errorf("findings: %d, of the entry naming us %+v", sink.count(), fs)
	}
	if fs := sink.get(partial); len(fs) != 1 || fs[0].Verdict.Class != ct.Unparsed {
		t.Errorf("the entry read in part: %+v", fs)
	}
	if st := m.Status()[0]; st.Unparsed != 3 || st.Judged != 4 {
		t.Errorf("status: %d unparsed of %d judged", st.Unparsed, st.Judged)
	}
}

// TestStaleHead: a log that keeps showing a head older than its MMD (plus
// an hour) is flagged: a frozen view can hide entries from a monitor.
func TestStaleHead(t *testing.T) {
	w := newPKI(t)
	log := newRFCLog(t)
	log.add(w.goodInt.Issue(t, testpki.LeafOptions{DNSNames: []string{"www.example.org"}}).Cert.Raw, nil, false)
	log.age = 26 * time.Hour // the list says MMD 24 h
	m := &ct.Monitor{Logs: log.list(t), Judge: newJudge(t, w.policy, nil, nil), Sink: &collector{}, Start: ct.Start{Beginning: true}}
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Status()[0]; !strings.Contains(st.Stale, "the log's MMD is 24h0m0s") || st.Next != 1 {
		t.Errorf("status %+v", st)
	}
	log.age = 0
	log.add(w.goodInt.Issue(t, testpki.LeafOptions{DNSNames: []string{"www.example.org"}}).Cert.Raw, nil, false)
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Status()[0]; st.Stale != "" || st.Next != 2 {
		t.Errorf("status once fresh %+v", st)
	}
	// A larger, consistent head signed before the one verified.
	log.age = 10 * time.Minute
	log.add(w.goodInt.Issue(t, testpki.LeafOptions{DNSNames: []string{"www.example.org"}}).Cert.Raw, nil, false)
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Status()[0]; !strings.Contains(st.Stale, "before the previous head's") || st.Next != 3 {
		t.Errorf("status after a head timestamped back %+v", st)
	}
}

// TestRFC6962BatchBytes: a batch ends once it holds enough bytes and is
// verified there (a consistency proof from its end to the head), so that
// huge entries cannot pile up unverified.
func TestRFC6962BatchBytes(t *testing.T) {
	w := newPKI(t)
	log := newRFCLog(t)
	for range 300 {
		log.add(w.goodInt.Issue(t, testpki.LeafOptions{DNSNames: []string{"www.example.org"}}).Cert.Raw, [][]byte{w.goodInt.Cert.Raw}, false)
	}
	log.maxPer = 10 // the budget is checked after each answer
	run := func(budget int) int {
		t.Helper()
		log.proofs = 0
		seen := &judged{}
		m := &ct.Monitor{Logs: log.list(t), Judge: newJudge(t, w.policy, nil, nil), Sink: &collector{}, Start: ct.Start{Beginning: true}, OnEntry: seen.on}
		if budget > 0 {
			ct.SetBatchBytes(m, budget)
		}
		if err := m.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
		seen.exactlyOnce(t, 300)
		return log.proofs
	}
	if n := run(0); n != 0 {
		t.Errorf("%d consistency proofs for one batch of 300 entries", n)
	}
	if n := run(8 << 10); n < 25 {
		t.Errorf("%d consistency proofs for 300 entries in batches of 8 KiB (answers of 10)", n)
	}
}
