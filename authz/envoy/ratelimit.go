package envoy

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/ratelimit"
)

// RateLimit is envoy.service.ratelimit.v3.RateLimitService over
// authz.Limits.
type RateLimit struct {
	rlsv3.UnimplementedRateLimitServiceServer
	limits *authz.Limits
	log    *slog.Logger
}

// NewRateLimit serves limits; log (nil: slog.Default()) receives
// malformed requests and store outages.
func NewRateLimit(limits *authz.Limits, log *slog.Logger) *RateLimit {
	if log == nil {
		log = slog.Default()
	}
	return &RateLimit{limits: limits, log: log}
}

func registerRateLimit(s *grpc.Server, r *RateLimit) { rlsv3.RegisterRateLimitServiceServer(s, r) }

// units maps the proto's units to authz's.
var units = map[rlsv3.RateLimitResponse_RateLimit_Unit]authz.Unit{
	rlsv3.RateLimitResponse_RateLimit_SECOND: authz.Second, rlsv3.RateLimitResponse_RateLimit_MINUTE: authz.Minute,
	rlsv3.RateLimitResponse_RateLimit_HOUR: authz.Hour, rlsv3.RateLimitResponse_RateLimit_DAY: authz.Day,
	rlsv3.RateLimitResponse_RateLimit_WEEK: authz.Week, rlsv3.RateLimitResponse_RateLimit_MONTH: authz.Month,
	rlsv3.RateLimitResponse_RateLimit_YEAR: authz.Year,
}

// overrideUnits maps the units of a descriptor's limit override.
var overrideUnits = map[typev3.RateLimitUnit]authz.Unit{
	typev3.RateLimitUnit_SECOND: authz.Second, typev3.RateLimitUnit_MINUTE: authz.Minute,
	typev3.RateLimitUnit_HOUR: authz.Hour, typev3.RateLimitUnit_DAY: authz.Day,
	typev3.RateLimitUnit_MONTH: authz.Month, typev3.RateLimitUnit_YEAR: authz.Year,
}

func protoUnit(u authz.Unit) rlsv3.RateLimitResponse_RateLimit_Unit {
	for k, v := range units {
		if v == u {
			return k
		}
	}
	return rlsv3.RateLimitResponse_RateLimit_UNKNOWN
}

// ShouldRateLimit decides a request's descriptors. A malformed request
// or an unknown domain is INVALID_ARGUMENT, a FailClosed store outage
// UNAVAILABLE: Envoy then applies its failure_mode_deny (the
// configurations of docs/edge.md set it).
func (s *RateLimit) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	ds := make([]authz.LimitRequest, len(req.GetDescriptors()))
	for i, d := range req.GetDescriptors() {
		if d.GetIsNegativeHits() {
			return nil, status.Error(codes.InvalidArgument, "authz: is_negative_hits: a GCRA limit gives no budget back")
		}
		lr := authz.LimitRequest{Hits: d.GetHitsAddend().GetValue()}
		for _, e := range d.GetEntries() {
			lr.Entries = append(lr.Entries, authz.Entry{Key: e.GetKey(), Value: e.GetValue()})
		}
		if o := d.GetLimit(); o != nil {
			u, ok := overrideUnits[o.GetUnit()]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "authz: descriptor %d: limit override with unit %v", i, o.GetUnit())
			}
			lr.Override = &authz.RateLimit{RequestsPerUnit: o.GetRequestsPerUnit(), Unit: u}
		}
		ds[i] = lr
	}
	code, sts, err := s.limits.ShouldRateLimit(ctx, req.GetDomain(), ds, uint64(req.GetHitsAddend()))
	switch {
	case errors.Is(err, authz.ErrUnknownDomain), errors.Is(err, authz.ErrBadLimitRequest):
		s.log.Warn("authz: a rate limit request refused", "domain", req.GetDomain(), "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ratelimit.ErrUnavailable):
		return nil, status.Error(codes.Unavailable, "authz: the rate limit store is unavailable")
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_Code(code)}
	for _, st := range sts {
		ds := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_Code(st.Code), LimitRemaining: st.Remaining}
		if st.Limit != nil {
			ds.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{Name: st.Limit.Name,
				RequestsPerUnit: st.Limit.RequestsPerUnit, Unit: protoUnit(st.Limit.Unit)}
			ds.DurationUntilReset = durationpb.New(st.UntilReset)
		}
		resp.Statuses = append(resp.Statuses, ds)
	}
	for _, h := range authz.Headers(sts) {
		resp.ResponseHeadersToAdd = append(resp.ResponseHeadersToAdd, &corev3.HeaderValue{Key: strings.ToLower(h[0]), Value: h[1]})
	}
	return resp, nil
}
