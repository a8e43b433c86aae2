package demo

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
)

// The payment API's scopes.
const (
	ScopeRead     = "payment.read"
	ScopeWrite    = "payment.write"
	ScopeWithdraw = "payment.withdraw"
)

// Scopes are the payment API's scopes, as the control plane grants them.
var Scopes = []string{ScopeRead, ScopeWrite, ScopeWithdraw}

// swapRule is the business limit on swaps: 100 a minute per client.
const swapRule = "swap"

// maxBody bounds a request body of the payment API.
const maxBody = 16 << 10

// paymentAPI is the demo's payment service, cut to the calls the demo
// makes. examples/payments is the full example (and the reference for
// strict input); the rampart binary does not link examples, so the demo
// serves this one. Every control the gateway applies is applied again:
// mutual TLS from the gateway alone, the client's credential checked
// again, a scope per operation, and the swap limit.
type paymentAPI struct {
	limits *ratelimit.Limiter

	mu       sync.Mutex
	payments map[string][]payment // by client
}

type payment struct {
	ID          string    `json:"id"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	Payee       string    `json:"payee"`
	Created     time.Time `json:"created"`
}

// newPaymentAPI returns the service's handler: callers other than gateway
// (by its certificate under roots) are refused before any credential is
// looked at; then authns checks the credential.
func newPaymentAPI(gateway spiffeid.ID, roots *x509bundle.Bundle, authns ...auth.Authenticator) (http.Handler, error) {
	p := &paymentAPI{
		limits: &ratelimit.Limiter{Rules: []ratelimit.Rule{{
			Name: swapRule, Kind: ratelimit.Business, Limit: ratelimit.PerMinute(100, 100),
		}}},
		payments: map[string][]payment{},
	}
	if err := p.limits.Init(); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/payments", auth.RequireScope(ScopeRead)(http.HandlerFunc(p.list)))
	mux.Handle("POST /v1/payments", auth.RequireScope(ScopeWrite)(http.HandlerFunc(p.create)))
	mux.Handle("POST /v1/swaps", auth.RequireScope(ScopeWrite)(http.HandlerFunc(p.swap)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusNotFound, Detail: "no such resource"})
	})
	h := auth.Middleware(authns...)(mux)
	return httpx.Framing(mtls.Authorize(roots, gateway)(h)), nil
}

func (p *paymentAPI) list(w http.ResponseWriter, r *http.Request) {
	client := auth.FromContext(r.Context()).ClientID
	p.mu.Lock()
	list := append([]payment{}, p.payments[client]...)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"payments": list})
}

func (p *paymentAPI) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AmountMinor int64  `json:"amount_minor"`
		Currency    string `json:"currency"`
		Payee       string `json:"payee"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.AmountMinor <= 0 || len(in.Currency) != 3 || in.Payee == "" {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusUnprocessableEntity,
			Detail: "want a positive amount_minor, a three-letter currency and a payee"})
		return
	}
	pay := payment{ID: newID("pay"), AmountMinor: in.AmountMinor, Currency: in.Currency, Payee: in.Payee, Created: time.Now().UTC()}
	client := auth.FromContext(r.Context()).ClientID
	p.mu.Lock()
	p.payments[client] = append(p.payments[client], pay)
	if n := len(p.payments[client]); n > 1000 {
		p.payments[client] = p.payments[client][n-1000:]
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusCreated, pay)
}

func (p *paymentAPI) swap(w http.ResponseWriter, r *http.Request) {
	// The limit is checked before the body is read: a client over its
	// limit costs no parsing.
	d, err := p.limits.Allow(r.Context(), swapRule, auth.FromContext(r.Context()).ClientID)
	if err != nil {
		ratelimit.Unavailable(w, err)
		return
	}
	if !d.Allowed {
		ratelimit.Deny(w, d)
		return
	}
	ratelimit.Headers(w.Header(), d)
	var in struct {
		From      string `json:"from"`
		To        string `json:"to"`
		FromMinor int64  `json:"from_minor"`
	}
	if !decode(w, r, &in) {
		return
	}
	if in.FromMinor <= 0 || len(in.From) != 3 || len(in.To) != 3 || in.From == in.To {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusUnprocessableEntity,
			Detail: "want a positive from_minor and two different three-letter currencies"})
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": newID("swap"), "from": in.From, "to": in.To, "from_minor": in.FromMinor})
}

// decode reads a JSON object of at most maxBody bytes into v, unknown
// fields refused, or answers the request with the 4xx that says why.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusUnsupportedMediaType, Detail: "Content-Type must be application/json"})
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("data after the JSON value")
	}
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("the body is limited to %d bytes", maxBody)})
		return false
	}
	if err != nil {
		httpx.WriteProblem(w, httpx.Problem{Status: http.StatusBadRequest, Detail: "malformed JSON body: " + err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newID(prefix string) string {
	var b [12]byte
	io.ReadFull(rand.Reader, b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}
