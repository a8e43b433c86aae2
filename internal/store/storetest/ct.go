package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/rampartsec/rampart/ct"
	"github.com/rampartsec/rampart/internal/store"
)

var ctTests = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"CT/LeasesAndPositions", testCTLeases},
	{"CT/SightingsAndAlerts", testCTSightings},
	{"CT/OneAlertAcrossInstances", testCTOneAlert},
	{"CT/AlertDelivery", testCTDelivery},
}

var ctT0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func testCTLeases(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.CT()
	if _, ok, err := s.Position(ctx, "log-a"); ok || err != nil {
		t.Fatalf("a log never seen: %v, %v", ok, err)
	}
	claim := func(owner string, at time.Time) bool {
		ok, err := s.Claim(ctx, "log-a", owner, at, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim("a", ctT0) || !claim("a", ctT0.Add(30*time.Second)) {
		t.Fatal("a cannot take and renew the lease")
	}
	if claim("b", ctT0.Add(89*time.Second)) {
		t.Fatal("b took a lease that runs until 90 s")
	}
	if _, ok, _ := s.Position(ctx, "log-a"); ok {
		t.Error("a claim alone made a position")
	}
	p := ct.Position{Head: ct.Head{Size: 1000, Root: tlog.Hash{1, 2, 3}, Time: ctT0.Add(1500 * time.Microsecond)}, Next: 999,
		Frontier: []tlog.Hash{{4}, {5}, {6}}}
	if err := s.SavePosition(ctx, "log-a", "a", ctT0.Add(time.Minute), p); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Position(ctx, "log-a")
	if err != nil || !ok || got.Head.Size != 1000 || got.Head.Root != p.Head.Root || got.Next != 999 || len(got.Frontier) != 3 || got.Frontier[2] != (tlog.Hash{6}) ||
		!got.Head.Time.Equal(ctT0.Add(time.Millisecond)) {
		t.Errorf("position read back %+v, %v, %v", got, ok, err)
	}
	// The lease lapses: b takes the log; a can no longer write.
	if !claim("b", ctT0.Add(91*time.Second)) {
		t.Fatal("b cannot take a lapsed lease")
	}
	if err := s.SavePosition(ctx, "log-a", "a", ctT0.Add(92*time.Second), ct.Position{Next: 5}); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("a saved under b's lease: %v", err)
	}
	if err := s.SavePosition(ctx, "log-a", "b", ctT0.Add(92*time.Second), ct.Position{Next: 5}); err != nil {
		t.Errorf("b: %v", err)
	}
	if err := s.SavePosition(ctx, "log-a", "b", ctT0.Add(3*time.Minute), ct.Position{Next: 6}); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("b saved after its lease ran out: %v", err)
	}
	if got, _, _ := s.Position(ctx, "log-a"); got.Next != 5 || got.Frontier != nil {
		t.Errorf("position %+v", got)
	}
	if o := e.second(t); o != nil {
		if ok, _ := o.CT().Claim(ctx, "log-a", "c", ctT0.Add(92*time.Second), time.Minute); ok {
			t.Error("another handle took b's lease")
		}
		if got, _, _ := o.CT().Position(ctx, "log-a"); got.Next != 5 {
			t.Errorf("another handle reads %+v", got)
		}
	}
}

func tbs(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])
}

func sighting(log string, index int64, cert string, class ct.Class, at time.Time) store.CTSighting {
	return store.CTSighting{LogID: log, Log: "Log " + log, Index: index, Logged: at.Add(-time.Minute), Seen: at, TBSHash: tbs(cert),
		Class: class, Alert: class.Severity() >= ct.Rollover.Severity(), SPKI: "sha256/" + cert, Issuer: "CN=CA",
		Names: []string{"api.pay.example"}, Finding: []byte(fmt.Sprintf(`{"class":%q,"index":%d}`, class, index))}
}

func testCTSightings(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.CT()
	add := func(sg store.CTSighting) *store.CTAlert {
		t.Helper()
		a, err := s.AddSighting(ctx, sg)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	rogue := sighting("log-a", 7, "rogue", ct.Rogue, ctT0)
	a := add(rogue)
	if a == nil || a.ID == 0 || a.Class != ct.Rogue || a.TBSHash != tbs("rogue") || string(a.Payload) != string(rogue.Finding) {
		t.Fatalf("first sighting of a rogue certificate: alert %+v", a)
	}
	if add(rogue) != nil {
		t.Error("the same entry again raised an alert")
	}
	if add(sighting("log-a", 8, "rogue", ct.Rogue, ctT0.Add(time.Second))) != nil || add(sighting("log-b", 7, "rogue", ct.Rogue, ctT0.Add(2*time.Second))) != nil {
		t.Error("the certificate (a precertificate's, another log's) raised a second alert")
	}
	if add(sighting("log-a", 9, "ours", ct.Expected, ctT0)) != nil {
		t.Error("an expected certificate raised an alert")
	}
	if a := add(sighting("log-a", 10, "renewal", ct.Rollover, ctT0)); a == nil || a.Class != ct.Rollover {
		t.Errorf("a rollover: %+v", a)
	}
	if a := add(sighting("log-b", 11, "renewal", ct.Rogue, ctT0.Add(time.Second))); a == nil || a.Class != ct.Rogue {
		t.Errorf("an escalation to rogue: %+v", a)
	}
	if add(sighting("log-b", 12, "renewal", ct.Rollover, ctT0.Add(2*time.Second))) != nil {
		t.Error("a milder sighting raised an alert")
	}
	certs, err := s.Certificates(ctx, store.CTFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 3 {
		t.Fatalf("%d certificates", len(certs))
	}
	// Worst class first, then the most recently first seen.
	if certs[0].TBSHash != tbs("rogue") && certs[0].TBSHash != tbs("renewal") || certs[2].TBSHash != tbs("ours") {
		t.Errorf("order %s %s %s", certs[0].Class, certs[1].Class, certs[2].Class)
	}
	for _, c := range certs {
		switch c.TBSHash {
		case tbs("rogue"):
			if c.Sightings != 3 || !c.FirstSeen.Equal(ctT0) || !c.LastSeen.Equal(ctT0.Add(2*time.Second)) || c.Class != ct.Rogue || c.Names[0] != "api.pay.example" {
				t.Errorf("rogue %+v", c)
			}
		case tbs("renewal"):
			if c.Class != ct.Rogue || c.Sightings != 3 || string(c.Finding) != `{"class":"rogue","index":11}` {
				t.Errorf("renewal %+v (%s)", c, c.Finding)
			}
		}
	}
	if got, _ := s.Certificates(ctx, store.CTFilter{Class: ct.Expected}); len(got) != 1 || got[0].TBSHash != tbs("ours") {
		t.Errorf("filter by class: %+v", got)
	}
	if got, _ := s.Certificates(ctx, store.CTFilter{SPKI: "sha256/rogue"}); len(got) != 1 {
		t.Errorf("filter by key: %+v", got)
	}
	if got, _ := s.Certificates(ctx, store.CTFilter{Limit: 1}); len(got) != 1 {
		t.Errorf("limit: %d", len(got))
	}
	for name, bad := range map[string]store.CTSighting{
		"short TBS hash":  func() store.CTSighting { b := rogue; b.TBSHash = "abc"; return b }(),
		"upper-case hash": func() store.CTSighting { b := rogue; b.TBSHash = "AB" + b.TBSHash[2:]; return b }(),
		"unknown class":   func() store.CTSighting { b := rogue; b.Class = "odd"; return b }(),
		"no log":          func() store.CTSighting { b := rogue; b.LogID = ""; return b }(),
		"NUL in a name":   func() store.CTSighting { b := rogue; b.Index = 99; b.Names = []string{"a\x00b"}; return b }(),
		"no time":         func() store.CTSighting { b := rogue; b.Seen = time.Time{}; return b }(),
	} {
		if _, err := s.AddSighting(ctx, bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Many instances see one certificate's entries at once: one alert.
func testCTOneAlert(t *testing.T, e *env) {
	handles := []store.Store{e.Store}
	if o := e.second(t); o != nil {
		handles = append(handles, o, e.second(t))
	}
	var alerts atomic.Int32
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			// Each entry is seen by two instances.
			sg := sighting(fmt.Sprint("log-", i%3), int64(i/2), "rogue", ct.Rogue, ctT0.Add(time.Duration(i)*time.Millisecond))
			a, err := handles[i%len(handles)].CT().AddSighting(context.Background(), sg)
			if err != nil {
				t.Error(err)
			}
			if a != nil {
				alerts.Add(1)
			}
		})
	}
	wg.Wait()
	if n := alerts.Load(); n != 1 {
		t.Errorf("%d alerts for one certificate", n)
	}
	certs, _ := e.CT().Certificates(context.Background(), store.CTFilter{})
	if len(certs) != 1 || certs[0].Sightings > 24 || certs[0].Sightings < 12 {
		t.Errorf("certificates %+v", certs)
	}
}

func testCTDelivery(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.CT()
	for i, name := range []string{"one", "two", "three"} {
		if a, err := s.AddSighting(ctx, sighting("log-a", int64(i), name, ct.Rogue, ctT0)); a == nil || err != nil {
			t.Fatal(a, err)
		}
	}
	due, err := s.DueAlerts(ctx, "a", ctT0, time.Minute, 2)
	if err != nil || len(due) != 2 || due[0].ID >= due[1].ID || due[0].TBSHash != tbs("one") {
		t.Fatalf("due: %+v, %v", due, err)
	}
	other := s
	if o := e.second(t); o != nil {
		other = o.CT()
	}
	more, err := other.DueAlerts(ctx, "b", ctT0.Add(time.Second), time.Minute, 10)
	if err != nil || len(more) != 1 || more[0].TBSHash != tbs("three") {
		t.Fatalf("b's due alerts while a holds two: %+v, %v", more, err)
	}
	if err := s.AlertDelivered(ctx, due[0].ID, ctT0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.AlertFailed(ctx, due[1].ID, ctT0.Add(10*time.Second), "webhook: 503 Service Unavailable"); err != nil {
		t.Fatal(err)
	}
	if err := other.AlertFailed(ctx, more[0].ID, time.Time{}, "gave up"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DueAlerts(ctx, "a", ctT0.Add(9*time.Second), time.Minute, 10); len(got) != 0 {
		t.Errorf("due before the retry time: %+v", got)
	}
	got, err := s.DueAlerts(ctx, "c", ctT0.Add(10*time.Second), time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != due[1].ID || got[0].Attempts != 1 || got[0].LastError != "webhook: 503 Service Unavailable" {
		t.Errorf("the retry: %+v, %v", got, err)
	}
	// A lease that lapses hands the alert to another owner.
	if got, _ := s.DueAlerts(ctx, "d", ctT0.Add(71*time.Second), time.Minute, 10); len(got) != 1 || got[0].ID != due[1].ID {
		t.Errorf("after c's lease: %+v", got)
	}
}
