package server

import (
	"bytes"
	"crypto"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/internal/controlplane/api"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/bundle"
)

func signBundle(t testing.TB, key crypto.Signer, name string, version int64, now time.Time) string {
	t.Helper()
	p, err := pin.NewPolicy("", pin.Domain{Name: "api.payments.test", Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))}})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := bundle.Sign(key, name, version, now.Add(-time.Minute), now.Add(30*24*time.Hour), p)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

func bundleKey(t testing.TB) (crypto.Signer, *bundle.Keys) {
	t.Helper()
	k, err := bundle.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := bundle.NewKeys(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, keys
}

// Publishing verifies the signature and the version; clients then get the
// bundle with an ETag, and a 304 when they have it.
func TestBundlePublishAndServe(t *testing.T) {
	key, keys := bundleKey(t)
	e := newEnv(t, func(c *Config) { c.BundleKeys = keys; c.BundleCacheControl = "public, max-age=30" })
	now := e.clock.Now()

	code, _, body := e.do(t, "GET", "/v1/bundles/mobile", nil)
	wantStatus(t, "before publishing", code, http.StatusNotFound, body)

	v1 := signBundle(t, key, "mobile", 1, now)
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(v1+"\n"))
	wantStatus(t, "publish v1", code, http.StatusCreated, body)
	if b := decode[api.PublishedBundle](t, body); b.Name != "mobile" || b.Version != 1 || b.KeyID == "" {
		t.Errorf("publish answered %+v", b)
	}

	code, h, got := e.do(t, "GET", "/v1/bundles/mobile", nil)
	wantStatus(t, "get", code, http.StatusOK, got)
	etag := h.Get("ETag")
	if string(got) != v1 || h.Get("Content-Type") != "application/jose" || h.Get("Cache-Control") != "public, max-age=30" || !strings.HasPrefix(etag, `"1-`) {
		t.Errorf("GET: %q %v", got, h)
	}
	code, h, got = e.do(t, "GET", "/v1/bundles/mobile", nil, "If-None-Match", `"other", W/`+etag)
	if code != http.StatusNotModified || len(got) != 0 || h.Get("ETag") != etag {
		t.Errorf("conditional GET: %d %q %v, want 304 with the ETag", code, got, h)
	}
	code, h, got = e.do(t, "HEAD", "/v1/bundles/mobile", nil)
	if code != http.StatusOK || len(got) != 0 || h.Get("Content-Length") != strconv.Itoa(len(v1)) {
		t.Errorf("HEAD: %d %q %v", code, got, h)
	}

	// A replay of the same version is refused; a newer version replaces it
	// at once on this instance; then an older one (rollback) is refused.
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(v1))
	wantStatus(t, "republish v1", code, http.StatusConflict, body)
	if msg := errorMessage(t, body); !strings.Contains(msg, "not newer than the latest published (version 1); sign it with --version 2 or higher") {
		t.Errorf("conflict message %q", msg)
	}
	v2 := signBundle(t, key, "mobile", 2, now)
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(v2))
	wantStatus(t, "publish v2", code, http.StatusCreated, body)
	if code, _, got := e.do(t, "GET", "/v1/bundles/mobile", nil, "If-None-Match", etag); code != http.StatusOK || string(got) != v2 {
		t.Errorf("after v2: %d %q, want v2", code, got)
	}
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(v1))
	wantStatus(t, "roll back to v1", code, http.StatusConflict, body)

	code, body = e.admin(t, "GET", "/v1/admin/bundles", nil)
	wantStatus(t, "list", code, http.StatusOK, body)
	list := decode[api.Bundles](t, body).Bundles
	if len(list) != 2 || list[0].Version != 2 || list[1].Version != 1 {
		t.Errorf("list = %+v, want v2 then v1", list)
	}
}

// The control plane accepts only what it can verify.
func TestBundlePublishRefusals(t *testing.T) {
	key, keys := bundleKey(t)
	other, _ := bundleKey(t)
	e := newEnv(t, func(c *Config) { c.BundleKeys = keys })
	now := e.clock.Now()
	good := signBundle(t, key, "mobile", 3, now)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
	expired, err := bundle.Sign(key, "mobile", 4, now.Add(-48*time.Hour), now.Add(-time.Hour), mustPolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"unknown key", signBundle(t, other, "mobile", 3, now), 400, "bundle refused"},
		{"tampered", tampered, 400, "bundle refused"},
		{"expired", expired, 400, "expired"},
		{"not a JWS", "hello", 400, "bundle refused"},
		{"too large", strings.Repeat("a", 2<<20), 413, "larger than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.admin(t, "POST", "/v1/admin/bundles", []byte(tc.body))
			if code != tc.code || !strings.Contains(errorMessage(t, body), tc.msg) {
				t.Errorf("%d %s, want %d containing %q", code, body, tc.code, tc.msg)
			}
		})
	}
	if code, _, _ := e.do(t, "GET", "/v1/bundles/mobile", nil); code != http.StatusNotFound {
		t.Errorf("a refused bundle is served: %d", code)
	}
	for _, name := range []string{"UPPER", "..", "a%2Fb", strings.Repeat("a", 65)} {
		if code, _, _ := e.do(t, "GET", "/v1/bundles/"+name, nil); code != http.StatusNotFound {
			t.Errorf("bundle name %q: %d, want 404", name, code)
		}
	}

	// Without keys, nothing is accepted.
	e2 := newEnv(t, nil)
	code, body := e2.admin(t, "POST", "/v1/admin/bundles", []byte(good))
	if code != http.StatusForbidden || !strings.Contains(errorMessage(t, body), "--bundle-key") {
		t.Errorf("no keys configured: %d %s", code, body)
	}
}

func mustPolicy(t *testing.T) *pin.Policy {
	t.Helper()
	p, err := pin.NewPolicy("", pin.Domain{Name: "api.payments.test", Pins: []pin.Pin{pin.FromSPKI([]byte("a")), pin.FromSPKI([]byte("b"))}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// What the control plane answers is what internal/app/cli decodes: the
// admin API's types (package api) hold every member of a published
// bundle and of a refusal, nothing more and nothing less.
func TestBundleAnswersAreTheAPITypes(t *testing.T) {
	key, keys := bundleKey(t)
	e := newEnv(t, func(c *Config) { c.BundleKeys = keys })
	strict := func(body []byte, v any) {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s does not decode as %T: %v", body, v, err)
		}
		// Answers are indented; refusals come from the one refusal
		// writer (internal/util/httpx), compact.
		again, _ := json.MarshalIndent(v, "", "  ")
		if _, isErr := v.(*api.Error); isErr {
			again, _ = json.Marshal(v)
		}
		if !bytes.Equal(append(again, '\n'), body) {
			t.Errorf("%T does not write back what the server wrote:\n%s\n%s", v, again, body)
		}
	}
	code, body := e.admin(t, "POST", "/v1/admin/bundles", []byte(signBundle(t, key, "mobile", 1, e.clock.Now())))
	wantStatus(t, "publish", code, http.StatusCreated, body)
	strict(body, new(api.PublishedBundle))
	code, body = e.admin(t, "GET", "/v1/admin/bundles", nil)
	wantStatus(t, "list", code, http.StatusOK, body)
	strict(body, new(api.Bundles))
	code, body = e.admin(t, "POST", "/v1/admin/bundles", []byte(signBundle(t, key, "mobile", 1, e.clock.Now())))
	wantStatus(t, "publish again", code, http.StatusConflict, body)
	strict(body, new(api.Error))
}
