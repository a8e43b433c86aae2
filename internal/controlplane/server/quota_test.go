package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/pin"
)

// variant returns a report about host that no other report equals: its
// port differs.
func variant(t *testing.T, e *testEnv, host string, port int) []byte {
	t.Helper()
	rogue, _ := rogueLeaves(t)
	var m map[string]any
	if err := json.Unmarshal(rfc7469(t, host, pin.Enforce, rogue, e.clock.Now()), &m); err != nil {
		t.Fatal(err)
	}
	m["port"] = port
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sourceAddr returns the n-th of many client addresses, IPv4 and IPv6
// (each IPv6 one in a /64 of its own, as the per-address limit counts).
func sourceAddr(n int) string {
	if n%2 == 0 {
		return netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n)}).String()
	}
	return fmt.Sprintf("2001:db8:%x:%x::1", n>>8, n&0xff)
}

func quotaEnv(t *testing.T, q ReportQuota) (*testEnv, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.ReportQuota = q
		c.Registry = reg
		// Behind a proxy on loopback: X-Forwarded-For names the client,
		// so one test sends from many addresses.
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	})
	return e, reg
}

// Distinct reports about one host name, each from an address of its own
// (so that the per-address limit never applies), stop at the host's
// daily quota with 429; repeats of a stored report and reports about
// other names still get in; the next day the host's quota is back.
func TestReportQuotaPerHostManyAddresses(t *testing.T) {
	e, _ := quotaEnv(t, ReportQuota{PerHostPerDay: 64 << 10, MaxBytes: -1, MinFree: -1})
	size := len(variant(t, e, "api.payments.test", 1))
	budget := (64 << 10) / size // distinct reports the quota holds
	accepted, refused := 0, 0
	for i := range 200 {
		code, h, body := e.postReport(t, variant(t, e, "api.payments.test", 1000+i), "X-Forwarded-For", sourceAddr(i))
		switch code {
		case http.StatusNoContent:
			accepted++
		case http.StatusTooManyRequests:
			refused++
			if h.Get("Retry-After") == "" || !strings.Contains(errorMessage(t, body), "host name") {
				t.Fatalf("refusal %d: %v %s", i, h, body)
			}
		default:
			t.Fatalf("report %d: %d %s", i, code, body)
		}
	}
	t.Logf("accepted %d, refused %d distinct reports of %d bytes", accepted, refused, size)
	if accepted < budget-1 || accepted > budget+1 || refused != 200-accepted {
		t.Errorf("accepted %d, refused %d distinct reports of %d bytes under a 64 KiB quota; want about %d", accepted, refused, size, budget)
	}
	if n := testutil.ToFloat64(e.srv.metrics.reports.WithLabelValues("over_quota")); int(n) != refused {
		t.Errorf("over_quota counted %v, want %d", n, refused)
	}
	if n, _ := e.store.Reports().Total(context.Background(), store.ReportFilter{}); int(n) != accepted {
		t.Errorf("%d reports stored, want the %d accepted", n, accepted)
	}
	// A repeat of a stored report is one more row, not a body: accepted.
	code, _, body := e.postReport(t, variant(t, e, "api.payments.test", 1000), "X-Forwarded-For", sourceAddr(500))
	wantStatus(t, "repeat of a stored report", code, http.StatusNoContent, body)
	// Another host name has a quota of its own.
	code, _, body = e.postReport(t, variant(t, e, "cdn.payments.test", 1), "X-Forwarded-For", sourceAddr(501))
	wantStatus(t, "another host", code, http.StatusNoContent, body)
	e.clock.Add(24 * time.Hour)
	code, _, body = e.postReport(t, variant(t, e, "api.payments.test", 5000), "X-Forwarded-For", sourceAddr(502))
	wantStatus(t, "the next day", code, http.StatusNoContent, body)
}

// Reports from many addresses about many host names stop when the
// database holds MaxBytes of them (503 with Retry-After), and the
// database grows no further than about one report past the bound; once
// the retention deletes them, reports are accepted again.
func TestReportQuotaGlobalManyAddresses(t *testing.T) {
	e, reg := quotaEnv(t, ReportQuota{PerHostPerDay: -1, MinFree: -1, MaxBytes: 1})
	u0, err := e.store.Reports().Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Room for about 40 reports of 4 KiB above the empty database.
	limit := u0.Bytes + 160<<10
	set := e.srv.Settings()
	set.ReportQuota.MaxBytes = limit
	if err := e.srv.Update(set); err != nil {
		t.Fatal(err)
	}
	accepted, refused := 0, 0
	for i := range 300 {
		if i%25 == 0 {
			e.clock.Add(usageInterval) // measured again now and then
		}
		host := fmt.Sprintf("h%d.payments.test", i)
		code, h, body := e.postReport(t, variant(t, e, host, 443), "X-Forwarded-For", sourceAddr(i))
		switch code {
		case http.StatusNoContent:
			accepted++
		case http.StatusServiceUnavailable:
			refused++
			if h.Get("Retry-After") == "" || !strings.Contains(errorMessage(t, body), "storage is full") {
				t.Fatalf("refusal %d: %v %s", i, h, body)
			}
		default:
			t.Fatalf("report %d: %d %s", i, code, body)
		}
	}
	u1, err := e.store.Reports().Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accepted %d, refused %d; %d bytes of reports, bound %d", accepted, refused, u1.Bytes, limit)
	if refused == 0 || accepted < 10 {
		t.Fatalf("accepted %d, refused %d: the bound did not apply, or applied too soon", accepted, refused)
	}
	// SQLite grows by pages; one report's pages of slack.
	if u1.Bytes > limit+32<<10 {
		t.Errorf("the database holds %d bytes of reports, over the bound of %d", u1.Bytes, limit)
	}
	if v := testutil.ToFloat64(e.srv.metrics.reports.WithLabelValues("over_quota")); int(v) != refused {
		t.Errorf("over_quota = %v, want %d", v, refused)
	}
	if got, err := testutil.GatherAndCount(reg, "rampart_report_storage_bytes", "rampart_report_storage_limit_bytes"); err != nil || got != 2 {
		t.Errorf("storage gauges: %d, %v", got, err)
	}

	e.clock.Add(24 * time.Hour)
	if _, err := e.store.Reports().Prune(context.Background(), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	code, _, body := e.postReport(t, variant(t, e, "after.payments.test", 443), "X-Forwarded-For", sourceAddr(1000))
	wantStatus(t, "after the old reports were deleted", code, http.StatusNoContent, body)
}

// Below MinFree of free space on the file system holding the SQLite
// database, reports are refused: the rest of the database keeps its room.
func TestReportQuotaMinFree(t *testing.T) {
	e, _ := quotaEnv(t, ReportQuota{PerHostPerDay: -1, MaxBytes: -1, MinFree: 1 << 62})
	code, h, body := e.postReport(t, variant(t, e, "api.payments.test", 443))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(errorMessage(t, body), "disk space") {
		t.Errorf("with less free space than MinFree: %d %v %s, want 503 with Retry-After", code, h, body)
	}
	if n, _ := e.store.Reports().Total(context.Background(), store.ReportFilter{}); n != 0 {
		t.Errorf("%d reports stored", n)
	}
	// The default (1 GiB) lets reports in on this machine's disk.
	e2 := newEnv(t, nil)
	code, _, body = e2.postReport(t, variant(t, e2, "api.payments.test", 443))
	wantStatus(t, "default quota", code, http.StatusNoContent, body)
}

// The quota's defaults are the documented ones.
func TestReportQuotaDefaults(t *testing.T) {
	q := newQuota(ReportQuota{}, nil, time.Now, nil)
	if c := q.cfg(); c.MaxBytes != 4<<30 || c.PerHostPerDay != 64<<20 || c.MinFree != 1<<30 {
		t.Errorf("defaults %+v", c)
	}
}
