package envoy_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/authz/envoy"
	"github.com/rampartsec/rampart/gateway"
	"github.com/rampartsec/rampart/ratelimit"
)

const limitsFile = `
domain: edge
descriptors:
  - key: client
    rate_limit: {unit: minute, requests_per_unit: 2, name: per-client}
  - key: path
    value: /healthz
    rate_limit: {unlimited: true}
`

func newRateLimit(t *testing.T, store ratelimit.Store, failure ratelimit.FailureMode) rlsv3.RateLimitServiceClient {
	t.Helper()
	c, err := authz.ParseLimitConfig("edge.yaml", []byte(limitsFile))
	if err != nil {
		t.Fatal(err)
	}
	l, err := authz.NewLimits(authz.LimitsOptions{Store: store, Failure: failure, Logger: discard}, c)
	if err != nil {
		t.Fatal(err)
	}
	return rlsv3.NewRateLimitServiceClient(serve(t, nil, envoy.NewRateLimit(l, discard)))
}

func descriptor(kv ...string) *commonrl.RateLimitDescriptor {
	d := &commonrl.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// TestShouldRateLimit: the answer Envoy's ratelimit filter reads: the
// overall code, a status per descriptor with the limit, the remaining
// budget and the time to the reset, and the IETF RateLimit fields.
func TestShouldRateLimit(t *testing.T) {
	t.Parallel()
	c := newRateLimit(t, nil, "")
	ctx := context.Background()
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{descriptor("client", "a"), descriptor("path", "/healthz"), descriptor("other", "x")}}
	resp, err := c.ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || len(resp.GetStatuses()) != 3 {
		t.Fatalf("%v", resp)
	}
	s := resp.GetStatuses()[0]
	if l := s.GetCurrentLimit(); l.GetRequestsPerUnit() != 2 || l.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE || l.GetName() != "per-client" ||
		s.GetLimitRemaining() != 1 || s.GetDurationUntilReset().AsDuration() != 30*time.Second {
		t.Errorf("client a: %v, want 2/minute per-client, 1 remaining, 30 s to the whole quota", s)
	}
	if u := resp.GetStatuses()[1]; u.GetCurrentLimit() != nil || u.GetCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("unlimited: %v", u)
	}
	if n := resp.GetStatuses()[2]; n.GetCurrentLimit() != nil || n.GetCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("a descriptor no limit matches: %v, want OK without a limit (as envoyproxy/ratelimit)", n)
	}
	// hits_addend 2 on the descriptor: over the one left.
	over := proto.Clone(req).(*rlsv3.RateLimitRequest)
	over.Descriptors = over.Descriptors[:1]
	over.Descriptors[0].HitsAddend = wrapperspb.UInt64(2)
	resp, err = c.ShouldRateLimit(ctx, over)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || resp.GetStatuses()[0].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("2 hits with 1 left: %v", resp)
	}
	h := map[string]string{}
	for _, hv := range resp.GetResponseHeadersToAdd() {
		h[hv.GetKey()] = hv.GetValue()
	}
	if h["ratelimit-policy"] != `"per-client";q=2;w=60` || !strings.HasPrefix(h["ratelimit"], `"per-client";r=1;t=`) || h["retry-after"] != "30" {
		t.Errorf("response_headers_to_add %v, want the RateLimit fields and Retry-After", h)
	}
}

// TestShouldRateLimitRefusals: what cannot be decided is an error status,
// precise, never an OK that would let the request pass unlimited.
func TestShouldRateLimitRefusals(t *testing.T) {
	t.Parallel()
	c := newRateLimit(t, nil, "")
	negative := descriptor("client", "a")
	negative.IsNegativeHits = true
	override := descriptor("client", "a")
	override.Limit = &commonrl.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_UNKNOWN}
	for _, tc := range []struct {
		name string
		req  *rlsv3.RateLimitRequest
		want string
	}{
		{"an unknown domain", &rlsv3.RateLimitRequest{Domain: "nope", Descriptors: []*commonrl.RateLimitDescriptor{descriptor("client", "a")}}, "unknown rate limit domain"},
		{"no domain", &rlsv3.RateLimitRequest{Descriptors: []*commonrl.RateLimitDescriptor{descriptor("client", "a")}}, "domain must not be empty"},
		{"no descriptors", &rlsv3.RateLimitRequest{Domain: "edge"}, "descriptor list must not be empty"},
		{"an empty descriptor", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{{}}}, "entries"},
		{"an empty key", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{descriptor("", "a")}}, "empty key"},
		{"an oversized entry", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{descriptor("client", strings.Repeat("x", 5000))}}, "bytes"},
		{"negative hits", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{negative}}, "is_negative_hits"},
		{"an override without a unit", &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{override}}, "limit override"},
	} {
		_, err := c.ShouldRateLimit(context.Background(), tc.req)
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT saying %q", tc.name, err, tc.want)
		}
	}
}

type downStore struct{}

func (downStore) AllowN(context.Context, string, ratelimit.Limit, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("dial tcp 127.0.0.1:6379: connection refused")
}

// TestStoreOutage: a store that fails is each failure mode's: the rate
// limit service decides alone (open) or answers UNAVAILABLE (closed);
// ext_authz answers 503 for a closed edge rule, as the gateway does.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{descriptor("client", "a")}}
	if resp, err := newRateLimit(t, downStore{}, ratelimit.FailOpen).ShouldRateLimit(context.Background(), req); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("open: %v %v, want OK from this instance's memory", resp, err)
	}
	_, err := newRateLimit(t, downStore{}, ratelimit.FailClosed).ShouldRateLimit(context.Background(), req)
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable {
		t.Errorf("closed: %v, want UNAVAILABLE (Envoy's failure_mode_deny then refuses)", err)
	}

	svc, err := authz.New(authz.Options{Logger: discard, Gateway: gateway.Options{
		Routes:         []gateway.Route{{Prefix: "/open/", AllowAnonymous: true}},
		Limits:         []ratelimit.Rule{{Name: "closed", Limit: ratelimit.PerMinute(10, 10), By: []ratelimit.By{ratelimit.ByAddr}, Failure: ratelimit.FailClosed}},
		RateLimitStore: downStore{},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := authv3.NewAuthorizationClient(serve(t, envoy.NewAuthorization(svc, discard), nil))
	resp, err := c.Check(context.Background(), check("GET", "/open/x"))
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != http.StatusServiceUnavailable || codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
		t.Errorf("a closed rule with its store down: %v, want a 503 denial", resp)
	}
}

// FuzzCheck: any CheckRequest, as bytes on the wire, is answered with a
// CheckResponse: allowed only on the anonymous route, never a panic.
func FuzzCheck(f *testing.F) {
	for _, r := range []*authv3.CheckRequest{check("GET", "/open/x"), check("GET", "/v1/x", "x-api-key", "rk_live_x"), {}} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	k := newKeys(f)
	a := envoy.NewAuthorization(newService(f, k), discard)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req authv3.CheckRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		resp, err := a.Check(context.Background(), &req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if ok := resp.GetOkResponse(); ok != nil {
			route := ""
			for _, h := range ok.GetHeaders() {
				if h.GetHeader().GetKey() == "x-rampart-route" {
					route = h.GetHeader().GetValue()
				}
			}
			if route != "/open/" {
				t.Fatalf("allowed on route %q without a key: %v", route, &req)
			}
		} else if resp.GetDeniedResponse() == nil {
			t.Fatalf("neither allowed nor denied: %v", resp)
		}
	})
}
