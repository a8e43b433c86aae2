package authserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	"github.com/rampartsec/rampart/token/authserver"
)

// E13: disabling a client (the incident-response switch) ends the access
// tokens it holds, up to 24 h of them, at every Validator that checks
// revocations, and introspection agrees with validation (RFC 7662 §2.2:
// active means the resource server may accept it).
func TestClientDisableEndsItsTokens(t *testing.T) {
	e := newEnv(t)
	if _, err := e.keys.CreateClient(context.Background(), apikey.Client{ID: "shop", Scopes: []string{"payment.read"}, TokenLifetime: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	k, _, err := e.keys.Create(context.Background(), "shop", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	rs := e.clientWithKey("resource-server", []string{authserver.IntrospectScope}, nil)
	tok := e.post(e.client, "/oauth2/token", grant(), basic("shop", k.String())).body["access_token"].(string)
	v := e.validator()
	v.Revoked = e.st.RevokedTokens().TokenRevoked
	active := func() any {
		return e.post(e.client, "/oauth2/introspect", url.Values{"token": {tok}}, basic("resource-server", rs)).body["active"]
	}
	if _, err := v.Validate(context.Background(), tok, nil); err != nil || active() != true {
		t.Fatalf("before: %v, active %v", err, active())
	}
	if err := e.st.APIKeys().SetClientDisabled(context.Background(), "shop", true); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	_, err = v.Validate(context.Background(), tok, nil)
	if err == nil || active() != false {
		t.Errorf("client disabled: Validate %v, introspection active %v: want both to refuse", err, active())
	}
}

// A revocation of a client's tokens (rampart client disable, rampart
// token revoke --client ID --all) outlives re-enabling the client: the
// stolen tokens stay dead, and tokens issued after it work.
func TestClientTokensRevokedStayRevoked(t *testing.T) {
	e := newEnv(t)
	key := e.clientWithKey("shop", []string{"payment.read"}, nil)
	rs := e.clientWithKey("resource-server", []string{authserver.IntrospectScope}, nil)
	old := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	v := e.validator()
	v.Revoked = e.st.RevokedTokens().TokenRevoked
	ctx := context.Background()
	if err := e.st.RevokedTokens().RevokeClientTokens(ctx, "shop", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for _, disabled := range []bool{true, false} {
		if err := e.st.APIKeys().SetClientDisabled(ctx, "shop", disabled); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(time.Second)
	e.ver.Forget()
	fresh := e.post(e.client, "/oauth2/token", grant(), basic("shop", key)).body["access_token"].(string)
	for name, tc := range map[string]struct {
		tok    string
		active bool
	}{"issued before": {old, false}, "issued after": {fresh, true}} {
		_, err := v.Validate(ctx, tc.tok, nil)
		a := e.post(e.client, "/oauth2/introspect", url.Values{"token": {tc.tok}}, basic("resource-server", rs)).body["active"]
		if (err == nil) != tc.active || a != tc.active {
			t.Errorf("%s the revocation: Validate %v, introspection active %v; want valid %t in both", name, err, a, tc.active)
		}
	}
}

// FuzzReadIssued mutates a token the Server issued. What ReadIssued
// accepts is that token (or its ECDSA twin, the same token): the same
// jti, client and times; whatever it refuses wraps ErrNotIssued.
func FuzzReadIssued(f *testing.F) {
	st, err := sqlite.Open(context.Background(), f.TempDir()+"/rampart.db")
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	kek := make([]byte, 32)
	now := time.Unix(1764072000, 0)
	if err := authserver.EnsureKeys(context.Background(), st.SigningKeys(), kek, "ES256", now); err != nil {
		f.Fatal(err)
	}
	ver := &apikey.Verifier{Store: st.APIKeys()}
	defer ver.Close()
	as := &authserver.Server{Issuer: "https://cp.pay.test", Audience: audience, Keys: st.SigningKeys(), Revocations: st.RevokedTokens(),
		Clients: st.APIKeys(), APIKeys: ver, KeyEncryptionKey: kek, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)}
	if err := as.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	m := &apikey.Manager{Store: st.APIKeys(), Now: func() time.Time { return now }}
	if _, err := m.CreateClient(context.Background(), apikey.Client{ID: "shop", Scopes: []string{"payment.read"}}); err != nil {
		f.Fatal(err)
	}
	k, _, err := m.Create(context.Background(), "shop", nil, time.Time{})
	if err != nil {
		f.Fatal(err)
	}
	w := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader("grant_type=client_credentials&client_id=shop&client_secret="+k.String()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	as.ServeHTTP(w, req)
	var body struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(w.Body.Bytes(), &body)
	good, err := authserver.ReadIssued(context.Background(), st.SigningKeys(), body.AccessToken)
	if err != nil || good.ClientID != "shop" || !good.IssuedAt.Equal(now) {
		f.Fatalf("ReadIssued of an issued token: %+v %v (%s)", good, err, w.Body)
	}
	f.Add(body.AccessToken)
	f.Add(body.AccessToken + "\n")
	f.Add(strings.Replace(body.AccessToken, ".", "..", 1))
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		ref, err := authserver.ReadIssued(context.Background(), st.SigningKeys(), raw)
		if err != nil {
			if !errors.Is(err, authserver.ErrNotIssued) {
				t.Fatalf("ReadIssued(%q): %v, want ErrNotIssued", raw, err)
			}
			return
		}
		if ref != good {
			t.Fatalf("ReadIssued(%q) = %+v, want %+v", raw, ref, good)
		}
	})
}
