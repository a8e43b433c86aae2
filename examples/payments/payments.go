// Package payments is an example payment service behind rampart gateway,
// written the way Rampart asks services to be written: every control the
// gateway applies is applied again here, so that a request that gets
// around the gateway gets nothing.
//
//   - Transport: only mutual TLS, and only from the gateway's SPIFFE ID
//     (mtls.Authorize); a caller without the gateway's certificate is
//     refused before any credential is looked at.
//   - Authentication: the API key or bearer token the client sent to the
//     gateway, checked again (token.Authenticate).
//   - Authorization: a scope per operation (token.RequireScope), below.
//   - Input: JSON bodies of at most 16 KiB, unknown fields refused, amounts
//     in integer minor units; every refusal is a 4xx with problem details
//     (RFC 9457).
//
// The operations:
//
//	GET  /v1/payments     payment.read      the caller's payments
//	POST /v1/payments     payment.write     make a payment
//	POST /v1/withdrawals  payment.withdraw  withdraw to a bank account
//	POST /v1/swaps        payment.write     exchange currencies: at most
//	                                        100 a minute per client
//
// The ledger is in memory: it is an example, not a bank.
package payments

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/ratelimit"
	"github.com/rampartsec/rampart/token"
)

// The scopes of the API.
const (
	ScopeRead     = "payment.read"
	ScopeWrite    = "payment.write"
	ScopeWithdraw = "payment.withdraw"
)

// SwapRule is the name of the business rate limit on swaps.
const SwapRule = "swap"

// SwapLimit is the default limit on swaps: 100 a minute per client.
var SwapLimit = ratelimit.PerMinute(100, 100)

// MaxBody is the largest request body accepted.
const MaxBody = 16 << 10

// MaxAmount bounds an amount in minor units (10 billion in major units
// for a two-decimal currency): larger ones are mistakes or attacks.
const MaxAmount = 1_000_000_000_000

// Config configures the service.
type Config struct {
	// Gateways are the SPIFFE IDs allowed to call the service: the
	// gateway's service certificate. Required.
	Gateways []spiffeid.ID
	// APIKeys and Tokens check the client's credential; at least one is
	// required.
	APIKeys *apikey.Verifier
	Tokens  *token.Validator
	// Limits applies the SwapRule business rule; nil means 100 swaps a
	// minute per client in memory (this instance only: give a Limiter
	// with a redisstore to share the limit between instances).
	Limits *ratelimit.Limiter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service is the payment API.
type Service struct {
	cfg    Config
	ledger *ledger
	h      http.Handler
}

// New returns the service for cfg.
func New(cfg Config) (*Service, error) {
	if len(cfg.Gateways) == 0 {
		return nil, errors.New("payments: Config.Gateways is empty: name the gateway's SPIFFE ID")
	}
	if cfg.APIKeys == nil && cfg.Tokens == nil {
		return nil, errors.New("payments: Config needs APIKeys or Tokens")
	}
	if cfg.Limits == nil {
		cfg.Limits = &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: SwapRule, Kind: ratelimit.Business, Limit: SwapLimit}}}
	}
	if err := cfg.Limits.Init(); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg, ledger: newLedger()}

	mux := http.NewServeMux()
	mux.Handle("GET /v1/payments", token.RequireScope(ScopeRead)(http.HandlerFunc(s.listPayments)))
	mux.Handle("POST /v1/payments", token.RequireScope(ScopeWrite)(http.HandlerFunc(s.createPayment)))
	mux.Handle("POST /v1/withdrawals", token.RequireScope(ScopeWithdraw)(http.HandlerFunc(s.createWithdrawal)))
	mux.Handle("POST /v1/swaps", token.RequireScope(ScopeWrite)(http.HandlerFunc(s.createSwap)))
	authn := token.Authenticate(cfg.Tokens, cfg.APIKeys)(mux)
	s.h = mtls.Authorize(cfg.Gateways...)(authn)
	return s, nil
}

// ServeHTTP serves the API.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.h.ServeHTTP(w, r) }

// Payment is a payment made by a client.
type Payment struct {
	ID          string    `json:"id"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	Payee       string    `json:"payee"`
	Reference   string    `json:"reference,omitempty"`
	Created     time.Time `json:"created"`
}

// Withdrawal moves money to a bank account.
type Withdrawal struct {
	ID          string    `json:"id"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	IBAN        string    `json:"iban"`
	Created     time.Time `json:"created"`
}

// Swap exchanges one currency for another.
type Swap struct {
	ID        string    `json:"id"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	FromMinor int64     `json:"from_minor"`
	ToMinor   int64     `json:"to_minor"`
	Created   time.Time `json:"created"`
}

func (s *Service) listPayments(w http.ResponseWriter, r *http.Request) {
	p := token.FromContext(r.Context())
	list := s.ledger.payments(p.ClientID)
	writeJSON(w, http.StatusOK, map[string]any{"payments": list})
}

func (s *Service) createPayment(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AmountMinor int64  `json:"amount_minor"`
		Currency    string `json:"currency"`
		Payee       string `json:"payee"`
		Reference   string `json:"reference"`
	}
	if !decode(w, r, &in) {
		return
	}
	if msg := checkAmount(in.AmountMinor, in.Currency); msg != "" {
		problem(w, http.StatusUnprocessableEntity, msg)
		return
	}
	if in.Payee == "" || len(in.Payee) > 140 || len(in.Reference) > 140 {
		problem(w, http.StatusUnprocessableEntity, "payee is required; payee and reference are at most 140 bytes")
		return
	}
	p := token.FromContext(r.Context())
	pay := Payment{ID: newID("pay"), AmountMinor: in.AmountMinor, Currency: in.Currency,
		Payee: in.Payee, Reference: in.Reference, Created: s.cfg.Now().UTC()}
	s.ledger.addPayment(p.ClientID, pay)
	writeJSON(w, http.StatusCreated, pay)
}

func (s *Service) createWithdrawal(w http.ResponseWriter, r *http.Request) {
	var in struct {
		AmountMinor int64  `json:"amount_minor"`
		Currency    string `json:"currency"`
		IBAN        string `json:"iban"`
	}
	if !decode(w, r, &in) {
		return
	}
	if msg := checkAmount(in.AmountMinor, in.Currency); msg != "" {
		problem(w, http.StatusUnprocessableEntity, msg)
		return
	}
	if n := len(in.IBAN); n < 15 || n > 34 {
		problem(w, http.StatusUnprocessableEntity, "iban: want 15 to 34 characters")
		return
	}
	wd := Withdrawal{ID: newID("wd"), AmountMinor: in.AmountMinor, Currency: in.Currency, IBAN: in.IBAN, Created: s.cfg.Now().UTC()}
	s.ledger.addWithdrawal(token.FromContext(r.Context()).ClientID, wd)
	writeJSON(w, http.StatusCreated, wd)
}

// rates are the example's exchange rates, in parts per million of USD.
var rates = map[string]int64{"USD": 1_000_000, "EUR": 1_080_000, "GBP": 1_270_000, "CHF": 1_130_000, "JPY": 6_700}

func (s *Service) createSwap(w http.ResponseWriter, r *http.Request) {
	p := token.FromContext(r.Context())
	// The limit is checked before the body is read: a client over its
	// limit costs no parsing.
	d, err := s.cfg.Limits.Allow(r.Context(), SwapRule, p.ClientID)
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
	if msg := checkAmount(in.FromMinor, in.From); msg != "" {
		problem(w, http.StatusUnprocessableEntity, msg)
		return
	}
	from, okFrom := rates[in.From]
	to, okTo := rates[in.To]
	if !okFrom || !okTo || in.From == in.To {
		problem(w, http.StatusUnprocessableEntity, "from and to: two different currencies among CHF, EUR, GBP, JPY, USD")
		return
	}
	// in.FromMinor ≤ MaxAmount and rates ≤ 2e6, so the product fits.
	sw := Swap{ID: newID("swap"), From: in.From, To: in.To, FromMinor: in.FromMinor,
		ToMinor: in.FromMinor * from / to, Created: s.cfg.Now().UTC()}
	s.ledger.addSwap(p.ClientID, sw)
	writeJSON(w, http.StatusCreated, sw)
}

func checkAmount(minor int64, currency string) string {
	if minor <= 0 || minor > MaxAmount {
		return fmt.Sprintf("amount_minor: want 1 to %d (integer minor units)", int64(MaxAmount))
	}
	if len(currency) != 3 || currency[0] < 'A' || currency[0] > 'Z' || currency[1] < 'A' || currency[1] > 'Z' || currency[2] < 'A' || currency[2] > 'Z' {
		return "currency: want an ISO 4217 code such as EUR"
	}
	return ""
}

// decode reads a JSON body into v, answering the request itself when it
// cannot: 415 for another media type, 413 for a body over MaxBody, 400
// for anything malformed or unknown.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		problem(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON value")
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is limited to %d bytes", MaxBody))
			return false
		}
		problem(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// ledger keeps each client's records, in memory and bounded: a client's
// oldest records are forgotten past maxRecords.
type ledger struct {
	mu          sync.Mutex
	byClient    map[string]*account
	maxRecords  int
	maxAccounts int
}

type account struct {
	payments    []Payment
	withdrawals []Withdrawal
	swaps       []Swap
}

func newLedger() *ledger {
	return &ledger{byClient: map[string]*account{}, maxRecords: 1000, maxAccounts: 100_000}
}

func (l *ledger) account(client string) *account {
	a := l.byClient[client]
	if a == nil {
		if len(l.byClient) >= l.maxAccounts {
			for k := range l.byClient { // forget an arbitrary account
				delete(l.byClient, k)
				break
			}
		}
		a = &account{}
		l.byClient[client] = a
	}
	return a
}

func keep[T any](s []T, v T, max int) []T {
	s = append(s, v)
	if len(s) > max {
		s = slices.Delete(s, 0, len(s)-max)
	}
	return s
}

func (l *ledger) addPayment(client string, p Payment) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.account(client)
	a.payments = keep(a.payments, p, l.maxRecords)
}

func (l *ledger) addWithdrawal(client string, w Withdrawal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.account(client)
	a.withdrawals = keep(a.withdrawals, w, l.maxRecords)
}

func (l *ledger) addSwap(client string, s Swap) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.account(client)
	a.swaps = keep(a.swaps, s, l.maxRecords)
}

func (l *ledger) payments(client string) []Payment {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.byClient[client]
	if a == nil {
		return []Payment{}
	}
	return slices.Clone(a.payments)
}
