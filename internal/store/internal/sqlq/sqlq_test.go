package sqlq

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/rampartsec/rampart/internal/store"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
)

func TestMigrations(t *testing.T) {
	ms, err := Migrations(fstest.MapFS{
		"m/0002_more.sql": {Data: []byte("two")},
		"m/0001_init.sql": {Data: []byte("one")},
		"m/README":        {Data: []byte("not a migration")},
	}, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 1 || ms[0].SQL != "one" || ms[1].Version != 2 {
		t.Errorf("Migrations = %+v", ms)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":        {"m/0001_a.sql": {}, "m/0003_c.sql": {}},
		"duplicate":  {"m/0001_a.sql": {}, "m/0001_b.sql": {}},
		"unnumbered": {"m/init.sql": {}},
		"zero":       {"m/0000_a.sql": {}},
	} {
		if _, err := Migrations(fsys, "m"); err == nil {
			t.Errorf("%s: Migrations accepted it", name)
		}
	}
}

func TestAggregate(t *testing.T) {
	r := func(d string, body string) store.Report {
		return store.Report{Content: store.ReportContent{Digest: d, Body: []byte(body)}}
	}
	groups, index := Aggregate([]store.Report{r("c", "c1"), r("a", "a1"), r("c", "c2"), r("b", "b1"), r("a", "a2")})
	var got []string
	for _, g := range groups {
		got = append(got, g.Content.Digest+"="+string(g.Content.Body))
	}
	if strings.Join(got, " ") != "a=a1 b=b1 c=c1" {
		t.Errorf("groups = %v, want a=a1 b=b1 c=c1: sorted, first body", got)
	}
	want := []int{2, 0, 2, 1, 0}
	for i := range want {
		if index[i] != want[i] {
			t.Fatalf("index = %v, want %v", index, want)
		}
	}
}

func TestQueriesArePlaceheld(t *testing.T) {
	// Filter values never reach the SQL text.
	const evil = "x' OR '1'='1"
	f := store.ReportFilter{Domain: evil, Mode: evil, ServedPin: evil, AppVersion: evil, Since: time.Unix(1, 0), Until: time.Unix(2, 0)}
	q, err := Count(Postgres, f, store.ByApp)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := Timeline(SQLite, f, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []Query{Groups(SQLite, f), q, tl, Total(Postgres, f)} {
		if strings.Contains(q.SQL, evil) {
			t.Errorf("value in SQL: %s", q.SQL)
		}
	}
	if _, err := Count(SQLite, f, "g.body"); !errors.Is(err, ErrUnknownDimension) {
		t.Errorf("Count(unknown dimension) = %v", err)
	}
}
