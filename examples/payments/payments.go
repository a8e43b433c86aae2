// Package payments is an example payment service behind rampart gateway,
// written the way Rampart asks services to be written: every control the
// gateway applies is applied again here, so that a request that gets
// around the gateway gets nothing.
//
//   - Transport: only mutual TLS, and only from the gateway's SPIFFE ID
//     (mtls.Authorize); a caller without the gateway's certificate is
//     refused before any credential is looked at.
//   - Authentication: the API key or bearer token the client sent to the
//     gateway, checked again (auth.Middleware).
//   - Authorization: a scope per operation (auth.RequireScope), below.
//   - Input: JSON bodies of at most 16 KiB holding one object whose fields
//     are named exactly (case included) and once each, unknown fields
//     refused, amounts in integer minor units; every refusal is a 4xx
//     with problem details (RFC 9457), unknown paths and methods included.
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
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/auth"
	"github.com/rampartsec/rampart/internal/util/httpx"
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
	// Roots are the trust bundles the gateways' certificates verify
	// against, by trust domain (mtls.LoadBundle of the internal CA's
	// root.pem): a gateway's certificate is checked against its own trust
	// domain's roots alone. Required.
	Roots x509bundle.Source
	// APIKeys and Tokens check the client's credential; at least one is
	// required.
	APIKeys *apikey.Verifier
	Tokens  *token.Validator
	// Limits applies the SwapRule business rule, which it must have;
	// nil means 100 swaps a minute per client in memory, on the clock
	// Now (this instance only: give a Limiter with a redisstore to share
	// the limit between instances).
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
	if cfg.Roots == nil {
		return nil, errors.New("payments: Config.Roots is nil: give the roots the gateway's certificate verifies against")
	}
	if cfg.APIKeys == nil && cfg.Tokens == nil {
		return nil, errors.New("payments: Config needs APIKeys or Tokens")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Limits == nil {
		cfg.Limits = &ratelimit.Limiter{Rules: []ratelimit.Rule{{Name: SwapRule, Kind: ratelimit.Business, Limit: SwapLimit}}, Now: cfg.Now}
	}
	if err := cfg.Limits.Init(); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	// Without the rule, Allow would fail on every swap, at run time.
	if !slices.ContainsFunc(cfg.Limits.Rules, func(r ratelimit.Rule) bool { return r.Name == SwapRule }) {
		return nil, fmt.Errorf("payments: Config.Limits has no rule %q", SwapRule)
	}
	s := &Service{cfg: cfg, ledger: newLedger()}

	mux := http.NewServeMux()
	mux.Handle("GET /v1/payments", auth.RequireScope(ScopeRead)(http.HandlerFunc(s.listPayments)))
	mux.Handle("POST /v1/payments", auth.RequireScope(ScopeWrite)(http.HandlerFunc(s.createPayment)))
	mux.Handle("POST /v1/withdrawals", auth.RequireScope(ScopeWithdraw)(http.HandlerFunc(s.createWithdrawal)))
	mux.Handle("POST /v1/swaps", auth.RequireScope(ScopeWrite)(http.HandlerFunc(s.createSwap)))
	// ServeMux would answer other methods and paths in plain text.
	for path, allow := range map[string]string{"/v1/payments": "GET, HEAD, POST", "/v1/withdrawals": "POST", "/v1/swaps": "POST"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			problem(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s allows %s", path, allow))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "no such resource")
	})
	authn := auth.Middleware(cfg.APIKeys, cfg.Tokens)(mux)
	s.h = httpx.Framing(mtls.Authorize(cfg.Roots, cfg.Gateways...)(authn)) // ambiguous request framing: answered and closed (RFC 9112 §6.1)
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
	p := auth.FromContext(r.Context())
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
	p := auth.FromContext(r.Context())
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
	if !validIBAN(in.IBAN) {
		problem(w, http.StatusUnprocessableEntity, "iban: want an IBAN in electronic format (15 to 34 capital letters and digits, no spaces) with valid check digits")
		return
	}
	wd := Withdrawal{ID: newID("wd"), AmountMinor: in.AmountMinor, Currency: in.Currency, IBAN: in.IBAN, Created: s.cfg.Now().UTC()}
	s.ledger.addWithdrawal(auth.FromContext(r.Context()).ClientID, wd)
	writeJSON(w, http.StatusCreated, wd)
}

// validIBAN reports whether s is an IBAN in electronic format (ISO
// 13616): a country code, two check digits and up to 30 letters and
// digits, whose check digits verify (ISO 7064 mod 97-10). The checksum is
// what catches a mistyped account before money leaves for it.
func validIBAN(s string) bool {
	if len(s) < 15 || len(s) > 34 {
		return false
	}
	rem := 0
	for i := range len(s) {
		c := s[(i+4)%len(s)] // the first four characters go last
		isDigit, isUpper := '0' <= c && c <= '9', 'A' <= c && c <= 'Z'
		switch j := (i + 4) % len(s); {
		case j < 2 && !isUpper, j >= 2 && j < 4 && !isDigit, !isDigit && !isUpper:
			return false
		}
		if isDigit {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return rem == 1
}

// currencies are the ones swapped: the example's exchange rate, in parts
// per million of a US dollar per unit (a dollar, a yen), and the digits
// of the minor unit (ISO 4217: a cent is 10^-2 dollar, the yen has none).
var currencies = map[string]struct {
	usdPPM int64
	digits int
}{
	"USD": {1_000_000, 2}, "EUR": {1_080_000, 2}, "GBP": {1_270_000, 2}, "CHF": {1_130_000, 2}, "JPY": {6_700, 0},
}

// convert returns amount minor units of from in minor units of to,
// rounded down (the client never gets more than it paid for), and false
// if that does not fit an int64.
func convert(amount int64, from, to string) (int64, bool) {
	f, t := currencies[from], currencies[to]
	// amount · f.usdPPM · 10^t.digits / (t.usdPPM · 10^f.digits): the
	// numerator can exceed an int64.
	n := new(big.Int).Mul(big.NewInt(amount), big.NewInt(f.usdPPM))
	n.Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(t.digits)), nil))
	d := new(big.Int).Mul(big.NewInt(t.usdPPM), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.digits)), nil))
	n.Quo(n, d)
	return n.Int64(), n.IsInt64()
}

func (s *Service) createSwap(w http.ResponseWriter, r *http.Request) {
	p := auth.FromContext(r.Context())
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
	_, okFrom := currencies[in.From]
	_, okTo := currencies[in.To]
	if !okFrom || !okTo || in.From == in.To {
		problem(w, http.StatusUnprocessableEntity, "from and to: two different currencies among CHF, EUR, GBP, JPY, USD")
		return
	}
	toMinor, ok := convert(in.FromMinor, in.From, in.To)
	if !ok || toMinor < 1 {
		problem(w, http.StatusUnprocessableEntity, fmt.Sprintf("from_minor: too small to buy one minor unit of %s", in.To))
		return
	}
	sw := Swap{ID: newID("swap"), From: in.From, To: in.To, FromMinor: in.FromMinor,
		ToMinor: toMinor, Created: s.cfg.Now().UTC()}
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

// decode reads a JSON object into v, a pointer to a struct, answering the
// request itself when it cannot: 415 for another media type, 413 for a
// body over MaxBody, 400 for anything malformed or unknown.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		problem(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			problem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is limited to %d bytes", MaxBody))
		} else {
			problem(w, http.StatusBadRequest, "the body could not be read")
		}
		return false
	}
	if err := checkFields(body, v); err != nil {
		problem(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		problem(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

// checkFields checks that body is one JSON object, and nothing after it,
// whose names are json names of the fields of *v, each exactly and at
// most once. encoding/json alone would take "AMOUNT_MINOR" for
// amount_minor, and the last of two amount_minor: a body that another
// parser on the way (a gateway, an audit log) reads otherwise.
func checkFields(body []byte, v any) error {
	known := map[string]bool{}
	for f := range reflect.TypeOf(v).Elem().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			known[name] = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil {
		return err
	} else if tok != json.Delim('{') {
		return errors.New("want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		switch {
		case bytes.IndexByte(body[before:dec.InputOffset()], '\\') >= 0:
			// {"amount\u005fminor": 1} is amount_minor to encoding/json,
			// and to nothing that matches the raw bytes.
			return fmt.Errorf("field name %q is written with an escape: write it as is", name)
		case !known[name]:
			return fmt.Errorf("unknown field %q", name)
		case seen[name]:
			return fmt.Errorf("field %q given twice", name)
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// problem answers with RFC 9457 problem details.
func problem(w http.ResponseWriter, status int, detail string) {
	httpx.WriteProblem(w, httpx.Problem{Status: status, Detail: detail})
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
