package authserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/internal/store/postgres"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/internal/testing/pgtest"
)

// backends opens the stores the token server runs on: a SQLite file, and
// PostgreSQL when RAMPART_TEST_POSTGRES is set.
var backends = map[string]func(t *testing.T) store.Store{
	"sqlite": func(t *testing.T) store.Store {
		st, err := sqlite.Open(context.Background(), t.TempDir()+"/rampart.db")
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
	"postgres": func(t *testing.T) store.Store {
		st, err := postgres.Open(context.Background(), pgtest.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
}

// postStatus posts form to url with basic credentials and returns the
// status; it is safe in any goroutine (no t.Fatal).
func postStatus(c *http.Client, u string, form url.Values, id, secret string) (int, error) {
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// The token endpoint's failure limit (10 a minute per address) holds for
// concurrent requests: a failure is reserved before the secret is
// verified, so that a burst that arrives during the store's round trip
// cannot pass the check all at once (CWE-367). Each request uses a new
// well-formed client ID and a checksum-valid random key, so that every
// 401 is a verification that reached the store.
func TestRFC6749_2_3_FailureLimitUnderConcurrency(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, open(t))
			const n = 120
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: e.client.Transport.(*http.Transport).TLSClientConfig, MaxConnsPerHost: n}}
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				counts = map[int]int{}
				start  = make(chan struct{})
			)
			for i := range n {
				k, err := apikey.Generate(apikey.Live)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					<-start
					code, err := postStatus(c, e.srv.URL+"/oauth2/token", grant(), fmt.Sprintf("guess-%d", i), k.String())
					if err != nil {
						code = -1
					}
					mu.Lock()
					counts[code]++
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			if counts[401] != 10 || counts[429] != n-10 {
				t.Errorf("%d concurrent failed authentications from one address: %v, want exactly 10 evaluated (401), the rest 429", n, counts)
			}
		})
	}
}

// selfRotate posts to the rotation endpoint h with key as the credential.
func selfRotate(t *testing.T, h *httptest.Server, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.URL, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Self-rotation (POST /v1/apikeys/rotate) is bounded: a minimum grace, so
// that a thief's rotation cannot end the owner's key at once; no second
// rotation while the key's predecessor still works, so that a chain holds
// at most two working keys; and the token endpoint's failure limit, so
// that it is no unthrottled key-guessing oracle (CWE-307, CWE-770).
func TestSelfRotationLimits(t *testing.T) {
	e := newEnv(t)
	owner := e.clientWithKey("shop", []string{"payment.read"}, nil)
	h := httptest.NewServer(e.as.LimitFailedAuth(e.keys.RotateHandler(e.ver, 72*time.Hour)))
	defer h.Close()

	for _, g := range []string{"0s", "30m", "59m59s"} {
		if code, body := selfRotate(t, h, owner, `{"grace": "`+g+`"}`); code != 400 || !strings.Contains(body, "1h0m0s") {
			t.Errorf("grace %s: %d %s, want 400 naming the minimum", g, code, body)
		}
	}
	code, body := selfRotate(t, h, owner, `{"grace": "1h"}`)
	if code != 201 {
		t.Fatalf("self-rotation with 1h of grace: %d %s", code, body)
	}
	next := body[strings.Index(body, `"key":"`)+7:]
	next = next[:strings.IndexByte(next, '"')]
	// The new key cannot rotate while the owner's still works.
	if code, body := selfRotate(t, h, next, ""); code != 409 || !strings.Contains(body, "grace") {
		t.Errorf("rotating the new key during its predecessor's grace: %d %s, want 409", code, body)
	}
	e.clock.Add(time.Hour)
	e.ver.Forget()
	if code, body := selfRotate(t, h, next, ""); code != 201 {
		t.Errorf("rotating the new key after its predecessor's grace: %d %s, want 201", code, body)
	}

	// Wrong keys: 10 failures, then 429, here and at the token endpoint
	// (one budget per address).
	var codes []int
	for range 12 {
		k, _ := apikey.Generate(apikey.Live)
		code, _ := selfRotate(t, h, k.String(), "")
		codes = append(codes, code)
	}
	want := []int{401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 429, 429}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("12 wrong keys: %v, want %v", codes, want)
	}
	if r := e.post(e.client, "/oauth2/token", grant(), basic("shop", owner)); r.status != 429 {
		t.Errorf("the token endpoint after 10 failed rotations from the address: %d, want 429", r.status)
	}
}
