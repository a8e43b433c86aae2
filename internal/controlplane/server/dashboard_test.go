package server

import (
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/pin"
)

// The dashboard is behind the admin token: a login form, then a signed,
// HttpOnly, SameSite=Strict session cookie.
func TestDashboardLogin(t *testing.T) {
	e := newEnv(t, nil)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := c.Get(e.http.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("GET / without a session: %d %s, want a redirect to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = c.PostForm(e.http.URL+"/login", url.Values{"token": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// A cross-site form post is refused before the token is looked at.
	req, _ := http.NewRequest("POST", e.http.URL+"/login", strings.NewReader("token="+testToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: %v %v, want 403", resp.StatusCode, err)
	}

	resp, err = c.PostForm(e.http.URL+"/login", url.Values{"token": {testToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || strings.Contains(cookies[0].Value, testToken) {
		t.Fatalf("login: %d, cookies %+v", resp.StatusCode, cookies)
	}
	resp, err = c.Get(e.http.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("dashboard with a session: %d %v", resp.StatusCode, resp.Header)
	}

	// A forged or expired cookie is no session.
	for _, v := range []string{cookies[0].Value + "x", "9999999999.AAAA", ""} {
		req, _ := http.NewRequest("GET", e.http.URL+"/", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("cookie %q: %d, want a redirect to /login", v, resp.StatusCode)
		}
	}
	e.clock.Add(sessionLifetime + time.Second)
	resp, err = c.Get(e.http.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the session's lifetime: %d, want a redirect to /login", resp.StatusCode)
	}
}

// What the page shows, without a browser: every section, the data.
func TestDashboardContent(t *testing.T) {
	e := newEnv(t, nil)
	rogue, _ := rogueLeaves(t)
	code, _, body := e.postReport(t, rfc7469(t, "api.payments.test", pin.Enforce, rogue, e.clock.Now()))
	wantStatus(t, "report", code, http.StatusNoContent, body)
	if _, _, page := e.do(t, "GET", "/", nil, "Authorization", "Bearer "+testToken); !strings.Contains(string(page), `action="/login"`) {
		t.Errorf("a bearer token opened the dashboard: only a session does")
	}
	code, h, page := e.do(t, "GET", "/?range=7d", nil, "Cookie", sessionCookie+"="+e.srv.newSession())
	wantStatus(t, "dashboard", code, http.StatusOK, page)
	for _, want := range []string{`id="timeline"`, `class="bar"`, "api.payments.test", pin.FromCertificate(rogue.Cert).String(),
		`id="by-served-pin"`, `id="by-domain"`, `id="by-app"`, `id="bundles"`, `<option value="7d" selected>`} {
		if !strings.Contains(html.UnescapeString(string(page)), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
	}
	for _, a := range []string{"/assets/style.css", "/assets/icon.svg"} {
		if code, _, _ := e.do(t, "GET", a, nil); code != http.StatusOK {
			t.Errorf("%s: %d", a, code)
		}
	}
	if code, _, _ := e.do(t, "GET", "/assets/../server.go", nil); code == http.StatusOK {
		t.Error("an asset path escaped the embedded files")
	}
}

func TestBucketWidthAndScale(t *testing.T) {
	for span, want := range map[time.Duration]time.Duration{
		time.Hour: time.Minute, 24 * time.Hour: time.Hour, 7 * 24 * time.Hour: 3 * time.Hour, 30 * 24 * time.Hour: 24 * time.Hour,
	} {
		if got := bucketWidth(span); got != want {
			t.Errorf("bucketWidth(%v) = %v, want %v", span, got, want)
		}
	}
	for n, want := range map[int64]int64{0: 4, 3: 4, 5: 8, 9: 20, 21: 40, 1000: 2000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
}
