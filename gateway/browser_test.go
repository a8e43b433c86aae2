package gateway_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/ratelimit"
)

// corsProbePage is the page each origin serves. probe runs fetch() and
// reports what the page can see: a TypeError when the browser withholds
// the response, otherwise the status, the body and the response headers
// the page may read (the CORS-safelisted ones and those exposed by
// Access-Control-Expose-Headers). The cookie lets credentials:'include'
// carry something the upstream can notice.
const corsProbePage = `<!doctype html>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>CORS probe</title>
<script>
document.cookie = "session=browser-cookie; path=/";
async function probe(url, init) {
  try {
    const r = await fetch(url, init);
    const headers = {};
    for (const [name, value] of r.headers) headers[name] = value;
    return {ok: true, status: r.status, body: await r.text(), headers};
  } catch (e) {
    return {ok: false, error: e.name + ": " + e.message};
  }
}
</script>
`

// The gateway's CORS policy as a browser enforces it (the Fetch
// standard's CORS protocol, https://fetch.spec.whatwg.org/#http-cors-protocol):
// pages on the allowed origin read responses, including preflighted and
// credentialed ones and the exposed headers only; pages on origins that
// differ by port or by host get a TypeError, and a request that needs a
// preflight never reaches the upstream from them. Preflights are answered
// by the gateway without credentials and never proxied. Every response
// varies on Origin.
func TestCORSInChromium(t *testing.T) {
	exec := os.Getenv("RAMPART_TEST_CHROMIUM")
	if exec == "" {
		t.Skip("RAMPART_TEST_CHROMIUM is not set (e.g. /usr/bin/chromium)")
	}

	// The upstream answers JSON and records what reached it, by
	// "METHOD path", and whether the page's cookie came along.
	var (
		mu         sync.Mutex
		atUpstream = map[string]int{}
		withCookie = map[string]bool{}
		atGateway  []string // "METHOD path origin", in front of the gateway
	)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atUpstream[r.Method+" "+r.URL.Path]++
		n := len(atUpstream)
		_, err := r.Cookie("session")
		withCookie[r.URL.Path] = err == nil
		mu.Unlock()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Request-Id", fmt.Sprint("req-", n))
		h.Set("X-Internal-Trace", "upstream-7") // not exposed: pages must not see it
		h.Set("Vary", "Accept-Encoding")        // merged with the gateway's Vary: Origin
		json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path})
	}))
	t.Cleanup(upstream.Close)
	upstreamURL, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	upstreamCount := func(method, path string) int {
		mu.Lock()
		defer mu.Unlock()
		return atUpstream[method+" "+path]
	}

	// Two page servers give three origins: the allowed one, one that
	// differs by port and one that differs by host (localhost reaches the
	// same listener as 127.0.0.1).
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(corsProbePage))
	})
	pageA := httptest.NewServer(page)
	t.Cleanup(pageA.Close)
	pageB := httptest.NewServer(page)
	t.Cleanup(pageB.Close)
	allowed := pageA.URL
	otherPort := pageB.URL
	u, err := url.Parse(pageA.URL)
	if err != nil {
		t.Fatal(err)
	}
	otherHost := "http://localhost:" + u.Port()

	// An API key for the auth: required route.
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pepper := make([]byte, 32)
	rand.Read(pepper)
	keys := &apikey.Manager{Store: st.APIKeys(), Pepper: pepper}
	if _, err := keys.CreateClient(context.Background(), apikey.Client{ID: "web", Scopes: []string{"payment.read"}}); err != nil {
		t.Fatal(err)
	}
	key, _, err := keys.Create(context.Background(), "web", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	verifier := &apikey.Verifier{Store: st.APIKeys(), Pepper: pepper}
	t.Cleanup(func() { verifier.Close() })

	// The rate limit only adds RateLimit-Policy and RateLimit to every
	// answer, to expose them.
	g, err := gateway.New(gateway.Options{
		Routes: []gateway.Route{
			{Prefix: "/public/", Upstream: upstreamURL, AllowAnonymous: true},
			{Prefix: "/v1/", Upstream: upstreamURL},
		},
		CORS: &gateway.CORS{
			AllowedOrigins:   []string{allowed},
			AllowedMethods:   []string{"GET", "POST"},
			AllowedHeaders:   []string{"Content-Type", "X-API-Key"},
			ExposedHeaders:   []string{"X-Request-Id", "RateLimit-Policy", "RateLimit"},
			AllowCredentials: true,
			MaxAge:           10 * time.Minute,
		},
		Limits:    []ratelimit.Rule{{Name: "per-address", Limit: ratelimit.Limit{Rate: 10000, Period: time.Second, Burst: 10000}, By: []ratelimit.By{ratelimit.ByAddr}}},
		APIKeys:   verifier,
		Logger:    slog.New(slog.DiscardHandler),
		AccessLog: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		atGateway = append(atGateway, r.Method+" "+r.URL.Path+" "+r.Header.Get("Origin"))
		mu.Unlock()
		g.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(gw.Close)
	sawAtGateway := func(method, path, origin string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(atGateway, method+" "+path+" "+origin)
	}

	// The browser.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exec),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	// Chromium says in the console why it withheld a response; keep the
	// messages to tell a CORS refusal from a network error, which is the
	// same TypeError for the page.
	cctx, stopConsole := context.WithCancel(ctx)
	defer stopConsole()
	messages := chromedp.Console(cctx)
	var (
		console     []string
		consoleDone = make(chan struct{})
	)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			console = append(console, m.Text)
			mu.Unlock()
		}
	}()
	// blockedByCORS waits for Chromium's console message about a fetch
	// of path from origin.
	blockedByCORS := func(origin, path, why string) bool {
		for range 40 {
			mu.Lock()
			found := slices.ContainsFunc(console, func(m string) bool {
				return strings.Contains(m, "blocked by CORS policy") && strings.Contains(m, gw.URL+path) &&
					strings.Contains(m, "'"+origin+"'") && strings.Contains(m, why)
			})
			mu.Unlock()
			if found {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}

	type result struct {
		OK      bool              `json:"ok"`
		Status  int               `json:"status"`
		Body    string            `json:"body"`
		Headers map[string]string `json:"headers"`
		Error   string            `json:"error"`
	}
	// fetch runs fetch(gateway+path, init) in the page loaded last.
	fetch := func(path string, init map[string]any) result {
		t.Helper()
		args, err := json.Marshal([]any{gw.URL + path, init})
		if err != nil {
			t.Fatal(err)
		}
		js := fmt.Sprintf("probe(...%s)", args)
		res, err := chromedp.Run(ctx, chromedp.Evaluate[result](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return res
	}
	withKey := map[string]string{"X-API-Key": key.String()}

	// The requests every origin makes. A GET without custom headers is a
	// simple request: the browser sends it and decides afterwards whether
	// the page may read the answer. X-API-Key is not a CORS-safelisted
	// request header, so that request is preflighted: the browser sends
	// OPTIONS first and the actual request only if the answer allows it
	// (https://fetch.spec.whatwg.org/#cors-preflight-fetch).
	// credentials:'include' needs Access-Control-Allow-Credentials: true
	// and the exact origin, on the preflight and on the answer
	// (https://fetch.spec.whatwg.org/#cors-check).
	requests := []struct {
		name      string
		path      string
		init      map[string]any
		preflight bool
		cookie    bool
	}{
		{"simple GET", "/public/simple", map[string]any{}, false, false},
		{"API key", "/v1/orders", map[string]any{"headers": withKey}, true, false},
		{"credentialed simple GET", "/public/session", map[string]any{"credentials": "include"}, false, true},
		// The browser sends the cookie, and the gateway drops it: an
		// authenticated route forwards only the credential it checked
		// (forward_cookies: false, the default; E14).
		{"credentialed with API key", "/v1/session", map[string]any{"headers": withKey, "credentials": "include"}, true, false},
	}
	origins := []struct {
		name, origin string
		allowed      bool
	}{
		{"allowed origin", allowed, true},
		{"other port", otherPort, false},
		{"other host", otherHost, false},
	}
	for i, o := range origins {
		if err := chromedp.Do(ctx, chromedp.Navigate(o.origin+"/")); err != nil {
			t.Fatalf("%s: %v", o.origin, err)
		}
		for _, rq := range requests {
			path := fmt.Sprintf("%s/%d", rq.path, i) // one path per origin, to count
			res := fetch(path, rq.init)
			name := o.name + ", " + rq.name
			if !o.allowed {
				if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
					t.Errorf("%s: the page got %+v, want a TypeError", name, res)
				}
				if rq.preflight {
					// The preflight reached the gateway, was refused, and the
					// actual request was never sent.
					if !sawAtGateway(http.MethodOptions, path, o.origin) {
						t.Errorf("%s: no preflight reached the gateway", name)
					}
					if n := upstreamCount(http.MethodGet, path); n != 0 || sawAtGateway(http.MethodGet, path, o.origin) {
						t.Errorf("%s: the actual request was sent after a refused preflight (%d at the upstream)", name, n)
					}
					if !blockedByCORS(o.origin, path, "Response to preflight request doesn't pass access control check") {
						t.Errorf("%s: Chromium did not report a preflight refused by CORS", name)
					}
				} else {
					// A simple request is sent: CORS decides what the page
					// may read, not what the server receives.
					if n := upstreamCount(http.MethodGet, path); n != 1 {
						t.Errorf("%s: %d requests at the upstream, want 1", name, n)
					}
					if !blockedByCORS(o.origin, path, "No 'Access-Control-Allow-Origin' header") {
						t.Errorf("%s: Chromium did not report a response withheld by CORS", name)
					}
				}
				continue
			}
			if !res.OK || res.Status != http.StatusOK {
				t.Errorf("%s: the page got %+v, want 200", name, res)
				continue
			}
			var body map[string]string
			if err := json.Unmarshal([]byte(res.Body), &body); err != nil || body["path"] != path {
				t.Errorf("%s: body %q (%v), want the upstream's JSON for %s", name, res.Body, err, path)
			}
			// Exposed headers are readable, the others are not.
			for _, h := range []string{"x-request-id", "ratelimit-policy", "ratelimit", "content-type"} {
				if res.Headers[h] == "" {
					t.Errorf("%s: the page cannot read %s; it reads %v", name, h, res.Headers)
				}
			}
			if v, ok := res.Headers["x-internal-trace"]; ok {
				t.Errorf("%s: the page reads X-Internal-Trace: %s, which is not exposed", name, v)
			}
			if rq.preflight {
				if !sawAtGateway(http.MethodOptions, path, o.origin) {
					t.Errorf("%s: no preflight reached the gateway", name)
				}
			}
			if n := upstreamCount(http.MethodGet, path); n != 1 {
				t.Errorf("%s: %d requests at the upstream, want 1", name, n)
			}
			mu.Lock()
			cookie := withCookie[path]
			mu.Unlock()
			if cookie != rq.cookie {
				t.Errorf("%s: the page's cookie reached the upstream: %v, want %v", name, cookie, rq.cookie)
			}
		}
	}

	// From the allowed origin, what the policy does not allow: a method
	// not in allowed_methods, a header not in allowed_headers. Both fail
	// at the preflight. A wrong key is the gateway's 401, which the page
	// can read (CORS runs before authentication).
	if err := chromedp.Do(ctx, chromedp.Navigate(allowed+"/")); err != nil {
		t.Fatal(err)
	}
	for _, rq := range []struct {
		name, method, path string
		headers            map[string]string
	}{
		{"method not allowed", http.MethodPut, "/v1/orders/put", withKey},
		{"header not allowed", http.MethodGet, "/v1/orders/debug", map[string]string{"X-API-Key": key.String(), "X-Debug": "1"}},
	} {
		res := fetch(rq.path, map[string]any{"method": rq.method, "headers": rq.headers})
		if res.OK || !strings.HasPrefix(res.Error, "TypeError") {
			t.Errorf("%s: the page got %+v, want a TypeError", rq.name, res)
		}
		if !sawAtGateway(http.MethodOptions, rq.path, allowed) {
			t.Errorf("%s: no preflight reached the gateway", rq.name)
		}
		if n := upstreamCount(rq.method, rq.path); n != 0 {
			t.Errorf("%s: the actual request reached the upstream (%d)", rq.name, n)
		}
		if !blockedByCORS(allowed, rq.path, "Response to preflight request doesn't pass access control check") {
			t.Errorf("%s: Chromium did not report a preflight refused by CORS", rq.name)
		}
	}
	res := fetch("/v1/orders/bad-key", map[string]any{"headers": map[string]string{"X-API-Key": "rk_live_not-a-key"}})
	if !res.OK || res.Status != http.StatusUnauthorized || !strings.Contains(res.Body, "invalid_token") {
		t.Errorf("wrong key: the page got %+v, want to read the 401", res)
	}
	if n := upstreamCount(http.MethodGet, "/v1/orders/bad-key"); n != 0 {
		t.Errorf("wrong key: %d requests at the upstream", n)
	}

	stopConsole()
	<-consoleDone
	mu.Lock()
	for k := range atUpstream {
		if strings.HasPrefix(k, http.MethodOptions+" ") {
			t.Errorf("a preflight reached the upstream: %s", k)
		}
	}
	if t.Failed() {
		t.Logf("the browser's console:\n%s", strings.Join(console, "\n"))
	}
	mu.Unlock()

	// Vary: Origin on every answer, allowed origin, other origin or none,
	// so that a shared cache never gives one origin's answer to another
	// (https://fetch.spec.whatwg.org/#cors-protocol-and-http-caches).
	// Preflights also vary on the request method and headers.
	t.Run("vary", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path, origin string
			header                     http.Header
			wantStatus                 int
			wantAllowOrigin            string
			wantVary                   []string
		}{
			{"allowed", http.MethodGet, "/public/vary", allowed, nil, http.StatusOK, allowed, []string{"Origin", "Accept-Encoding"}},
			{"other origin", http.MethodGet, "/public/vary", otherPort, nil, http.StatusOK, "", []string{"Origin", "Accept-Encoding"}},
			{"no origin", http.MethodGet, "/public/vary", "", nil, http.StatusOK, "", []string{"Origin", "Accept-Encoding"}},
			{"unauthenticated", http.MethodGet, "/v1/vary", allowed, nil, http.StatusUnauthorized, allowed, []string{"Origin"}},
			{"no route", http.MethodGet, "/nowhere", allowed, nil, http.StatusNotFound, allowed, []string{"Origin"}},
			{"preflight", http.MethodOptions, "/v1/vary", allowed,
				http.Header{"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"x-api-key"}},
				http.StatusNoContent, allowed, []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"}},
			{"refused preflight", http.MethodOptions, "/v1/vary", otherHost,
				http.Header{"Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"x-api-key"}},
				http.StatusNoContent, "", []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, err := http.NewRequest(tc.method, gw.URL+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.header {
					req.Header[k] = v
				}
				if tc.origin != "" {
					req.Header.Set("Origin", tc.origin)
				}
				resp, err := gw.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				}
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.wantAllowOrigin {
					t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tc.wantAllowOrigin)
				}
				if tc.wantAllowOrigin != "" && resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
					t.Errorf("Access-Control-Allow-Credentials %q, want true", resp.Header.Get("Access-Control-Allow-Credentials"))
				}
				var vary []string
				for _, v := range resp.Header.Values("Vary") {
					for f := range strings.SplitSeq(v, ",") {
						vary = append(vary, http.CanonicalHeaderKey(strings.TrimSpace(f)))
					}
				}
				for _, want := range tc.wantVary {
					if !slices.Contains(vary, want) {
						t.Errorf("Vary %q lacks %s", vary, want)
					}
				}
			})
		}
	})
}
