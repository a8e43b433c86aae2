package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
)

// moreTests specify the group filter, Deliveries, Usage and Settings.
var moreTests = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"Filter/GroupID", testGroupID},
	{"Deliveries/MostRecentFirstWithinFilter", testDeliveries},
	{"Usage/GrowsWithReports", testUsage},
	{"Settings/InitOnceThenGet", testSettings},
	{"Settings/ConcurrentInitsAgree", testSettingsConcurrent},
}

func testGroupID(t *testing.T, e *env) {
	filterFixture(t, e)
	var c store.ReportGroup
	for _, g := range groups(t, e, store.ReportFilter{}) {
		if g.Content.Digest == digest("c") {
			c = g
		}
	}
	if c.ID == 0 {
		t.Fatal("no group c")
	}
	f := store.ReportFilter{GroupID: c.ID}
	if got := digests(groups(t, e, f)); !reflect.DeepEqual(got, names("c")) {
		t.Errorf("Groups(GroupID) = %v, want c only", got)
	}
	if n := total(t, e, f); n != 3 {
		t.Errorf("Total(GroupID) = %d, want 3", n)
	}
	if ts := count(t, e, f, store.ByDomain); len(ts) != 1 || ts[0].Key != "other.org" || ts[0].Reports != 3 {
		t.Errorf("Count(GroupID, ByDomain) = %+v", ts)
	}
	f.Since = t0.Add(ms(4))
	if n := total(t, e, f); n != 2 {
		t.Errorf("Total(GroupID, Since) = %d, want 2", n)
	}
	if n := total(t, e, store.ReportFilter{GroupID: c.ID + 1000}); n != 0 {
		t.Errorf("Total(unknown GroupID) = %d, want 0", n)
	}
}

func testDeliveries(t *testing.T, e *env) {
	a, b := content("a"), content("b")
	ra := func(at time.Duration, src, ua, dev string) store.Report {
		return store.Report{Received: t0.Add(at), Source: src, UserAgent: ua, Device: dev, Content: a}
	}
	add(t, e, ra(0, "192.0.2.1", "app/1", ""), ra(ms(2), "192.0.2.2", "app/2", "dev-2"), report(b, t0.Add(ms(1)), "x"))
	add(t, e, ra(ms(2), "192.0.2.3", "app/3", ""), ra(ms(5), "2001:db8::1", "app/4", ""))
	gs := groups(t, e, store.ReportFilter{Domain: "example.com"})
	var id int64
	for _, g := range gs {
		if g.Content.Digest == a.Digest {
			id = g.ID
		}
	}
	ds, err := e.Reports().Deliveries(context.Background(), store.ReportFilter{GroupID: id})
	if err != nil {
		t.Fatalf("Deliveries: %v", err)
	}
	want := []store.Delivery{
		{Received: t0.Add(ms(5)), Source: "2001:db8::1", UserAgent: "app/4"},
		{Received: t0.Add(ms(2)), Source: "192.0.2.3", UserAgent: "app/3"}, // the later insert first among equal times
		{Received: t0.Add(ms(2)), Source: "192.0.2.2", UserAgent: "app/2", Device: "dev-2"},
		{Received: t0, Source: "192.0.2.1", UserAgent: "app/1"},
	}
	if !reflect.DeepEqual(ds, want) {
		t.Errorf("Deliveries =\n%+v\nwant\n%+v", ds, want)
	}
	ds, err = e.Reports().Deliveries(context.Background(), store.ReportFilter{GroupID: id, Until: t0.Add(ms(5)), Limit: 2})
	if err != nil || len(ds) != 2 || ds[0].Source != "192.0.2.3" || ds[1].Source != "192.0.2.2" {
		t.Errorf("Deliveries(Until, Limit 2) = %+v, %v", ds, err)
	}
}

// Usage grows as reports are stored; Free is -1 or what is left.
func testUsage(t *testing.T, e *env) {
	ctx := context.Background()
	u0, err := e.Reports().Usage(ctx)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if u0.Bytes < 0 || u0.Free < -1 || u0.Free == 0 {
		t.Errorf("Usage of an empty database = %+v", u0)
	}
	// 256 distinct reports of 8 KiB of incompressible text: 2 MiB.
	var rs []store.Report
	for i := range 256 {
		c := content(fmt.Sprint("big-", i))
		body := make([]byte, 0, 8<<10)
		for h := sha256.Sum256([]byte(c.Digest)); len(body) < 8<<10; h = sha256.Sum256(h[:]) {
			body = append(body, hex.EncodeToString(h[:])...)
		}
		c.Body = body
		rs = append(rs, report(c, t0.Add(ms(i)), ""))
	}
	add(t, e, rs...)
	u1, err := e.Reports().Usage(ctx)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	// Text compresses to about half (hex), so at least 1 MiB.
	if u1.Bytes-u0.Bytes < 1<<20 {
		t.Errorf("Usage grew by %d bytes for 2 MiB of reports (%+v, then %+v)", u1.Bytes-u0.Bytes, u0, u1)
	}
}

func testSettings(t *testing.T, e *env) {
	ctx := context.Background()
	s := e.Settings()
	if _, err := s.Get(ctx, "master_key_check"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an unset name = %v, want ErrNotFound", err)
	}
	if v, err := s.Init(ctx, "master_key_check", "v1:abc"); err != nil || v != "v1:abc" {
		t.Fatalf("first Init = %q, %v", v, err)
	}
	if v, err := s.Init(ctx, "master_key_check", "v1:other"); err != nil || v != "v1:abc" {
		t.Errorf("second Init = %q, %v; want the first value kept", v, err)
	}
	if v, err := s.Get(ctx, "master_key_check"); err != nil || v != "v1:abc" {
		t.Errorf("Get = %q, %v", v, err)
	}
	for _, name := range []string{"", "Upper", "with space", string(make([]byte, 65))} {
		if _, err := s.Init(ctx, name, "x"); err == nil {
			t.Errorf("Init(%q) accepted", name)
		}
	}
	if _, err := s.Init(ctx, "bad_value", "a\x00b"); err == nil {
		t.Error("Init accepted a NUL in the value")
	}
	if e.reopen == nil {
		return
	}
	o := e.reopen(t)
	defer o.Close()
	if v, err := o.Settings().Get(ctx, "master_key_check"); err != nil || v != "v1:abc" {
		t.Errorf("Get through another handle = %q, %v", v, err)
	}
}

// Instances starting together with different values all end with one of
// them: the first to commit.
func testSettingsConcurrent(t *testing.T, e *env) {
	handles := []store.Store{e.Store}
	if e.reopen != nil {
		for range 3 {
			o := e.reopen(t)
			defer o.Close()
			handles = append(handles, o)
		}
	}
	const n = 8
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], errs[i] = handles[i%len(handles)].Settings().Init(context.Background(), "race", fmt.Sprint("value-", i))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Init %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("Init %d returned %q, Init 0 %q: they must agree", i, got[i], got[0])
		}
	}
}
