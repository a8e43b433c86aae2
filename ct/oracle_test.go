package ct_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/testing/ctlog"
)

// certspotterEnv names certspotter (software.sslmate.com/src/certspotter
// v0.24.2), built outside Rampart's module into the peer cache by .ci/run.
const certspotterEnv = "RAMPART_TEST_CERTSPOTTER"

// TestCertspotterAgrees runs an independent monitor, certspotter,
// against the same real log and asks it for the watched names: it must
// report the same entries, with the same public-key (SPKI) and TBS
// hashes, as Rampart's monitor.
func TestCertspotterAgrees(t *testing.T) {
	bin := os.Getenv(certspotterEnv)
	if bin == "" {
		t.Skipf("%s is not set (build certspotter v0.24.2 in a scratch module: go get software.sslmate.com/src/certspotter/cmd/certspotter@v0.24.2 && go build -o DIR/certspotter software.sslmate.com/src/certspotter/cmd/certspotter)", certspotterEnv)
	}
	// certspotter waits five minutes before it reads a partial data
	// tile, as the static-ct-api lets monitors do: fill one.
	w := newPKI(t)
	w.log = ctlog.StartWith(t, ctlog.Options{}, w.good.Cert, w.rogue.Cert)
	logs, err := ct.ParseLogList(w.log.LogList(t))
	if err != nil {
		t.Fatal(err)
	}
	w.logs = logs
	w.submit(t, w.goodInt, w.leafKey, false, "api.pay.example")
	w.submit(t, w.goodInt, w.backupKey, false, "api.pay.example", "www.api.pay.example")
	w.submit(t, w.rogue, nil, true, "api.pay.example")
	w.submit(t, w.rogue, nil, false, "*.pay.example")
	w.submit(t, w.goodInt, nil, false, "shop.pay.example", "checkout.shop.pay.example")
	w.submit(t, w.goodInt, nil, false, "blog.pay.example")
	w.submit(t, w.rogue, nil, false, "www.unrelated.example", "pay.example.unrelated.example")
	w.submit(t, w.goodInt, w.leafKey, true, "pay.example")
	const size = 256
	var wg sync.WaitGroup
	for i := range size - 10 {
		wg.Go(func() { w.submit(t, w.goodInt, nil, false, fmt.Sprintf("filler%d.example.org", i)) })
		if i%16 == 15 {
			wg.Wait()
		}
	}
	wg.Wait()
	w.log.WaitSize(t, size)

	// Rampart: the policy's domains and pay.example's subtree.
	type seen struct {
		index     int64
		spki, tbs string
	}
	var ours []seen
	sink := ct.SinkFunc(func(_ context.Context, f *ct.Finding) error {
		d := f.Verdict.SPKI.Digest()
		ours = append(ours, seen{f.Index, hex.EncodeToString(d[:]), hex.EncodeToString(f.Certificate.TBSHash[:])})
		return nil
	})
	m := &ct.Monitor{Logs: w.logs, Judge: newJudge(t, w.policy, []string{"pay.example"}, nil), Sink: sink, Start: ct.Start{Beginning: true}}
	if err := m.Once(context.Background()); err != nil {
		t.Fatal(err)
	}

	// certspotter: the same names, from the beginning of the same log,
	// reporting through its hook script.
	dir := t.TempDir()
	out := filepath.Join(dir, "found")
	script := filepath.Join(dir, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$EVENT\" = discovered_cert ] && echo \"$ENTRY_INDEX $PUBKEY_SHA256 $TBS_SHA256\" >> "+out+"\nexit 0\n"), 0o700)
	os.WriteFile(filepath.Join(dir, "watchlist"), []byte(".pay.example\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "logs.json"), w.log.LogList(t), 0o600)
	cmd := exec.Command(bin, "-logs", filepath.Join(dir, "logs.json"), "-watchlist", filepath.Join(dir, "watchlist"),
		"-state_dir", filepath.Join(dir, "state"), "-script", script, "-no_save", "-verbose")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var theirs []seen
	deadline := time.Now().Add(60 * time.Second)
	for len(theirs) < len(ours) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		theirs = theirs[:0]
		f, err := os.Open(out)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var s seen
			fields := strings.Fields(sc.Text())
			if len(fields) == 3 {
				if _, err := fmt.Sscan(fields[0], &s.index); err == nil {
					s.spki, s.tbs = fields[1], fields[2]
					theirs = append(theirs, s)
				}
			}
		}
		f.Close()
	}
	byIndex := func(a, b seen) int { return int(a.index - b.index) }
	slices.SortFunc(ours, byIndex)
	slices.SortFunc(theirs, byIndex)
	if len(ours) != 9 {
		t.Errorf("Rampart reported %d entries, want 9 (all but the unrelated one)", len(ours))
	}
	if !slices.Equal(ours, theirs) {
		t.Errorf("the monitors disagree:\nRampart     %v\ncertspotter %v\ncertspotter said:\n%s", ours, theirs, stderr.String())
	}
}
