// Package envoy serves Rampart's decisions to Envoy (and Istio) over
// gRPC, with the protos of github.com/envoyproxy/go-control-plane that
// Envoy itself is built from: external authorization
// (envoy.service.auth.v3.Authorization/Check) from an authz.Service, and
// the global rate limit service
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) from
// authz.Limits.
//
//	s := grpc.NewServer(envoy.ServerOptions()...)
//	envoy.Register(s, envoy.NewAuthorization(svc, nil), envoy.NewRateLimit(limits, nil))
//	s.Serve(listener)
//
// docs/edge.md has Envoy's and Istio's configuration and the table of
// what Envoy sends and what Rampart answers.
package envoy

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/rampartsec/rampart/authz"
)

// RouteExtension is the key of the context_extensions with which an
// Envoy route names the Rampart route whose rules apply:
//
//	typed_per_filter_config:
//	  envoy.filters.http.ext_authz:
//	    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
//	    check_settings: {context_extensions: {rampart_route: /v1/payments}}
const RouteExtension = "rampart_route"

// maxMessage bounds a request message: Envoy's CheckRequests are a few
// kilobytes (headers and attributes; Rampart never asks for the body).
const maxMessage = 1 << 20

// maxExtensions bounds the context_extensions map.
const maxExtensions = 64

// ServerOptions are the gRPC server options the services expect: a
// bounded message size.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMessage), grpc.MaxConcurrentStreams(1024),
		// Streams are served by a pool of goroutines rather than one
		// each; buffers are shared between idle connections.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))), grpc.SharedWriteBuffer(true)}
}

// Register registers the services that are not nil on s.
func Register(s *grpc.Server, a *Authorization, r *RateLimit) {
	if a != nil {
		authv3.RegisterAuthorizationServer(s, a)
	}
	if r != nil {
		registerRateLimit(s, r)
	}
}

// Authorization is envoy.service.auth.v3.Authorization over an
// authz.Service.
type Authorization struct {
	authv3.UnimplementedAuthorizationServer
	svc *authz.Service
	log *slog.Logger
}

// NewAuthorization serves svc; log (nil: slog.Default()) receives
// malformed requests.
func NewAuthorization(svc *authz.Service, log *slog.Logger) *Authorization {
	if log == nil {
		log = slog.Default()
	}
	return &Authorization{svc: svc, log: log}
}

// Check decides a request Envoy holds. Every answer is a CheckResponse,
// also for a malformed request (a denial with 400): an error would let
// Envoy's failure_mode_allow pass it. Only a cancelled call returns an
// error.
func (a *Authorization) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r, err := request(req)
	var res *authz.Result
	if err == nil {
		res, err = a.svc.Check(ctx, r)
	}
	if errors.Is(err, authz.ErrBadRequest) {
		a.log.Warn("authz: a malformed CheckRequest", "err", err)
		res = authz.BadRequest(http.StatusBadRequest, authz.Reason(err))
	} else if err != nil {
		return nil, err
	}
	return response(res), nil
}

// request is the authz.Request of Envoy's CheckRequest.
func request(req *authv3.CheckRequest) (*authz.Request, error) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return nil, bad("no attributes.request.http")
	}
	if len(attrs.GetContextExtensions()) > maxExtensions {
		return nil, bad("more than 64 context_extensions")
	}
	r := &authz.Request{Method: h.GetMethod(), Target: h.GetPath(), Host: h.GetHost(), Proto: h.GetProtocol(),
		Header: http.Header{}, Route: attrs.GetContextExtensions()[RouteExtension]}
	if raw := h.GetHeaderMap(); raw != nil {
		for _, hv := range raw.GetHeaders() {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			if err := addHeader(r.Header, hv.GetKey(), v); err != nil {
				return nil, err
			}
		}
	} else {
		for k, v := range h.GetHeaders() {
			if err := addHeader(r.Header, k, v); err != nil {
				return nil, err
			}
		}
	}
	if r.Host == "" {
		r.Host = r.Header.Get(":authority")
	}
	for k := range r.Header {
		if strings.HasPrefix(k, ":") {
			delete(r.Header, k)
		}
	}
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		a, err := netip.ParseAddr(sa.GetAddress())
		if err != nil {
			return nil, bad("source address %q is not an IP address", sa.GetAddress())
		}
		r.Client = a.Unmap()
	}
	if pemText := attrs.GetSource().GetCertificate(); pemText != "" {
		c, err := certificate(pemText)
		if err != nil {
			return nil, err
		}
		r.PeerCertificate = c
	}
	return r, nil
}

// addHeader adds a field; pseudo-headers are kept apart by their ':'.
func addHeader(h http.Header, k, v string) error {
	if len(h) > 256 {
		return bad("more than 256 header fields")
	}
	if strings.HasPrefix(k, ":") {
		h[k] = append(h[k], v)
		return nil
	}
	h.Add(k, v)
	return nil
}

// certificate parses source.certificate: the client's certificate,
// URL-encoded PEM.
func certificate(s string) (*x509.Certificate, error) {
	p, err := url.QueryUnescape(s)
	if err != nil {
		return nil, bad("source.certificate is not URL-encoded PEM")
	}
	b, _ := pem.Decode([]byte(p))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, bad("source.certificate holds no PEM certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, bad("source.certificate: %v", err)
	}
	return c, nil
}

// response is the CheckResponse of res.
func response(res *authz.Result) *authv3.CheckResponse {
	if res.Allowed {
		ok := &authv3.OkHttpResponse{
			Headers:              options(res.Upstream, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			ResponseHeadersToAdd: options(res.Header, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
		}
		for _, name := range res.Remove {
			if res.Upstream.Get(name) == "" { // a set header replaces the client's anyway
				ok.HeadersToRemove = append(ok.HeadersToRemove, strings.ToLower(name))
			}
		}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode(res.Status)), Message: http.StatusText(res.Status)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(res.Status)},
			Headers: options(res.Header, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			Body:    string(res.Body),
		}},
	}
}

// options are h's fields as Envoy's header options, in a stable order,
// the first value of a name with action and the others appended.
func options(h http.Header, action corev3.HeaderValueOption_HeaderAppendAction) []*corev3.HeaderValueOption {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []*corev3.HeaderValueOption
	for _, name := range names {
		for i, v := range h[name] {
			act := action
			if i > 0 {
				act = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
			out = append(out, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: strings.ToLower(name), Value: v},
				AppendAction: act,
			})
		}
	}
	return out
}

// grpcCode is the gRPC status of a refusal: Envoy reads any but OK as
// denied; the code says why, for its logs and metrics.
func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMisdirectedRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.PermissionDenied
}

func bad(format string, args ...any) error {
	return &authz.RequestError{Reason: fmt.Sprintf(format, args...)}
}
