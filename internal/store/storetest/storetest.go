// Package storetest is the one suite every [store.Store] backend passes,
// so that the backends are proven alike (the SQLite default and
// PostgreSQL).
//
// # Use
//
// A backend's test calls [Run] with an [Opener]:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) (store.Store, func(t *testing.T) store.Store) {
//			path := filepath.Join(t.TempDir(), "rampart.db")
//			reopen := func(t *testing.T) store.Store { return mustOpen(t, path) }
//			return reopen(t), reopen
//		})
//	}
//
// The suite calls the Opener once per subtest, in parallel subtests, and
// closes every store it is given. Data is written at fixed times, so
// failures reproduce; the clock is read only to check that Publish stamps
// a zero PublishedAt.
//
// # What it specifies
//
// Beyond what package store documents, the suite pins down:
//
//   - a report is invalid, and its batch stores nothing, when its Digest
//     is not 64 lowercase hex digits, its Received time is zero, or its
//     Body is over 64 KiB;
//   - within a batch, the first report of a digest supplies the content,
//     so a group's Body is the first one received;
//   - a group's FirstSeen and LastSeen, like its counts, are of the
//     deliveries within the filter; groups with no delivery within it are
//     not listed; ties in recency are broken by ID, ascending;
//   - a client is the Device of a report, or its Source when Device is
//     empty, and a device ID never counts as the same client as an
//     address that happens to be spelled alike;
//   - Count breaks ties in report counts by key in byte order; the Label
//     of ByServedPin is the served subject (the greatest, should a key
//     have several); other dimensions have empty labels;
//   - Limit bounds the rows of Groups and Count; it does not bound the
//     buckets of Timeline (the caller bounds those with Since, Until and
//     the width) nor, of course, what Total and the tallies count;
//   - Timeline refuses an unset Since and a width that is not a positive
//     whole number of milliseconds;
//   - List breaks ties in publication time by name, then version
//     descending; Publish sets a zero PublishedAt to the current time;
//   - GroupID selects one group in every query; Deliveries lists the
//     reports within a filter most recent first, ties by insertion,
//     later first;
//   - Usage grows with the reports stored (by at least half their
//     bodies' size: the backend may compress); Free is -1 (unknown) or
//     positive;
//   - CT: a log's lease is taken or renewed by its owner and refused to
//     others until it lapses; SavePosition writes only under the lease,
//     and a position (head, next entry, compact range) reads back with
//     millisecond times; one sighting per (log, index); an alert for the
//     first sighting of a certificate of an alerting class and for an
//     escalation, never for a repeat, a milder class or an expected one,
//     one alert however many handles add sightings at once;
//     certificates list worst class first, then newest; DueAlerts leases
//     alerts oldest first, hands another owner only those not leased,
//     and a failed alert comes due again at its next time (never, when
//     zero);
//   - Settings.Init keeps the first value stored under a name, through
//     every handle, concurrent calls included; names are 1 to 64 of a-z,
//     0-9, _ and .; values are text without NUL.
//
// Of the auth stores (APIKeys, SigningKeys, RevokedTokens), beyond what
// packages apikey and token document:
//
//   - CreateClient and CreateKey set a zero CreatedAt to the current
//     time, in milliseconds, in the struct they are given; times read
//     back in UTC with millisecond precision, TokenLifetime too;
//   - a client needs an ID; a key an ID, a client and a hash, and may
//     not be created revoked or replaced; scopes are non-empty and
//     contain no white space; text fields are valid UTF-8 without NUL;
//     refused input stores nothing;
//   - CreateKey fails with ErrNotFound, naming it, for an unknown client,
//     and with ErrConflict for a taken ID or a stored hash; no error
//     message shows a hash;
//   - Clients lists by ID in byte order; Keys breaks ties in CreatedAt by
//     insertion order, and fails with ErrNotFound for an unknown client
//     (not for a client without keys); empty scopes read back nil;
//   - RotateKey fails with ErrNotFound for an unknown key, and when the
//     new key is of another client or cannot be stored, changing
//     nothing; a zero graceUntil stores no grace; a replaced key can
//     still be revoked;
//   - Generation moves with every successful RevokeKey, RotateKey and
//     SetClientDisabled (even one that sets the state the client had),
//     never with a refused one nor with TouchKeys, and is the same
//     through every handle on the database;
//   - TouchKeys ignores zero times and unknown IDs;
//   - RotateSigningKeys refuses a key whose ID is stored, whose State is
//     not Next or unset, or which lacks a public or sealed key; it sets a
//     zero CreatedAt to now; concurrent rotations all succeed, one after
//     the other;
//   - RevokeToken refuses an empty jti and a zero expiry; revoking again
//     keeps the later expiry; PruneRevoked keeps tokens expiring at t.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	pinreport "github.com/rampartsec/rampart/pin/report"
)

// An Opener opens a store on a new, empty database for one subtest.
// reopen, when not nil, opens that same database again, so the suite can
// check that data survives Close (it calls reopen after closing the first
// store) and that several instances or processes sharing the database
// see each other's changes (it calls reopen while the first store is
// open, and uses both). A backend that cannot (an in-memory fake) returns
// nil: the durability and shared-generation subtests are skipped, and
// the concurrency subtests use one handle. The suite closes every store
// it gets; the Opener cleans up the rest (files, databases) with
// t.Cleanup.
type Opener func(t *testing.T) (s store.Store, reopen func(t *testing.T) store.Store)

// Run runs the suite against the backend opened by open.
func Run(t *testing.T, open Opener) {
	for _, tc := range slices.Concat(tests, moreTests, authTests, ctTests) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, reopen := open(t)
			t.Cleanup(func() { s.Close() })
			tc.fn(t, &env{Store: s, reopen: reopen})
		})
	}
}

type env struct {
	store.Store
	reopen func(t *testing.T) store.Store
}

var tests = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"Ping", testPing},
	{"AddReports/EmptyBatchIsNoOp", testEmptyBatch},
	{"AddReports/CancelledContextStoresNothing", testCancelled},
	{"AddReports/InvalidReportStoresNothing", testInvalid},
	{"AddReports/NotTextRefused", testNotText},
	{"AddReports/ContentRoundTrips", testContentRoundTrips},
	{"AddReports/IdenticalDigestsAggregate", testAggregate},
	{"AddReports/ClientsAreDevicesElseSources", testClients},
	{"AddReports/FirstAndLastSeen", testFirstLastSeen},
	{"AddReports/BodyKeptAsFirstReceived", testBodyFirst},
	{"Prune/OldReportsAndEmptyGroups", testPrune},
	{"Prune/ManyBatches", testPruneMany},
	{"Filter/EachField", testFilterFields},
	{"Filter/SinceInclusiveUntilExclusive", testSinceUntil},
	{"Filter/FieldsCombine", testFilterCombined},
	{"Filter/LimitDefaultsTo100", testLimit},
	{"Groups/CountsWithinFilter", testGroupsWithinFilter},
	{"Groups/MostRecentlySeenFirst", testGroupsOrder},
	{"Count/Dimensions", testCountDimensions},
	{"Count/MostReportsFirstTiesByKey", testCountOrder},
	{"Count/WithinFilter", testCountWithinFilter},
	{"Count/UnknownDimensionFails", testCountUnknown},
	{"Timeline/BucketsFromSinceEmptyOmitted", testTimeline},
	{"Timeline/WithinFilter", testTimelineFilter},
	{"Timeline/NotBoundedByLimit", testTimelineUnlimited},
	{"Timeline/RefusesBadArguments", testTimelineBad},
	{"Bundles/PublishThenLatest", testPublishLatest},
	{"Bundles/StaleVersionRefused", testStale},
	{"Bundles/ConcurrentPublishOneWins", testConcurrentPublish},
	{"Bundles/LatestOfUnknownNameNotFound", testLatestUnknown},
	{"Bundles/ListNewestFirstByNameWithLimit", testList},
	{"Bundles/TimesMillisecondsUTC", testBundleTimes},
	{"Durability/ReopenKeepsData", testReopen},
	{"Concurrency/AddReportsWhileCounting", testConcurrency},
}

// t0 is when the suite's reports arrive. Fixed, so that failures
// reproduce; a whole minute, so that timeline buckets are easy to read.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// digest returns a valid digest named by s.
func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// content returns a full ReportContent for the digest named name.
func content(name string) store.ReportContent {
	return store.ReportContent{
		Digest:            digest(name),
		Format:            "rfc7469",
		Hostname:          "api.example.com",
		Port:              443,
		NotedHostname:     "example.com",
		IncludeSubdomains: true,
		Mode:              "enforce",
		Reason:            "pin-mismatch",
		ServedPin:         "sha256/" + name + "=",
		ServedSubject:     "CN=" + name,
		AppBundleID:       "com.example.pay",
		AppVersion:        "1.2.3",
		AppPlatform:       "ios",
		Body:              []byte(`{"hostname":"api.example.com","name":"` + name + `"}`),
	}
}

func report(c store.ReportContent, at time.Time, device string) store.Report {
	return store.Report{Received: at, Source: "192.0.2.1", UserAgent: "test/1", Device: device, Content: c}
}

func add(t *testing.T, s store.Store, rs ...store.Report) {
	t.Helper()
	if err := s.Reports().AddReports(context.Background(), rs); err != nil {
		t.Fatalf("AddReports: %v", err)
	}
}

func total(t *testing.T, s store.Store, f store.ReportFilter) int64 {
	t.Helper()
	n, err := s.Reports().Total(context.Background(), f)
	if err != nil {
		t.Fatalf("Total: %v", err)
	}
	return n
}

func groups(t *testing.T, s store.Store, f store.ReportFilter) []store.ReportGroup {
	t.Helper()
	gs, err := s.Reports().Groups(context.Background(), f)
	if err != nil {
		t.Fatalf("Groups: %v", err)
	}
	return gs
}

func count(t *testing.T, s store.Store, f store.ReportFilter, by store.Dimension) []store.Tally {
	t.Helper()
	ts, err := s.Reports().Count(context.Background(), f, by)
	if err != nil {
		t.Fatalf("Count(%s): %v", by, err)
	}
	return ts
}

// digests returns the digests of gs, in order.
func digests(gs []store.ReportGroup) []string {
	out := []string{}
	for _, g := range gs {
		out = append(out, g.Content.Digest)
	}
	return out
}

func names(ns ...string) []string {
	out := []string{}
	for _, n := range ns {
		out = append(out, digest(n))
	}
	return out
}

func testPing(t *testing.T, e *env) {
	if err := e.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testEmptyBatch(t *testing.T, e *env) {
	if err := e.Reports().AddReports(context.Background(), nil); err != nil {
		t.Fatalf("AddReports(nil): %v", err)
	}
	if n := total(t, e, store.ReportFilter{}); n != 0 {
		t.Fatalf("Total = %d after an empty batch, want 0", n)
	}
}

func testCancelled(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rs := []store.Report{report(content("a"), t0, "d1"), report(content("b"), t0, "d2")}
	err := e.Reports().AddReports(ctx, rs)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("AddReports with a cancelled context = %v, want context.Canceled", err)
	}
	if n := total(t, e, store.ReportFilter{}); n != 0 {
		t.Fatalf("Total = %d after a cancelled batch, want 0", n)
	}
	if gs := groups(t, e, store.ReportFilter{}); len(gs) != 0 {
		t.Fatalf("Groups = %d groups after a cancelled batch, want none", len(gs))
	}
}

func testInvalid(t *testing.T, e *env) {
	upper := content("x")
	upper.Digest = strings.ToUpper(upper.Digest)
	short := content("x")
	short.Digest = short.Digest[:63]
	big := content("x")
	big.Body = make([]byte, pinreport.MaxSize+1)
	spaced := content("x")
	spaced.KnownCertPins = []string{"cert-sha256:00 cert-sha256:11"}
	empty := content("x")
	empty.KnownCertPins = []string{""}
	for _, tc := range []struct {
		name string
		bad  store.Report
	}{
		{"EmptyDigest", report(store.ReportContent{Format: "rfc7469"}, t0, "d")},
		{"UppercaseDigest", report(upper, t0, "d")},
		{"ShortDigest", report(short, t0, "d")},
		{"ZeroReceived", report(content("x"), time.Time{}, "d")},
		{"BodyOver64KiB", report(big, t0, "d")},
		{"CertPinWithSpace", report(spaced, t0, "d")},
		{"EmptyCertPin", report(empty, t0, "d")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The bad report is last, so that a backend writing as it
			// goes would have written the good ones.
			rs := []store.Report{report(content("good1"), t0, "d1"), report(content("good2"), t0, "d2"), tc.bad}
			if err := e.Reports().AddReports(context.Background(), rs); err == nil {
				t.Fatal("AddReports accepted a batch with an invalid report")
			}
			if n := total(t, e, store.ReportFilter{}); n != 0 {
				t.Fatalf("Total = %d after a refused batch, want 0", n)
			}
			if gs := groups(t, e, store.ReportFilter{}); len(gs) != 0 {
				t.Fatalf("Groups = %v after a refused batch, want none", digests(gs))
			}
		})
	}
	// Exactly 64 KiB is allowed.
	ok := content("max")
	ok.Body = make([]byte, pinreport.MaxSize)
	add(t, e, report(ok, t0, "d"))
}

func testContentRoundTrips(t *testing.T, e *env) {
	a := content("a")
	a.KnownCertPins = []string{"cert-sha256:" + strings.Repeat("ab", 32), "cert-sha256:" + strings.Repeat("01", 32)}
	b := content("b")
	b.Format = "trustkit"
	b.Port = 8443
	b.IncludeSubdomains = false
	b.Mode = "report-only"
	b.Reason = ""
	b.Body = []byte{0xff, 0x00, '{', '}'} // not UTF-8: kept byte for byte
	add(t, e, report(a, t0, "d1"), report(b, t0.Add(ms(1)), "d2"))
	gs := groups(t, e, store.ReportFilter{})
	if len(gs) != 2 {
		t.Fatalf("Groups = %d groups, want 2", len(gs))
	}
	got := map[string]store.ReportGroup{}
	for _, g := range gs {
		if g.ID == 0 {
			t.Errorf("group %s has ID 0", g.Content.Digest)
		}
		got[g.Content.Digest] = g
	}
	if gs[0].ID == gs[1].ID {
		t.Errorf("two groups share ID %d", gs[0].ID)
	}
	for _, want := range []store.ReportContent{a, b} {
		if g := got[want.Digest].Content; !reflect.DeepEqual(g, want) {
			t.Errorf("content round trip:\n got %+v\nwant %+v", g, want)
		}
	}
}

func testAggregate(t *testing.T, e *env) {
	a := content("a")
	var rs []store.Report
	for i, dev := range []string{"d1", "d1", "d2", "d3", "d2"} {
		rs = append(rs, report(a, t0.Add(ms(i)), dev))
	}
	add(t, e, rs...)
	add(t, e, report(a, t0.Add(ms(10)), "d4"), report(content("b"), t0, "d1"))
	gs := groups(t, e, store.ReportFilter{Domain: "example.com"})
	if len(gs) != 2 {
		t.Fatalf("Groups = %v, want 2 groups", digests(gs))
	}
	var ga store.ReportGroup
	for _, g := range gs {
		if g.Content.Digest == a.Digest {
			ga = g
		}
	}
	if ga.Reports != 6 || ga.Clients != 4 {
		t.Errorf("group a: Reports = %d, Clients = %d; want 6 deliveries from 4 devices", ga.Reports, ga.Clients)
	}
	if n := total(t, e, store.ReportFilter{}); n != 7 {
		t.Errorf("Total = %d, want 7", n)
	}
}

func testClients(t *testing.T, e *env) {
	a := content("a")
	r := func(source, device string) store.Report {
		rep := report(a, t0, device)
		rep.Source = source
		return rep
	}
	add(t, e,
		r("192.0.2.1", ""), r("192.0.2.1", ""), // one client by address
		r("192.0.2.2", ""),          // another
		r("192.0.2.1", "dev-1"),     // a device behind the first address: another client
		r("192.0.2.9", "dev-1"),     // the same device elsewhere: not another
		r("192.0.2.3", "192.0.2.2"), // a device ID spelled like an address is still a device
	)
	gs := groups(t, e, store.ReportFilter{})
	if len(gs) != 1 {
		t.Fatalf("Groups = %d groups, want 1", len(gs))
	}
	if gs[0].Reports != 6 || gs[0].Clients != 4 {
		t.Errorf("Reports = %d, Clients = %d; want 6, 4", gs[0].Reports, gs[0].Clients)
	}
	tl := count(t, e, store.ReportFilter{}, store.ByDomain)
	if len(tl) != 1 || tl[0].Clients != 4 {
		t.Errorf("Count(ByDomain) = %+v, want 4 clients", tl)
	}
}

func testFirstLastSeen(t *testing.T, e *env) {
	a := content("a")
	// Out of order within and across batches.
	add(t, e, report(a, t0.Add(5*time.Second), "d"), report(a, t0.Add(2*time.Second), "d"))
	add(t, e, report(a, t0.Add(9*time.Second), "d"), report(a, t0.Add(1*time.Second), "d"))
	add(t, e, report(a, t0.Add(3*time.Second), "d"))
	gs := groups(t, e, store.ReportFilter{})
	if len(gs) != 1 {
		t.Fatalf("Groups = %d groups, want 1", len(gs))
	}
	g := gs[0]
	if !g.FirstSeen.Equal(t0.Add(time.Second)) || !g.LastSeen.Equal(t0.Add(9*time.Second)) {
		t.Errorf("FirstSeen, LastSeen = %v, %v; want %v, %v", g.FirstSeen, g.LastSeen, t0.Add(time.Second), t0.Add(9*time.Second))
	}
	if g.FirstSeen.Location() != time.UTC || g.LastSeen.Location() != time.UTC {
		t.Errorf("times not in UTC: %v, %v", g.FirstSeen.Location(), g.LastSeen.Location())
	}
	// Within a filter, they are of the deliveries within it.
	gs = groups(t, e, store.ReportFilter{Since: t0.Add(2 * time.Second), Until: t0.Add(5 * time.Second)})
	if len(gs) != 1 {
		t.Fatalf("Groups(filtered) = %d groups, want 1", len(gs))
	}
	g = gs[0]
	if !g.FirstSeen.Equal(t0.Add(2*time.Second)) || !g.LastSeen.Equal(t0.Add(3*time.Second)) || g.Reports != 2 {
		t.Errorf("filtered: FirstSeen, LastSeen, Reports = %v, %v, %d; want %v, %v, 2",
			g.FirstSeen, g.LastSeen, g.Reports, t0.Add(2*time.Second), t0.Add(3*time.Second))
	}
}

func testBodyFirst(t *testing.T, e *env) {
	first := content("a")
	first.Body = []byte(`{"n":1}`)
	second := first
	second.Body = []byte(`{"n":2}`)
	third := first
	third.Body = []byte(`{"n":3}`)
	// Within one batch the first in order wins, even if received later.
	add(t, e, report(first, t0.Add(time.Second), "d"), report(second, t0, "d"))
	add(t, e, report(third, t0.Add(-time.Second), "d"))
	gs := groups(t, e, store.ReportFilter{})
	if len(gs) != 1 {
		t.Fatalf("Groups = %d groups, want 1", len(gs))
	}
	if string(gs[0].Content.Body) != `{"n":1}` {
		t.Errorf("Body = %s, want the first received, {\"n\":1}", gs[0].Content.Body)
	}
	if gs[0].Reports != 3 {
		t.Errorf("Reports = %d, want 3", gs[0].Reports)
	}
}

// filterFixture stores groups that differ in one field each from a:
//
//	a: example.com / api.example.com, enforce, pin a, 1.2.3    x2
//	b: noted "", hostname example.com                          x1
//	c: other.org / www.other.org                               x3
//	d: report-only                                             x1
//	f: app version 2.0.0                                       x1
func filterFixture(t *testing.T, e *env) {
	a := content("a")
	b := content("b")
	b.NotedHostname, b.Hostname = "", "example.com"
	c := content("c")
	c.NotedHostname, c.Hostname = "other.org", "www.other.org"
	d := content("d")
	d.Mode = "report-only"
	f := content("f")
	f.AppVersion = "2.0.0"
	add(t, e,
		report(a, t0, "1"), report(a, t0.Add(ms(1)), "2"),
		report(b, t0.Add(ms(2)), "1"),
		report(c, t0.Add(ms(3)), "1"), report(c, t0.Add(ms(4)), "1"), report(c, t0.Add(ms(5)), "1"),
		report(d, t0.Add(ms(6)), "1"),
		report(f, t0.Add(ms(7)), "1"),
	)
}

func testFilterFields(t *testing.T, e *env) {
	filterFixture(t, e)
	for _, tc := range []struct {
		name   string
		f      store.ReportFilter
		groups []string // in order: most recently seen first
		total  int64
	}{
		{"None", store.ReportFilter{}, names("f", "d", "c", "b", "a"), 8},
		{"DomainMatchesNotedHostname", store.ReportFilter{Domain: "other.org"}, names("c"), 3},
		{"DomainMatchesHostname", store.ReportFilter{Domain: "www.other.org"}, names("c"), 3},
		{"DomainMatchesEither", store.ReportFilter{Domain: "example.com"}, names("f", "d", "b", "a"), 5},
		{"DomainIsExact", store.ReportFilter{Domain: "example"}, names(), 0},
		{"Mode", store.ReportFilter{Mode: "report-only"}, names("d"), 1},
		{"ServedPin", store.ReportFilter{ServedPin: "sha256/c="}, names("c"), 3},
		{"AppVersion", store.ReportFilter{AppVersion: "2.0.0"}, names("f"), 1},
		{"Since", store.ReportFilter{Since: t0.Add(ms(5))}, names("f", "d", "c"), 3},
		{"Until", store.ReportFilter{Until: t0.Add(ms(2))}, names("a"), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := digests(groups(t, e, tc.f)); !reflect.DeepEqual(got, tc.groups) {
				t.Errorf("Groups = %v, want %v", got, tc.groups)
			}
			if got := total(t, e, tc.f); got != tc.total {
				t.Errorf("Total = %d, want %d", got, tc.total)
			}
			var sum int64
			for _, tl := range count(t, e, tc.f, store.ByMode) {
				sum += tl.Reports
			}
			if sum != tc.total {
				t.Errorf("Count(ByMode) sums to %d, want %d", sum, tc.total)
			}
			if tc.f.Since.IsZero() {
				tc.f.Since = t0
			}
			var tsum int64
			bs, err := e.Reports().Timeline(context.Background(), tc.f, time.Hour)
			if err != nil {
				t.Fatalf("Timeline: %v", err)
			}
			for _, b := range bs {
				tsum += b.Reports
			}
			if tsum != tc.total {
				t.Errorf("Timeline sums to %d, want %d", tsum, tc.total)
			}
		})
	}
}

func testSinceUntil(t *testing.T, e *env) {
	a := content("a")
	add(t, e, report(a, t0, "d"), report(a, t0.Add(ms(1)), "d"), report(a, t0.Add(ms(2)), "d"))
	for _, tc := range []struct {
		since, until time.Time
		want         int64
	}{
		{t0.Add(ms(1)), t0.Add(ms(2)), 1},
		{t0, t0.Add(ms(2)), 2},
		{t0.Add(ms(1)), time.Time{}, 2},
		{time.Time{}, t0, 0},
		{time.Time{}, t0.Add(ms(1)), 1},
		{t0.Add(ms(3)), time.Time{}, 0},
		{t0.Add(ms(1)), t0.Add(ms(1)), 0},
	} {
		f := store.ReportFilter{Since: tc.since, Until: tc.until}
		if got := total(t, e, f); got != tc.want {
			t.Errorf("Total(Since %v, Until %v) = %d, want %d", tc.since, tc.until, got, tc.want)
		}
		var want []string
		if tc.want > 0 {
			want = names("a")
		}
		gs := groups(t, e, f)
		if got := digests(gs); len(got) != len(want) {
			t.Errorf("Groups(Since %v, Until %v) = %v, want %v", tc.since, tc.until, got, want)
		} else if len(gs) == 1 && gs[0].Reports != tc.want {
			t.Errorf("Groups(Since %v, Until %v): Reports = %d, want %d", tc.since, tc.until, gs[0].Reports, tc.want)
		}
	}
}

func testFilterCombined(t *testing.T, e *env) {
	filterFixture(t, e)
	f := store.ReportFilter{Domain: "example.com", Mode: "enforce", AppVersion: "1.2.3", Since: t0.Add(ms(1))}
	if got := digests(groups(t, e, f)); !reflect.DeepEqual(got, names("b", "a")) {
		t.Errorf("Groups = %v, want b, a", got)
	}
	if n := total(t, e, f); n != 2 {
		t.Errorf("Total = %d, want 2 (one of a, one of b)", n)
	}
	f.ServedPin = "sha256/d="
	if n := total(t, e, f); n != 0 {
		t.Errorf("Total with a served pin no group matches together = %d, want 0", n)
	}
}

func testLimit(t *testing.T, e *env) {
	var rs []store.Report
	for i := range 101 {
		c := content(fmt.Sprint(i))
		c.NotedHostname = fmt.Sprintf("h%03d.example", i)
		rs = append(rs, report(c, t0.Add(ms(i)), "d"))
	}
	add(t, e, rs...)
	for _, tc := range []struct{ limit, want int }{{0, 100}, {-1, 100}, {3, 3}, {200, 101}} {
		f := store.ReportFilter{Limit: tc.limit}
		gs := groups(t, e, f)
		if len(gs) != tc.want {
			t.Errorf("Groups(Limit %d) = %d groups, want %d", tc.limit, len(gs), tc.want)
		}
		if len(gs) > 0 && gs[0].Content.Digest != digest("100") {
			t.Errorf("Groups(Limit %d) starts with %s, want the most recent", tc.limit, gs[0].Content.NotedHostname)
		}
		if tl := count(t, e, f, store.ByDomain); len(tl) != tc.want {
			t.Errorf("Count(ByDomain, Limit %d) = %d rows, want %d", tc.limit, len(tl), tc.want)
		}
		if n := total(t, e, f); n != 101 {
			t.Errorf("Total(Limit %d) = %d, want 101: Limit bounds rows, not counts", tc.limit, n)
		}
	}
}

func testGroupsWithinFilter(t *testing.T, e *env) {
	a, b := content("a"), content("b")
	add(t, e,
		report(a, t0, "1"), report(a, t0.Add(time.Minute), "2"), report(a, t0.Add(2*time.Minute), "3"),
		report(b, t0, "1"),
	)
	gs := groups(t, e, store.ReportFilter{Since: t0.Add(time.Minute)})
	if len(gs) != 1 || gs[0].Content.Digest != a.Digest {
		t.Fatalf("Groups = %v, want only a: b has no delivery within the filter", digests(gs))
	}
	if gs[0].Reports != 2 || gs[0].Clients != 2 {
		t.Errorf("Reports, Clients = %d, %d; want 2, 2 (the deliveries within the filter)", gs[0].Reports, gs[0].Clients)
	}
}

func testGroupsOrder(t *testing.T, e *env) {
	// a is stored first, so has the smaller ID.
	add(t, e, report(content("a"), t0, "d"))
	add(t, e,
		report(content("b"), t0.Add(time.Second), "d"),
		report(content("c"), t0.Add(2*time.Second), "d"),
		report(content("a"), t0.Add(3*time.Second), "d"),
		report(content("e"), t0.Add(3*time.Second), "d"),
	)
	// a and e tie on LastSeen: a has the smaller ID.
	if got := digests(groups(t, e, store.ReportFilter{})); !reflect.DeepEqual(got, names("a", "e", "c", "b")) {
		t.Errorf("Groups = %v, want a, e, c, b", got)
	}
	// Before a's last delivery, a was seen least recently.
	if got := digests(groups(t, e, store.ReportFilter{Until: t0.Add(3 * time.Second)})); !reflect.DeepEqual(got, names("c", "b", "a")) {
		t.Errorf("Groups(Until) = %v, want c, b, a", got)
	}
}

func testCountDimensions(t *testing.T, e *env) {
	a := content("a") // example.com, pin a, ios 1.2.3, enforce
	b := content("b")
	b.NotedHostname = "other.org"
	b.Mode = "report-only"
	b.AppPlatform, b.AppVersion = "android", "3.0"
	c := content("c")
	c.ServedPin, c.ServedSubject = a.ServedPin, "CN=z" // same key as a, greater label
	c.AppPlatform = ""
	d := content("d")
	d.AppPlatform, d.AppVersion = "", ""
	d.Mode = ""
	add(t, e,
		report(a, t0, "1"), report(a, t0, "2"), report(a, t0, "2"), report(a, t0, "3"),
		report(b, t0, "1"), report(b, t0, "1"), report(b, t0, "1"),
		report(c, t0, "4"), report(c, t0, "4"),
		report(d, t0, "1"),
	)
	for _, tc := range []struct {
		by   store.Dimension
		want []store.Tally
	}{
		{store.ByDomain, []store.Tally{
			{Key: "example.com", Reports: 7, Clients: 4},
			{Key: "other.org", Reports: 3, Clients: 1},
		}},
		{store.ByServedPin, []store.Tally{
			{Key: "sha256/a=", Label: "CN=z", Reports: 6, Clients: 4},
			{Key: "sha256/b=", Label: "CN=b", Reports: 3, Clients: 1},
			{Key: "sha256/d=", Label: "CN=d", Reports: 1, Clients: 1},
		}},
		{store.ByApp, []store.Tally{
			{Key: "ios 1.2.3", Reports: 4, Clients: 3},
			{Key: "android 3.0", Reports: 3, Clients: 1},
			{Key: "1.2.3", Reports: 2, Clients: 1},
			{Key: "", Reports: 1, Clients: 1},
		}},
		{store.ByMode, []store.Tally{
			{Key: "enforce", Reports: 6, Clients: 4},
			{Key: "report-only", Reports: 3, Clients: 1},
			{Key: "", Reports: 1, Clients: 1},
		}},
	} {
		t.Run(string(tc.by), func(t *testing.T) {
			if got := count(t, e, store.ReportFilter{}, tc.by); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Count(%s) =\n%+v\nwant\n%+v", tc.by, got, tc.want)
			}
		})
	}
}

func testCountOrder(t *testing.T, e *env) {
	var rs []store.Report
	// Stored in an order that is neither by key nor by count, with keys
	// whose byte order differs from common locale orders ("B" < "a").
	for _, k := range []struct {
		domain string
		n      int
	}{{"b.example", 2}, {"a.example", 2}, {"c.example", 5}, {"B.example", 2}, {"_.example", 1}} {
		c := content(k.domain)
		c.NotedHostname = k.domain
		for i := range k.n {
			rs = append(rs, report(c, t0.Add(ms(i)), "d"))
		}
	}
	add(t, e, rs...)
	var got []string
	for _, tl := range count(t, e, store.ReportFilter{}, store.ByDomain) {
		got = append(got, fmt.Sprintf("%s:%d", tl.Key, tl.Reports))
	}
	want := []string{"c.example:5", "B.example:2", "a.example:2", "b.example:2", "_.example:1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Count(ByDomain) = %v, want %v", got, want)
	}
}

func testCountWithinFilter(t *testing.T, e *env) {
	a, b := content("a"), content("b")
	b.NotedHostname, b.Hostname = "other.org", "www.other.org"
	add(t, e,
		report(a, t0.Add(-time.Hour), "1"), report(a, t0.Add(-time.Hour), "2"), report(a, t0.Add(-time.Hour), "3"),
		report(a, t0, "1"),
		report(b, t0, "1"), report(b, t0, "2"),
	)
	want := []store.Tally{{Key: "other.org", Reports: 2, Clients: 2}, {Key: "example.com", Reports: 1, Clients: 1}}
	if got := count(t, e, store.ReportFilter{Since: t0}, store.ByDomain); !reflect.DeepEqual(got, want) {
		t.Errorf("Count(Since) = %+v, want %+v", got, want)
	}
	want = []store.Tally{{Key: "example.com", Reports: 4, Clients: 3}}
	if got := count(t, e, store.ReportFilter{Domain: "api.example.com"}, store.ByDomain); !reflect.DeepEqual(got, want) {
		t.Errorf("Count(Domain) = %+v, want %+v", got, want)
	}
}

func testCountUnknown(t *testing.T, e *env) {
	add(t, e, report(content("a"), t0, "d"))
	if _, err := e.Reports().Count(context.Background(), store.ReportFilter{}, "hostname; DROP TABLE x"); err == nil {
		t.Fatal("Count accepted an unknown dimension")
	}
}

func testTimeline(t *testing.T, e *env) {
	a, b := content("a"), content("b")
	add(t, e,
		report(a, t0.Add(-ms(1)), "d"),                       // before Since
		report(a, t0, "d"),                                   // bucket 0, its first instant
		report(b, t0.Add(time.Minute-ms(1)), "d"),            // bucket 0, its last instant
		report(a, t0.Add(time.Minute), "d"),                  // bucket 1
		report(a, t0.Add(3*time.Minute+ms(1)), "d"),          // bucket 3; bucket 2 is empty
		report(b, t0.Add(3*time.Minute+30*time.Second), "d"), // bucket 3
		report(a, t0.Add(4*time.Minute), "d"),                // at Until: excluded
	)
	f := store.ReportFilter{Since: t0, Until: t0.Add(4 * time.Minute)}
	got, err := e.Reports().Timeline(context.Background(), f, time.Minute)
	if err != nil {
		t.Fatalf("Timeline: %v", err)
	}
	want := []store.Bucket{
		{Start: t0, Reports: 2},
		{Start: t0.Add(time.Minute), Reports: 1},
		{Start: t0.Add(3 * time.Minute), Reports: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Timeline =\n%v\nwant\n%v", got, want)
	}
	// Boundaries are Since + k*width, not aligned to the clock.
	f.Since = t0.Add(30 * time.Second)
	got, err = e.Reports().Timeline(context.Background(), f, time.Minute)
	if err != nil {
		t.Fatalf("Timeline: %v", err)
	}
	want = []store.Bucket{
		{Start: t0.Add(30 * time.Second), Reports: 2},
		{Start: t0.Add(2*time.Minute + 30*time.Second), Reports: 1},
		{Start: t0.Add(3*time.Minute + 30*time.Second), Reports: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Timeline(Since +30s) =\n%v\nwant\n%v", got, want)
	}
}

func testTimelineUnlimited(t *testing.T, e *env) {
	var rs []store.Report
	for i := range 150 {
		rs = append(rs, report(content("a"), t0.Add(time.Duration(i)*time.Minute), "d"))
	}
	add(t, e, rs...)
	bs, err := e.Reports().Timeline(context.Background(), store.ReportFilter{Since: t0}, time.Minute)
	if err != nil {
		t.Fatalf("Timeline: %v", err)
	}
	if len(bs) != 150 || !bs[149].Start.Equal(t0.Add(149*time.Minute)) {
		t.Errorf("Timeline = %d buckets, want 150: Limit does not apply to buckets", len(bs))
	}
}

func testTimelineFilter(t *testing.T, e *env) {
	a, b := content("a"), content("b")
	b.Mode = "report-only"
	add(t, e, report(a, t0, "d"), report(b, t0, "d"), report(b, t0.Add(2*time.Hour), "d"))
	got, err := e.Reports().Timeline(context.Background(), store.ReportFilter{Since: t0, Mode: "report-only"}, time.Hour)
	if err != nil {
		t.Fatalf("Timeline: %v", err)
	}
	want := []store.Bucket{{Start: t0, Reports: 1}, {Start: t0.Add(2 * time.Hour), Reports: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Timeline(Mode) = %v, want %v", got, want)
	}
}

func testTimelineBad(t *testing.T, e *env) {
	ctx := context.Background()
	if _, err := e.Reports().Timeline(ctx, store.ReportFilter{}, time.Minute); err == nil {
		t.Error("Timeline accepted a filter without Since")
	}
	for _, w := range []time.Duration{0, -time.Minute, time.Microsecond, time.Millisecond + time.Microsecond} {
		if _, err := e.Reports().Timeline(ctx, store.ReportFilter{Since: t0}, w); err == nil {
			t.Errorf("Timeline accepted width %v", w)
		}
	}
}

func bundle(name string, version int64, published time.Time) store.Bundle {
	return store.Bundle{
		Name:        name,
		Version:     version,
		KeyID:       "key-1",
		IssuedAt:    published.Add(-time.Minute),
		ExpiresAt:   published.Add(30 * 24 * time.Hour),
		PublishedAt: published,
		JWS:         fmt.Sprintf("eyJhbGciOiJFUzI1NiJ9.%s-%d.sig", name, version),
	}
}

func publish(t *testing.T, s store.Store, b store.Bundle) {
	t.Helper()
	if err := s.Bundles().Publish(context.Background(), b); err != nil {
		t.Fatalf("Publish(%s v%d): %v", b.Name, b.Version, err)
	}
}

func latest(t *testing.T, s store.Store, name string) store.Bundle {
	t.Helper()
	b, err := s.Bundles().Latest(context.Background(), name)
	if err != nil {
		t.Fatalf("Latest(%s): %v", name, err)
	}
	return b
}

func testPublishLatest(t *testing.T, e *env) {
	b1 := bundle("mobile", 1, t0)
	publish(t, e, b1)
	if got := latest(t, e, "mobile"); !reflect.DeepEqual(got, b1) {
		t.Errorf("Latest =\n%+v\nwant\n%+v", got, b1)
	}
	b2 := bundle("mobile", 7, t0.Add(time.Hour))
	publish(t, e, b2)
	if got := latest(t, e, "mobile"); !reflect.DeepEqual(got, b2) {
		t.Errorf("Latest after v7 =\n%+v\nwant\n%+v", got, b2)
	}
	// A zero publication time is set by the store.
	before := time.Now().Add(-time.Second)
	b3 := bundle("web", 1, t0)
	b3.PublishedAt = time.Time{}
	publish(t, e, b3)
	if got := latest(t, e, "web"); got.PublishedAt.Before(before) || got.PublishedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("PublishedAt = %v, want about now", got.PublishedAt)
	}
	for _, bad := range []store.Bundle{{Version: 9, JWS: "x"}, {Name: "mobile", Version: 9}} {
		if err := e.Bundles().Publish(context.Background(), bad); err == nil {
			t.Errorf("Publish accepted %+v", bad)
		}
	}
}

func testStale(t *testing.T, e *env) {
	publish(t, e, bundle("mobile", 5, t0))
	for _, v := range []int64{5, 4, 0, -1} {
		err := e.Bundles().Publish(context.Background(), bundle("mobile", v, t0.Add(time.Hour)))
		if !errors.Is(err, store.ErrStaleVersion) {
			t.Errorf("Publish(v%d) after v5 = %v, want ErrStaleVersion", v, err)
		}
	}
	if got := latest(t, e, "mobile"); got.Version != 5 || !got.PublishedAt.Equal(t0) {
		t.Errorf("Latest = v%d published %v, want v5 published %v: a refused publish changed it", got.Version, got.PublishedAt, t0)
	}
	publish(t, e, bundle("mobile", 6, t0.Add(time.Hour)))
	// Versions are per name.
	publish(t, e, bundle("web", 1, t0))
	if got := latest(t, e, "mobile"); got.Version != 6 {
		t.Errorf("Latest(mobile) = v%d, want v6", got.Version)
	}
}

func testConcurrentPublish(t *testing.T, e *env) {
	const n = 16
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			errs[i] = e.Bundles().Publish(context.Background(), bundle("mobile", 1, t0.Add(ms(i))))
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrStaleVersion):
			t.Errorf("publisher %d: %v, want nil or ErrStaleVersion", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d publishers of the same version won, want exactly 1", won)
	}
	if bs, err := e.Bundles().List(context.Background(), "mobile", 0); err != nil || len(bs) != 1 {
		t.Errorf("List = %d bundles, %v; want 1", len(bs), err)
	}

	// Racing versions: the greatest can never be stale, and what was
	// stored never goes backwards in publication order.
	for i := range n {
		wg.Go(func() {
			errs[i] = e.Bundles().Publish(context.Background(), bundle("web", int64(i+1), t0))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, store.ErrStaleVersion) {
			t.Errorf("publisher of v%d: %v", i+1, err)
		}
	}
	if errs[n-1] != nil {
		t.Errorf("publishing the greatest version failed: %v", errs[n-1])
	}
	if got := latest(t, e, "web"); got.Version != n {
		t.Errorf("Latest = v%d, want v%d", got.Version, n)
	}
}

func testLatestUnknown(t *testing.T, e *env) {
	publish(t, e, bundle("mobile", 1, t0))
	_, err := e.Bundles().Latest(context.Background(), "web")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Latest(unknown) = %v, want ErrNotFound", err)
	}
}

func testList(t *testing.T, e *env) {
	ctx := context.Background()
	for i, b := range []store.Bundle{
		bundle("mobile", 1, t0),
		bundle("web", 1, t0.Add(time.Minute)),
		bundle("mobile", 2, t0.Add(2*time.Minute)),
		bundle("web", 2, t0.Add(3*time.Minute)),
		bundle("mobile", 3, t0.Add(4*time.Minute)),
		// Same publication time as mobile v3: ties by name.
		bundle("api", 1, t0.Add(4*time.Minute)),
	} {
		if err := e.Bundles().Publish(ctx, b); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	list := func(name string, limit int) []string {
		t.Helper()
		bs, err := e.Bundles().List(ctx, name, limit)
		if err != nil {
			t.Fatalf("List(%q, %d): %v", name, limit, err)
		}
		out := []string{}
		for _, b := range bs {
			out = append(out, fmt.Sprintf("%s/%d", b.Name, b.Version))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		limit int
		want  []string
	}{
		{"", 0, []string{"api/1", "mobile/3", "web/2", "mobile/2", "web/1", "mobile/1"}},
		{"mobile", 0, []string{"mobile/3", "mobile/2", "mobile/1"}},
		{"", 2, []string{"api/1", "mobile/3"}},
		{"web", 1, []string{"web/2"}},
		{"none", 0, []string{}},
	} {
		if got := list(tc.name, tc.limit); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("List(%q, %d) = %v, want %v", tc.name, tc.limit, got, tc.want)
		}
	}
	for v := int64(4); v <= 104; v++ {
		publish(t, e, bundle("mobile", v, t0.Add(time.Hour)))
	}
	if got := list("", 0); len(got) != 100 {
		t.Errorf("List with limit 0 = %d bundles, want 100", len(got))
	}
}

func testBundleTimes(t *testing.T, e *env) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	at := time.Date(2026, 3, 1, 17, 30, 0, 123_456_789, zone)
	b := store.Bundle{
		Name: "mobile", Version: 1, KeyID: "k",
		IssuedAt: at, ExpiresAt: at.Add(time.Hour), PublishedAt: at.Add(ms(1)),
		JWS: "a.b.c",
	}
	publish(t, e, b)
	got := latest(t, e, "mobile")
	want := time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"IssuedAt", got.IssuedAt, want},
		{"ExpiresAt", got.ExpiresAt, want.Add(time.Hour)},
		{"PublishedAt", got.PublishedAt, want.Add(ms(1))},
	} {
		// == and not Equal: the location must be UTC and the monotonic
		// reading gone.
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	bs, err := e.Bundles().List(context.Background(), "", 0)
	if err != nil || len(bs) != 1 || bs[0] != got {
		t.Errorf("List = %+v, %v; want the bundle Latest returned", bs, err)
	}
}

func testReopen(t *testing.T, e *env) {
	if e.reopen == nil {
		t.Skip("the backend cannot reopen its database")
	}
	a := content("a")
	add(t, e, report(a, t0, "1"), report(a, t0.Add(time.Second), "2"), report(content("b"), t0, "1"))
	b := bundle("mobile", 3, t0)
	publish(t, e, b)
	want := groups(t, e, store.ReportFilter{})
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s := e.reopen(t)
	t.Cleanup(func() { s.Close() })
	if got := groups(t, s, store.ReportFilter{}); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening, Groups =\n%+v\nwant\n%+v", got, want)
	}
	if got := latest(t, s, "mobile"); !reflect.DeepEqual(got, b) {
		t.Errorf("after reopening, Latest = %+v, want %+v", got, b)
	}
	// The reopened database takes writes, and its IDs do not collide.
	add(t, s, report(a, t0.Add(time.Minute), "3"), report(content("c"), t0, "1"))
	gs := groups(t, s, store.ReportFilter{})
	if len(gs) != 3 || gs[0].Content.Digest != a.Digest || gs[0].ID != want[0].ID || gs[0].Reports != 3 {
		t.Errorf("after reopening and adding, Groups = %+v", gs)
	}
	if err := s.Bundles().Publish(context.Background(), bundle("mobile", 3, t0.Add(time.Hour))); !errors.Is(err, store.ErrStaleVersion) {
		t.Errorf("Publish(v3) after reopening = %v, want ErrStaleVersion", err)
	}
}

func testConcurrency(t *testing.T, e *env) {
	const (
		writers = 8
		batches = 10
		size    = 32
	)
	ctx := context.Background()
	var (
		writing sync.WaitGroup
		reading sync.WaitGroup
		done    = make(chan struct{})
		errs    = make(chan error, writers+4)
	)
	for w := range writers {
		writing.Go(func() {
			for b := range batches {
				var rs []store.Report
				for i := range size {
					// Every batch shares hot digests with the others,
					// in different orders, and has digests of its own.
					name := fmt.Sprintf("hot%d", (i/2+w)%4)
					if i%2 == 1 {
						name = fmt.Sprintf("w%d-b%d-%d", w, b, i)
					}
					rs = append(rs, report(content(name), t0.Add(ms(b*size+i)), fmt.Sprint("dev", w)))
				}
				if err := e.Reports().AddReports(ctx, rs); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		})
	}
	for r := range 4 {
		reading.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				f := store.ReportFilter{Since: t0, Domain: "example.com"}
				if _, err := e.Reports().Count(ctx, f, store.ByServedPin); err != nil {
					errs <- fmt.Errorf("reader %d: Count: %w", r, err)
					return
				}
				if _, err := e.Reports().Groups(ctx, f); err != nil {
					errs <- fmt.Errorf("reader %d: Groups: %w", r, err)
					return
				}
				if _, err := e.Reports().Total(ctx, f); err != nil {
					errs <- fmt.Errorf("reader %d: Total: %w", r, err)
					return
				}
			}
		})
	}
	writing.Wait()
	close(done)
	reading.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if n := total(t, e, store.ReportFilter{}); n != writers*batches*size {
		t.Errorf("Total = %d, want %d: writes were lost", n, writers*batches*size)
	}
	var hot int64
	for _, tl := range count(t, e, store.ReportFilter{}, store.ByServedPin) {
		if strings.HasPrefix(tl.Key, "sha256/hot") {
			hot += tl.Reports
			if tl.Clients != writers {
				t.Errorf("%s: Clients = %d, want %d", tl.Key, tl.Clients, writers)
			}
		}
	}
	if hot != writers*batches*size/2 {
		t.Errorf("hot digests counted %d reports, want %d", hot, writers*batches*size/2)
	}
}

// Prune deletes the reports received before the cut-off, and the groups
// left empty; a digest seen again after its group was pruned starts a new
// group.
func testPrune(t *testing.T, e *env) {
	a, b := content("a"), content("b")
	add(t, e, report(a, t0, "d1"), report(a, t0.Add(time.Hour), "d2"), report(b, t0, "d3"))
	n, err := e.Reports().Prune(context.Background(), t0.Add(time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2 reports deleted", n, err)
	}
	if n := total(t, e, store.ReportFilter{}); n != 1 {
		t.Errorf("Total after prune = %d, want 1", n)
	}
	gs := groups(t, e, store.ReportFilter{})
	if len(gs) != 1 || gs[0].Content.Digest != a.Digest || gs[0].Reports != 1 {
		t.Errorf("groups after prune = %v, want only a with its later report", digests(gs))
	}
	add(t, e, report(b, t0.Add(2*time.Hour), "d4"))
	if n := total(t, e, store.ReportFilter{}); n != 2 {
		t.Errorf("Total after b came back = %d, want 2", n)
	}
	if n, err := e.Reports().Prune(context.Background(), t0); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want nothing to delete", n, err)
	}
}

// More reports than one prune batch are all deleted.
func testPruneMany(t *testing.T, e *env) {
	a := content("a")
	rs := make([]store.Report, 0, 6000)
	for i := range 6000 {
		rs = append(rs, report(a, t0.Add(ms(i)), ""))
	}
	for i := 0; i < len(rs); i += 1000 {
		add(t, e, rs[i:i+1000]...)
	}
	n, err := e.Reports().Prune(context.Background(), t0.Add(time.Hour))
	if err != nil || n != 6000 {
		t.Fatalf("Prune = %d, %v; want 6000", n, err)
	}
	if gs := groups(t, e, store.ReportFilter{}); len(gs) != 0 {
		t.Errorf("groups left: %v", digests(gs))
	}
}

// NUL and invalid UTF-8 are refused alike by every backend (PostgreSQL
// cannot store them in text), and the batch holding one stores nothing.
func testNotText(t *testing.T, e *env) {
	for _, bad := range []func(*store.Report){
		func(r *store.Report) { r.UserAgent = "app \xff\xfe" },
		func(r *store.Report) { r.Content.AppBundleID = "com.x\x00evil" },
		func(r *store.Report) { r.Device = "\x00" },
		func(r *store.Report) { r.Content.ServedSubject = "CN=\xc3" },
	} {
		r := report(content("a"), t0, "d1")
		bad(&r)
		if err := e.Reports().AddReports(context.Background(), []store.Report{report(content("b"), t0, "d2"), r}); err == nil {
			t.Errorf("AddReports accepted %+v", r)
		}
	}
	if n := total(t, e, store.ReportFilter{}); n != 0 {
		t.Errorf("Total = %d after refused batches, want 0", n)
	}
}
