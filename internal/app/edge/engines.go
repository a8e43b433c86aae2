package edge

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"text/template"

	"github.com/rampartsec/rampart/authz"
	"github.com/rampartsec/rampart/internal/util/httpx"
)

// EngineOptions say what the configuration of an engine in front of
// rampart authz serves: where the engine listens, with which
// certificate, and the service it proxies to.
type EngineOptions struct {
	// Listen is the engine's address (host:port); default 127.0.0.1:8080.
	Listen string
	// Cert and Key, if set, make it listen with TLS.
	Cert, Key string
	// Upstream is the service, http://host:port; default
	// http://127.0.0.1:9000.
	Upstream string
	// Domain is the rate limit domain of Envoy's ratelimit filter;
	// default the first domain of authz.ratelimit_service, or "edge".
	Domain string
}

// Engines are the engines EngineConfig writes for.
var Engines = []string{"nginx", "caddy", "envoy", "istio"}

// EngineConfig writes the configuration of engine (nginx, caddy, envoy,
// istio) that puts rampart authz of this file in front of o.Upstream,
// with a location (route) per route of the file.
func (c *File) EngineConfig(engine string, o EngineOptions) (string, error) {
	if c.Authz == nil {
		return "", fmt.Errorf("authz: the file has no authz section")
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.Upstream == "" {
		o.Upstream = "http://127.0.0.1:9000"
	}
	up, err := url.Parse(o.Upstream)
	if err != nil || up.Host == "" || (up.Scheme != "http" && up.Scheme != "https") {
		return "", fmt.Errorf("--upstream %q: want http://host:port", o.Upstream)
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return "", fmt.Errorf("--listen %q: want host:port", o.Listen)
	}
	if (o.Cert == "") != (o.Key == "") {
		return "", fmt.Errorf("--cert and --key go together")
	}
	d := engineData{EngineOptions: o, UpstreamHost: up.Host, UpstreamTLS: up.Scheme == "https",
		Identity: authz.IdentityHeaders, Statuses: refusalStatuses,
		BodyTypes: map[string]string{"problem": httpx.ProblemType, "json": "application/json", "none": "text/plain"}}
	d.ListenHost, d.ListenPort, _ = net.SplitHostPort(o.Listen)
	d.UpstreamHostOnly, d.UpstreamPort = up.Hostname(), up.Port()
	if d.UpstreamPort == "" {
		d.UpstreamPort = map[bool]string{true: "443", false: "80"}[d.UpstreamTLS]
	}
	for _, r := range c.Routes {
		d.Routes = append(d.Routes, engineRoute{Prefix: r.Prefix, Exact: !strings.HasSuffix(r.Prefix, "/"), ForwardCookies: r.ForwardCookies})
	}
	if !slices.ContainsFunc(d.Routes, func(r engineRoute) bool { return r.Prefix == "/" }) {
		d.CatchAll = true
	}
	var tmpl string
	switch engine {
	case "nginx", "caddy":
		h := c.Authz.HTTP
		if h == nil {
			return "", fmt.Errorf("authz: %s asks over HTTP: the file needs authz.http", engine)
		}
		d.AuthzTLS = h.TLS != nil
		if p, ok := strings.CutPrefix(h.Listen, "unix:"); ok {
			d.AuthzUnix = p
		} else {
			d.AuthzAddr = h.Listen
		}
		tmpl = nginxTemplate
		if engine == "caddy" {
			tmpl = caddyTemplate
		}
	case "envoy", "istio":
		g := c.Authz.GRPC
		if g == nil {
			return "", fmt.Errorf("authz: %s asks over gRPC: the file needs authz.grpc", engine)
		}
		d.AuthzTLS = g.TLS != nil
		if p, ok := strings.CutPrefix(g.Listen, "unix:"); ok {
			d.AuthzUnix = p
		} else {
			d.AuthzHost, d.AuthzPort, _ = net.SplitHostPort(g.Listen)
		}
		d.RateLimits = c.Authz.RateLimitService != nil
		if d.Domain == "" {
			d.Domain = "edge"
		}
		tmpl = envoyTemplate
		if engine == "istio" {
			tmpl = istioTemplate
		}
	default:
		return "", fmt.Errorf("--print-config %q: want one of %s", engine, strings.Join(Engines, ", "))
	}
	t := template.Must(template.New(engine).Funcs(template.FuncMap{
		"lower": strings.ToLower,
		"var":   func(h string) string { return strings.ReplaceAll(strings.ToLower(h), "-", "_") },
	}).Parse(tmpl))
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// refusalStatuses are the statuses a refusal of the gateway may have.
var refusalStatuses = []int{400, 401, 403, 404, 405, 413, 421, 429, 501, 503}

type engineData struct {
	EngineOptions
	ListenHost, ListenPort string
	UpstreamHost           string
	UpstreamHostOnly       string
	UpstreamPort           string
	UpstreamTLS            bool
	AuthzAddr, AuthzUnix   string
	AuthzHost, AuthzPort   string
	AuthzTLS               bool
	Routes                 []engineRoute
	CatchAll               bool
	Identity               []string
	Statuses               []int
	BodyTypes              map[string]string
	RateLimits             bool
}

type engineRoute struct {
	Prefix         string
	Exact          bool
	ForwardCookies bool
}

// The headers of a refusal and of an allowed answer that nginx copies
// from the auth subrequest to the client.
const nginxTemplate = `{{define "refusal"}}
        add_header Cache-Control no-store always;
        add_header X-Content-Type-Options nosniff always;
        add_header WWW-Authenticate $rampart_www_authenticate always;
        add_header Retry-After $rampart_retry_after always;
        add_header RateLimit-Policy $rampart_ratelimit_policy always;
        add_header RateLimit $rampart_ratelimit always;
        add_header Allow $rampart_allow always;
{{- range .Statuses}}
        if ($rampart_status = {{.}}) { return {{.}} $rampart_refusal; }
{{- end}}
        if ($rampart_status = 204) { return 204; }
        return 403 $rampart_refusal;
{{- end}}{{define "authreq"}}
        auth_request /_rampart_authz;
        error_page 401 403 = @rampart_refusal_$rampart_body_type;
        auth_request_set $rampart_body_type $upstream_http_x_rampart_body_type;
        auth_request_set $rampart_status $upstream_http_x_rampart_status;
        auth_request_set $rampart_refusal $upstream_http_x_rampart_refusal;
        auth_request_set $rampart_www_authenticate $upstream_http_www_authenticate;
        auth_request_set $rampart_retry_after $upstream_http_retry_after;
        auth_request_set $rampart_ratelimit_policy $upstream_http_ratelimit_policy;
        auth_request_set $rampart_ratelimit $upstream_http_ratelimit;
        auth_request_set $rampart_allow $upstream_http_allow;
        auth_request_set $rampart_deprecation $upstream_http_deprecation;
        auth_request_set $rampart_sunset $upstream_http_sunset;
{{- range .Identity}}
        auth_request_set ${{var .}} $upstream_http_{{var .}};
{{- end}}
{{- range .Identity}}
        proxy_set_header {{.}} ${{var .}};
{{- end}}
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        add_header RateLimit-Policy $rampart_ratelimit_policy;
        add_header RateLimit $rampart_ratelimit;
        add_header Deprecation $rampart_deprecation;
        add_header Sunset $rampart_sunset;
{{- end}}# nginx in front of rampart authz: written by rampart authz --print-config nginx.
# Include it in the http {} block. Every request asks rampart authz first
# (auth_request); the service receives only Rampart's identity headers.
# nginx passes only 2xx, 401 and 403 from an auth subrequest, so rampart
# authz answers every refusal 403 with the real status in X-Rampart-Status
# and the body in X-Rampart-Refusal, and @rampart_refusal answers from them:
# the client gets 429 with Retry-After, 401 with WWW-Authenticate, as from
# rampart gateway.

upstream rampart_authz {
    server {{if .AuthzUnix}}unix:{{.AuthzUnix}}{{else}}{{.AuthzAddr}}{{end}};
    keepalive 32;
}

upstream rampart_service {
    server {{.UpstreamHost}};
    keepalive 32;
}

server {
    listen {{.Listen}}{{if .Cert}} ssl{{end}};
{{- if .Cert}}
    ssl_certificate {{.Cert}};
    ssl_certificate_key {{.Key}};
    ssl_protocols TLSv1.2 TLSv1.3;
{{- end}}
    server_tokens off;

    location = /_rampart_authz {
        internal;
        proxy_pass {{if .AuthzTLS}}https{{else}}http{{end}}://rampart_authz/nginx;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Original-Host $http_host;
        proxy_set_header X-Original-Content-Length $content_length;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Rampart-Use-Route $rampart_route;
    }

    # The refusal rampart authz decided, with its status and headers: one
    # location per kind of body (problem details, RFC 6750's JSON, none).
{{- range $kind, $type := .BodyTypes}}
    location @rampart_refusal_{{$kind}} {
        default_type {{$type}};
        {{- template "refusal" $}}
    }
{{- end}}
    # Without an answer from rampart authz (it is down): 403.
    location @rampart_refusal_ {
        return 403;
    }
{{range .Routes}}
    location {{if .Exact}}= {{end}}{{.Prefix}} {
        set $rampart_route {{.Prefix}};
        {{- template "authreq" $}}
{{- if not .ForwardCookies}}
        proxy_set_header Cookie "";
{{- end}}
        proxy_pass {{if $.UpstreamTLS}}https{{else}}http{{end}}://rampart_service;
    }
{{end}}
{{- if .CatchAll}}
    # No route: rampart authz answers (404), as rampart gateway does.
    location / {
        set $rampart_route "";
        {{- template "authreq" $}}
        proxy_pass {{if .UpstreamTLS}}https{{else}}http{{end}}://rampart_service;
    }
{{- end}}
}

`

const caddyTemplate = `# Caddy in front of rampart authz: written by rampart authz --print-config caddy.
# Every request asks rampart authz first (forward_auth); a refusal is
# rampart authz's answer, status, headers and body. The client's copies of
# Rampart's identity headers are removed before, so the service receives
# only those rampart authz wrote.
{
	admin off
{{- if not .Cert}}
	auto_https off
{{- end}}
}

{{if .Cert}}https{{else}}http{{end}}://{{.Listen}} {
{{- if .Cert}}
	tls {{.Cert}} {{.Key}}
{{- end}}
	# The routes that do not forward cookies (forward_cookies: false): the
	# service gets only the credential rampart authz checked.
{{- range $i, $r := .Routes}}{{if not $r.ForwardCookies}}
	@nocookie{{$i}} path {{$r.Prefix}}{{if not $r.Exact}}*{{end}}
{{- end}}{{end}}
	route {
{{- range .Identity}}
		request_header -{{.}}
{{- end}}
{{- range $i, $r := .Routes}}{{if not $r.ForwardCookies}}
		request_header @nocookie{{$i}} -Cookie
{{- end}}{{end}}
		forward_auth {{if .AuthzUnix}}unix/{{.AuthzUnix}}{{else}}{{if .AuthzTLS}}https://{{end}}{{.AuthzAddr}}{{end}} {
			uri /caddy
			copy_headers{{range .Identity}} {{.}}{{end}}
		}
		reverse_proxy {{if .UpstreamTLS}}https://{{end}}{{.UpstreamHost}}
	}
}
`

const envoyTemplate = `# Envoy in front of rampart authz: written by rampart authz --print-config envoy.
# A static bootstrap: every request is checked by rampart authz over gRPC
# (envoy.filters.http.ext_authz; failure_mode_allow false, so an error is a
# refusal){{if .RateLimits}} and counted by its rate limit service
# (envoy.filters.http.ratelimit, domain {{.Domain}}; failure_mode_deny true){{end}}.
# Each Envoy route names its Rampart route in context_extensions.
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: {{.ListenHost}}, port_value: {{.ListenPort}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: payments
              domains: ["*"]
              routes:
{{- range .Routes}}
              - match: {{"{"}}{{if .Exact}}path{{else}}prefix{{end}}: "{{.Prefix}}"{{"}"}}
                route:
                  cluster: service
{{- if $.RateLimits}}
                  rate_limits:
                  - actions:
                    - {remote_address: {}}
                    - {request_headers: {header_name: ":path", descriptor_key: path}}
{{- end}}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    check_settings: {context_extensions: {rampart_route: "{{.Prefix}}"}}
{{- end}}
{{- if .CatchAll}}
              - match: {prefix: "/"}
                route: {cluster: service}
{{- end}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              include_peer_certificate: true
              grpc_service:
                envoy_grpc: {cluster_name: rampart_authz}
                timeout: 0.25s
{{- if .RateLimits}}
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: {{.Domain}}
              failure_mode_deny: true
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limit_service:
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: rampart_authz}, timeout: 0.25s}
{{- end}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- if .Cert}}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            tls_certificates:
            - certificate_chain: {filename: {{.Cert}}}
              private_key: {filename: {{.Key}}}
{{- end}}
  clusters:
  - name: rampart_authz
    type: STATIC
    connect_timeout: 0.25s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: rampart_authz
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{if .AuthzUnix}}{pipe: {path: {{.AuthzUnix}}}}{{else}}{socket_address: {address: {{.AuthzHost}}, port_value: {{.AuthzPort}}}}{{end}}
{{- if .AuthzTLS}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          alpn_protocols: [h2]
          # validation_context and, for mutual TLS (authz.grpc.client_roots),
          # tls_certificates: Envoy's own certificate.
{{- end}}
  - name: service
    type: STRICT_DNS
    connect_timeout: 1s
    load_assignment:
      cluster_name: service
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {socket_address: {address: {{.UpstreamHostOnly}}, port_value: {{.UpstreamPort}}}}
`

const istioTemplate = `# Istio with rampart authz: written by rampart authz --print-config istio.
# 1. The mesh's extension provider (istioctl install -f, or the istio
#    ConfigMap's mesh): rampart authz as an Envoy ext_authz gRPC service.
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  meshConfig:
    extensionProviders:
    - name: rampart-authz
      envoyExtAuthzGrpc:
        service: rampart-authz.rampart.svc.cluster.local
        port: {{if .AuthzPort}}{{.AuthzPort}}{{else}}9191{{end}}
        timeout: 0.25s
        failOpen: false
        includeRequestBodyInCheck: null
---
# 2. Every request to the ingress gateway asks rampart authz (CUSTOM).
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: rampart-authz
  namespace: istio-system
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  action: CUSTOM
  provider: {name: rampart-authz}
  rules:
  - to:
    - operation:
        paths:
{{- range .Routes}}
        - "{{.Prefix}}{{if not .Exact}}*{{end}}"
{{- end}}
{{- if .RateLimits}}
---
# 3. The global rate limit service: rampart authz's RateLimitService, with
#    rate limit actions on the ingress gateway's routes.
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: rampart-ratelimit
  namespace: istio-system
spec:
  workloadSelector:
    labels: {istio: ingressgateway}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
          domain: {{.Domain}}
          failure_mode_deny: true
          enable_x_ratelimit_headers: DRAFT_VERSION_03
          rate_limit_service:
            transport_api_version: V3
            grpc_service:
              envoy_grpc: {cluster_name: outbound|{{if .AuthzPort}}{{.AuthzPort}}{{else}}9191{{end}}||rampart-authz.rampart.svc.cluster.local}
              timeout: 0.25s
  - applyTo: VIRTUAL_HOST
    match:
      context: GATEWAY
    patch:
      operation: MERGE
      value:
        rate_limits:
        - actions:
          - {remote_address: {}}
          - {request_headers: {header_name: ":path", descriptor_key: path}}
{{- end}}
`
