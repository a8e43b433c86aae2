package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/rampartsec/rampart/gateway"
)

// A gateway built in Go: one route to a service on loopback that takes
// anonymous GETs with small bodies. New refuses what it would not serve
// safely, such as plain http to another host.
func ExampleNew() {
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "the service saw %s %s\n", r.Method, r.URL.Path)
	}))
	defer service.Close()
	upstream, _ := url.Parse(service.URL)

	g, err := gateway.New(gateway.Options{
		Routes: []gateway.Route{{
			Prefix:         "/status/",
			Upstream:       upstream,
			AllowAnonymous: true, // the zero value authenticates
			Methods:        []string{http.MethodGet},
			MaxBody:        1 << 10,
			Timeout:        5 * time.Second,
		}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	w := httptest.NewRecorder()
	g.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/status/db", nil))
	body, _ := io.ReadAll(w.Body)
	fmt.Printf("GET: %d %s", w.Code, body)
	w = httptest.NewRecorder()
	g.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/status/db", nil))
	fmt.Printf("POST: %d, Allow: %s\n", w.Code, w.Header().Get("Allow"))

	elsewhere, _ := url.Parse("http://10.0.0.5:8080")
	_, err = gateway.New(gateway.Options{Routes: []gateway.Route{{Prefix: "/v1/", Upstream: elsewhere, AllowAnonymous: true}}})
	fmt.Println(err)
	// Output:
	// GET: 200 the service saw GET /status/db
	// POST: 405, Allow: GET, HEAD
	// gateway: route "/v1/": upstream "http://10.0.0.5:8080": plain http only to loopback; use https (mutual TLS)
}
