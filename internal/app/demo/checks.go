package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store"
	"github.com/rampartsec/rampart/mtls"
	"github.com/rampartsec/rampart/pin"
	"github.com/rampartsec/rampart/pin/report"
)

// grace is the grace period of the key the checklist rotates: short, so
// that the check can see it end.
const grace = 3 * time.Second

// row is one line of the checklist.
type row struct {
	name  string
	check func(ctx context.Context) error
}

// checklist runs the checks and prints a pass/fail table.
func (s *system) checklist(ctx context.Context, out io.Writer) bool {
	rep := &report.Reporter{Client: s.cpClient(), Logger: slog.New(slog.DiscardHandler)}
	defer rep.Close()
	rows := []row{
		{"pinned client reaches the payment API through the gateway", s.checkPinnedAccepts},
		{"rogue-CA certificate for the API's name is refused by a pinned client", s.checkRogueRefused},
		{"the same certificate fools a client without pinning and gets its API key (the threat)", s.checkThreat},
		{"the gateway's renewal on the backup key keeps pinned clients working", s.checkBackupRenewal},
		{"report-only mode lets the connection through and reports it to the control plane (RFC 7469)", func(ctx context.Context) error {
			return s.checkReportOnly(ctx, rep)
		}},
		{"a rotated API key works during its grace period, next to its successor", s.checkRotationGrace},
		{"... and is refused once the grace period is over", s.checkRotationOver},
		{"a payment.read token can list payments but not create one (403 insufficient_scope)", s.checkScopes},
		{"the 101st swap within a minute is refused with 429 and Retry-After", s.checkSwapLimit},
		{"the payment service refuses a call without the gateway's client certificate", s.checkDirectRefused},
	}
	allOK := true
	fmt.Fprintf(out, "Checklist:\n")
	for _, r := range rows {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := r.check(rctx)
		cancel()
		mark := "PASS"
		if err != nil {
			mark, allOK = "FAIL", false
		}
		fmt.Fprintf(out, "  %s  %s\n", mark, r.name)
		if err != nil {
			fmt.Fprintf(out, "        %s\n", strings.ReplaceAll(err.Error(), "\n", "\n        "))
		}
	}
	return allOK
}

func (s *system) checkPinnedAccepts(ctx context.Context) error {
	resp, err := s.call(ctx, s.pinned(s.policy, nil), s.gateway, http.MethodGet, "/v1/payments", s.appKey.String(), nil)
	if err != nil {
		return err
	}
	return want(resp, http.StatusOK)
}

func (s *system) checkRogueRefused(ctx context.Context) error {
	_, err := s.call(ctx, s.pinned(s.policy, nil), s.attacker, http.MethodGet, "/v1/payments", s.appKey.String(), nil)
	var me *pin.MismatchError
	if errors.As(err, &me) {
		if s.attackerSawAPIKey.Load() {
			return errors.New("the attacker received the API key")
		}
		return nil
	}
	return fmt.Errorf("want a pin mismatch, got %v", err)
}

func (s *system) checkThreat(ctx context.Context) error {
	unpinned := &http.Client{Transport: s.transport()}
	resp, err := s.call(ctx, unpinned, s.attacker, http.MethodGet, "/v1/payments", s.appKey.String(), nil)
	if err != nil {
		return err
	}
	if err := want(resp, http.StatusOK); err != nil {
		return err
	}
	if !s.attackerSawAPIKey.Load() {
		return errors.New("the attacker did not receive the API key")
	}
	return nil
}

// checkBackupRenewal renews the gateway's certificate on the backup key,
// by replacing its files as an operator would, checks that pinned
// clients still connect, and puts the first certificate back.
func (s *system) checkBackupRenewal(ctx context.Context) error {
	if err := s.swapGatewayCert(ctx, s.renewed, s.backupPin); err != nil {
		return err
	}
	resp, err := s.call(ctx, s.pinned(s.policy, nil), s.gateway, http.MethodGet, "/v1/payments", s.appKey.String(), nil)
	if err == nil {
		err = want(resp, http.StatusOK)
	}
	if rerr := s.swapGatewayCert(ctx, s.primary, s.leafPin); err == nil {
		err = rerr
	}
	return err
}

// swapGatewayCert writes the gateway's certificate files and waits until
// the gateway serves the certificate with pin p.
func (s *system) swapGatewayCert(ctx context.Context, pair [2][]byte, p pin.Pin) error {
	if err := s.writeFiles(map[string][]byte{"gateway.pem": pair[0], "gateway.key": pair[1]}); err != nil {
		return err
	}
	for {
		c, err := tls.Dial("tcp", s.gateway.addr, &tls.Config{ServerName: Host, RootCAs: s.publicRoots})
		if err == nil {
			served := pin.FromCertificate(c.ConnectionState().PeerCertificates[0])
			c.Close()
			if served == p {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the gateway did not reload its certificate: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *system) checkReportOnly(ctx context.Context, rep *report.Reporter) error {
	before, err := s.store.Reports().Total(ctx, store.ReportFilter{})
	if err != nil {
		return err
	}
	resp, err := s.call(ctx, s.pinned(s.reportOnly, rep), s.attacker, http.MethodGet, "/", "", nil)
	if err != nil {
		return fmt.Errorf("report-only mode refused the connection: %w", err)
	}
	resp.Body.Close()
	if err := rep.Flush(ctx); err != nil {
		return err
	}
	if st := rep.Stats(); st.Failed > 0 {
		return fmt.Errorf("the report was not delivered: %+v", st)
	}
	// The control plane commits reports in batches.
	for {
		n, err := s.store.Reports().Total(ctx, store.ReportFilter{})
		if err != nil {
			return err
		}
		if n == before+1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the control plane holds %d new reports, want 1", n-before)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rotated is the key the rotation checks use.
type rotated struct {
	old, successor apikey.Key
	graceUntil     time.Time
}

func (s *system) checkRotationGrace(ctx context.Context) error {
	old, rec, err := s.newClient(ctx, "demo-batch", []string{"payment.read"})
	if err != nil {
		return err
	}
	successor, _, err := s.keys.Rotate(ctx, rec.ID, grace)
	if err != nil {
		return err
	}
	s.rotation = rotated{old: old, successor: successor, graceUntil: time.Now().Add(grace)}
	c := s.pinned(s.policy, nil)
	for _, k := range []apikey.Key{old, successor} {
		resp, err := s.call(ctx, c, s.gateway, http.MethodGet, "/v1/payments", k.String(), nil)
		if err != nil {
			return err
		}
		if err := want(resp, http.StatusOK); err != nil {
			return fmt.Errorf("key %s: %w", k.Hint(), err)
		}
		if k == old && resp.Header.Get("Deprecation") == "" {
			return errors.New("the rotated key's response has no Deprecation header")
		}
	}
	return nil
}

func (s *system) checkRotationOver(ctx context.Context) error {
	if s.rotation.graceUntil.IsZero() {
		return errors.New("no key was rotated")
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(s.rotation.graceUntil) + 100*time.Millisecond):
	}
	c := s.pinned(s.policy, nil)
	resp, err := s.call(ctx, c, s.gateway, http.MethodGet, "/v1/payments", s.rotation.old.String(), nil)
	if err != nil {
		return err
	}
	if err := want(resp, http.StatusUnauthorized); err != nil {
		return fmt.Errorf("old key after the grace period: %w", err)
	}
	resp, err = s.call(ctx, c, s.gateway, http.MethodGet, "/v1/payments", s.rotation.successor.String(), nil)
	if err != nil {
		return err
	}
	if err := want(resp, http.StatusOK); err != nil {
		return fmt.Errorf("successor key: %w", err)
	}
	return nil
}

func (s *system) checkScopes(ctx context.Context) error {
	key, _, err := s.newClient(ctx, "demo-reader", []string{"payment.read"})
	if err != nil {
		return err
	}
	// Client credentials grant, the API key as client secret (RFC 6749
	// §4.4, §2.3.1).
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"payment.read"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cpURL+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-reader", key.String())
	resp, err := s.cpClient().Do(req)
	if err != nil {
		return err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tok.AccessToken == "" {
		return fmt.Errorf("token endpoint: %s (%v)", resp.Status, err)
	}
	c := s.pinned(s.policy, nil)
	bearer := "Bearer " + tok.AccessToken
	if resp, err = s.call(ctx, c, s.gateway, http.MethodGet, "/v1/payments", bearer, nil); err != nil {
		return err
	}
	if err := want(resp, http.StatusOK); err != nil {
		return fmt.Errorf("listing with the token: %w", err)
	}
	body := []byte(`{"amount_minor": 1250, "currency": "EUR", "payee": "ACME Ltd"}`)
	if resp, err = s.call(ctx, c, s.gateway, http.MethodPost, "/v1/payments", bearer, body); err != nil {
		return err
	}
	if err := want(resp, http.StatusForbidden); err != nil {
		return fmt.Errorf("creating with the token: %w", err)
	}
	// RFC 6750 §3.1: insufficient_scope, naming the scope required.
	if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, "payment.write") {
		return fmt.Errorf("WWW-Authenticate %q: want insufficient_scope naming payment.write", h)
	}
	return nil
}

func (s *system) checkSwapLimit(ctx context.Context) error {
	key, _, err := s.newClient(ctx, "demo-trader", []string{"payment.write"})
	if err != nil {
		return err
	}
	c := s.pinned(s.policy, nil)
	body := []byte(`{"from": "EUR", "to": "USD", "from_minor": 10000}`)
	// The limit is 100 a minute with a burst of 100 (GCRA): one more swap
	// is allowed for every 600 ms the first hundred take, which a loaded
	// machine can make longer than that. So swaps go on until one is
	// refused, and the count admitted must be the burst plus what the
	// elapsed time refilled, no more.
	start := time.Now()
	for i := 1; ; i++ {
		resp, err := s.call(ctx, c, s.gateway, http.MethodPost, "/v1/swaps", key.String(), body)
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusCreated {
			if refill := int(time.Since(start) / (600 * time.Millisecond)); i > 100+refill+1 {
				return fmt.Errorf("swap %d admitted after %v: the limit allows at most %d", i, time.Since(start).Round(time.Millisecond), 100+refill+1)
			}
			continue
		}
		if i <= 100 {
			return fmt.Errorf("swap %d: %w", i, want(resp, http.StatusCreated))
		}
		if err := want(resp, http.StatusTooManyRequests); err != nil {
			return fmt.Errorf("swap %d: %w", i, err)
		}
		if resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("swap %d: no Retry-After", i)
		}
		return nil
	}
}

// checkDirectRefused calls the payment service without the gateway: with
// no client certificate, and with a valid certificate of another
// service. The same request with the gateway's certificate succeeds,
// which shows that the refusals are the certificate's.
func (s *system) checkDirectRefused(ctx context.Context) error {
	direct := func(tc *tls.Config) (*http.Response, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.payments.addr+"/v1/payments", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-API-Key", s.appKey.String())
		return c.Do(req)
	}
	// No client certificate. The probe does not check the server: the
	// point is what the server does.
	if resp, err := direct(&tls.Config{InsecureSkipVerify: true}); err == nil {
		resp.Body.Close()
		return fmt.Errorf("without a client certificate: %s, want a refused handshake", resp.Status)
	}
	other, err := s.issue(spiffeid.RequireFromPath(s.ca.TrustDomain, "/reporting"), nil, time.Hour)
	if err != nil {
		return err
	}
	if resp, err := direct(mtls.ClientConfig(mtls.NewStatic(other), s.internalBundle, s.paymentID)); err == nil {
		resp.Body.Close()
		return fmt.Errorf("with the certificate of spiffe://%s/reporting: %s, want a refused handshake", TrustDomain, resp.Status)
	}
	resp, err := direct(mtls.ClientConfig(s.gatewayIdentity, s.internalBundle, s.paymentID))
	if err != nil {
		return fmt.Errorf("with the gateway's certificate: %w", err)
	}
	return want(resp, http.StatusOK)
}

// newClient registers a client and returns its first key.
func (s *system) newClient(ctx context.Context, id string, scopes []string) (apikey.Key, *apikey.Record, error) {
	if _, err := s.keys.CreateClient(ctx, apikey.Client{ID: id, Scopes: scopes}); err != nil {
		return apikey.Key{}, nil, err
	}
	return s.keys.Create(ctx, id, scopes, time.Time{})
}

// pinned returns a client pinned by p, reporting to r if set.
func (s *system) pinned(p *pin.Policy, r pin.Reporter) *http.Client {
	v := pin.NewVerifier(p)
	v.Logger = slog.New(slog.DiscardHandler)
	v.Reporter = r
	c, err := v.Client(s.transport())
	if err != nil {
		panic(err) // the demo's own transport is always pinnable
	}
	return c
}

// transport dials whichever demo server the request's context names.
func (s *system) transport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, ctx.Value(addrKey{}).(string))
		},
		TLSClientConfig:   &tls.Config{RootCAs: s.publicRoots},
		ForceAttemptHTTP2: true,
	}
}

type addrKey struct{}

// call sends a request to https://Host/path at srv. credential is an API
// key, or "Bearer " and a token. The body is read and closed.
func (s *system) call(ctx context.Context, c *http.Client, srv *listener, method, path, credential string, body []byte) (*http.Response, error) {
	ctx = context.WithValue(ctx, addrKey{}, srv.addr)
	req, err := http.NewRequestWithContext(ctx, method, "https://"+Host+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case strings.HasPrefix(credential, "Bearer "):
		req.Header.Set("Authorization", credential)
	case credential != "":
		req.Header.Set("X-API-Key", credential)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp, err
}

// want checks a response's status, quoting its body when it is another.
func want(resp *http.Response, status int) error {
	if resp.StatusCode == status {
		return nil
	}
	body, _ := io.ReadAll(resp.Body)
	return fmt.Errorf("status %s, want %d %s: %s", resp.Status, status, http.StatusText(status), bytes.TrimSpace(body))
}
