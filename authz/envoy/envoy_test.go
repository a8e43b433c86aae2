package envoy_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/rampartsec/rampart/apikey"
	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/authz/envoy"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/internal/store/sqlite"
	_ "github.com/rampartsec/rampart/internal/testing/golden" // accepts go test ./... -update
	"github.com/rampartsec/rampart/ratelimit"
)

var discard = slog.New(slog.DiscardHandler)

// keys is an API-key store on a real SQLite file with the client shop
// (payment.read, payment.write).
type keys struct {
	m *apikey.Manager
	v *apikey.Verifier
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pepper := make([]byte, 32)
	rand.Read(pepper)
	k := &keys{m: &apikey.Manager{Store: st.APIKeys(), Pepper: pepper}, v: &apikey.Verifier{Store: st.APIKeys(), Pepper: pepper, Logger: discard}}
	t.Cleanup(func() { k.v.Close() })
	if _, err := k.m.CreateClient(context.Background(), apikey.Client{ID: "shop", Scopes: []string{"payment.read", "payment.write"}}); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *keys) key(t testing.TB) string {
	t.Helper()
	key, _, err := k.m.Create(context.Background(), "shop", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return key.String()
}

// serve starts a gRPC server on loopback with the services and returns
// a client connection to it.
func serve(t testing.TB, a *envoy.Authorization, r *envoy.RateLimit) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(envoy.ServerOptions()...)
	envoy.Register(s, a, r)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func newService(t testing.TB, k *keys) *authz.Service {
	t.Helper()
	svc, err := authz.New(authz.Options{Logger: discard, Gateway: gateway.Options{
		Routes: []gateway.Route{
			{Prefix: "/v1/", Methods: []string{"GET", "POST"}},
			{Prefix: "/v1/withdrawals", Scopes: []string{"payment.withdraw"}},
			{Prefix: "/open/", AllowAnonymous: true},
		},
		Limits:  []ratelimit.Rule{{Name: "per-client", Limit: ratelimit.PerMinute(2, 2), By: []ratelimit.By{ratelimit.ByClient}}},
		APIKeys: k.v,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// check is the CheckRequest Envoy sends for a request, as its ext_authz
// filter fills it in (lower-case header names, pseudo-headers in the
// map, the downstream peer's address).
func check(method, path string, hdr ...string) *authv3.CheckRequest {
	h := map[string]string{":authority": "pay.example", ":method": method, ":path": path, "user-agent": "test"}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[strings.ToLower(hdr[i])] = hdr[i+1]
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "pay.example", Scheme: "https", Protocol: "HTTP/2", Headers: h,
		}},
	}}
}

func headerMap(opts []*corev3.HeaderValueOption) map[string][]string {
	m := map[string][]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = append(m[o.GetHeader().GetKey()], o.GetHeader().GetValue())
	}
	return m
}

// TestCheck: Envoy's CheckRequest is decided as the gateway decides the
// request, and the answer is in Envoy's terms.
func TestCheck(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	svc := newService(t, k)
	c := authv3.NewAuthorizationClient(serve(t, envoy.NewAuthorization(svc, discard), nil))
	ctx := context.Background()
	key := k.key(t)

	// Allowed: the identity for the service, the client's copies of it
	// removed, the RateLimit fields for the answer.
	resp, err := c.Check(ctx, check("GET", "/v1/accounts?x=1", "X-API-Key", key, "X-Rampart-Client", "forged", "cookie", "s=1"))
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if resp.GetStatus().GetCode() != int32(codes.OK) || ok == nil {
		t.Fatalf("a valid key: %v", resp)
	}
	up := headerMap(ok.GetHeaders())
	if up["x-rampart-client"][0] != "shop" || up["x-rampart-auth-method"][0] != "api-key" || up["x-rampart-scopes"][0] != "payment.read payment.write" || up["x-rampart-route"][0] != "/v1/" {
		t.Errorf("identity headers %v", up)
	}
	for _, o := range ok.GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s: %v, want OVERWRITE_IF_EXISTS_OR_ADD (the client's copy must not survive)", o.GetHeader().GetKey(), o.GetAppendAction())
		}
	}
	removed := " " + strings.Join(ok.GetHeadersToRemove(), " ") + " "
	if !strings.Contains(removed, " cookie ") {
		t.Errorf("headers_to_remove %q lacks the cookie", removed)
	}
	for _, name := range authz.IdentityHeaders {
		name = strings.ToLower(name)
		if _, set := up[name]; !set && !strings.Contains(removed, " "+name+" ") {
			t.Errorf("%s is neither set nor removed: a client's copy would reach the service", name)
		}
	}
	if rl := headerMap(ok.GetResponseHeadersToAdd()); len(rl["ratelimit"]) != 1 || !strings.Contains(rl["ratelimit"][0], `"per-client";r=1`) {
		t.Errorf("response_headers_to_add %v, want the RateLimit field", rl)
	}

	// Denied: exactly the service's refusal, with a matching gRPC code.
	for _, tc := range []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		code   codes.Code
	}{
		{"no credential", check("GET", "/v1/accounts"), 401, codes.Unauthenticated},
		{"a missing scope", check("POST", "/v1/withdrawals", "X-API-Key", key), 403, codes.PermissionDenied},
		{"over the limit", check("GET", "/v1/accounts", "X-API-Key", key), 0, codes.OK},
		{"over the limit again", check("GET", "/v1/accounts", "X-API-Key", key), 429, codes.ResourceExhausted},
		{"a method the route does not take", check("DELETE", "/v1/accounts", "X-API-Key", key), 405, codes.Unimplemented},
		{"an encoded slash", check("GET", "/v1/a%2fb"), 400, codes.InvalidArgument},
		{"no route", check("GET", "/admin"), 404, codes.NotFound},
	} {
		resp, err := c.Check(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := codes.Code(resp.GetStatus().GetCode()); got != tc.code {
			t.Errorf("%s: gRPC status %v, want %v", tc.name, got, tc.code)
		}
		if tc.status == 0 {
			continue
		}
		d := resp.GetDeniedResponse()
		if d == nil || int(d.GetStatus().GetCode()) != tc.status {
			t.Fatalf("%s: %v, want a denial with %d", tc.name, resp, tc.status)
		}
		var problem map[string]any
		if err := json.Unmarshal([]byte(d.GetBody()), &problem); err != nil {
			t.Errorf("%s: body %q: %v", tc.name, d.GetBody(), err)
		}
		h := headerMap(d.GetHeaders())
		switch tc.status {
		case 401:
			if w := h["www-authenticate"]; len(w) != 1 || !strings.HasPrefix(w[0], `Bearer realm="rampart"`) {
				t.Errorf("%s: WWW-Authenticate %q (RFC 6750 §3)", tc.name, w)
			}
		case 403:
			if w := h["www-authenticate"]; len(w) != 1 || !strings.Contains(w[0], `error="insufficient_scope"`) {
				t.Errorf("%s: WWW-Authenticate %q, want insufficient_scope (RFC 6750 §3.1)", tc.name, w)
			}
		case 429:
			if len(h["retry-after"]) != 1 || len(h["ratelimit"]) != 1 || len(h["ratelimit-policy"]) != 1 || problem["rule"] != "per-client" {
				t.Errorf("%s: headers %v body %v, want Retry-After, RateLimit, RateLimit-Policy and the rule", tc.name, h, problem)
			}
		case 405:
			if len(h["allow"]) != 1 {
				t.Errorf("%s: no Allow", tc.name)
			}
		}
		// And the same as the service's own answer, which is the
		// gateway's (gateway.TestDeciderIsTheGateway).
		want, err := svc.Check(ctx, mustRequest(t, tc.req))
		if err != nil {
			t.Fatal(err)
		}
		if tc.status != 429 && (string(want.Body) != d.GetBody() || want.Status != tc.status) {
			t.Errorf("%s: body %q, the service's %q", tc.name, d.GetBody(), want.Body)
		}
	}
}

// mustRequest is what the service makes of req, for comparisons.
func mustRequest(t *testing.T, req *authv3.CheckRequest) *authz.Request {
	t.Helper()
	h := req.GetAttributes().GetRequest().GetHttp()
	r := &authz.Request{Method: h.GetMethod(), Target: h.GetPath(), Host: h.GetHost(), Header: map[string][]string{}}
	for k, v := range h.GetHeaders() {
		if !strings.HasPrefix(k, ":") {
			r.Header.Add(k, v)
		}
	}
	return r
}

// TestCheckRoute: the Envoy route's context_extensions name the Rampart
// route; an unknown one is a denial, never an error Envoy's
// failure_mode_allow would pass.
func TestCheckRoute(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	c := authv3.NewAuthorizationClient(serve(t, envoy.NewAuthorization(newService(t, k), discard), nil))
	req := check("GET", "/open/x")
	req.Attributes.ContextExtensions = map[string]string{envoy.RouteExtension: "/v1/"}
	resp, err := c.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 401 {
		t.Errorf("route /v1/ on /open/x without a key: %v, want 401", resp)
	}
	req.Attributes.ContextExtensions[envoy.RouteExtension] = "/nowhere/"
	resp, err = c.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 404 {
		t.Errorf("an unknown route: %v, want a 404 denial", resp)
	}
}

// TestMalformedCheck: each malformed CheckRequest is a 400 denial with a
// precise reason, never a pass or a panic.
func TestMalformedCheck(t *testing.T) {
	t.Parallel()
	k := newKeys(t)
	c := authv3.NewAuthorizationClient(serve(t, envoy.NewAuthorization(newService(t, k), discard), nil))
	many := check("GET", "/open/x")
	for i := range 300 {
		many.Attributes.Request.Http.Headers[strings.Repeat("h", 1+i%20)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "v"
	}
	ext := check("GET", "/open/x")
	ext.Attributes.ContextExtensions = map[string]string{}
	for i := range 100 {
		ext.Attributes.ContextExtensions[strings.Repeat("k", i+1)] = "v"
	}
	badCert := check("GET", "/open/x")
	badCert.Attributes.Source.Certificate = "-----BEGIN%20CERTIFICATE-----%0Anot%20base64%0A-----END%20CERTIFICATE-----%0A"
	badAddr := check("GET", "/open/x")
	badAddr.Attributes.Source.Address.GetSocketAddress().Address = "not-an-ip"
	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
		want string
	}{
		{"empty", &authv3.CheckRequest{}, "no attributes.request.http"},
		{"no method", check("", "/open/x"), "no method"},
		{"no path", check("GET", ""), "want a path"},
		{"an absolute target", check("GET", "http://evil.example/open/x"), "want a path"},
		{"a bad header name", check("GET", "/open/x", "bad name", "v"), "header field name"},
		{"a control character", check("GET", "/open/x", "x-a", "a\nb"), "control character"},
		{"too many headers", many, "header fields"},
		{"too many extensions", ext, "context_extensions"},
		{"a bad certificate", badCert, "source.certificate"},
		{"a bad address", badAddr, "not an IP address"},
		{"a bad content-length", check("POST", "/open/x", "content-length", "-1"), "Content-Length"},
		{"an unknown protocol", func() *authv3.CheckRequest {
			r := check("GET", "/open/x")
			r.Attributes.Request.Http.Protocol = "SPDY/3"
			return r
		}(), "protocol"},
	} {
		resp, err := c.Check(context.Background(), tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		d := resp.GetDeniedResponse()
		if d == nil || d.GetStatus().GetCode() != 400 || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
			t.Errorf("%s: %v, want a 400 denial", tc.name, resp)
			continue
		}
		if !strings.Contains(d.GetBody(), tc.want) {
			t.Errorf("%s: body %s, want it to say %q", tc.name, d.GetBody(), tc.want)
		}
	}
}
