#!/usr/bin/env bash
# bench/gateway.sh: rampart gateway against nginx (proxy_pass) and Caddy
# (reverse_proxy), each terminating TLS in front of the same upstream on
# loopback, loaded with wrk -t2 -c64. Prints requests per second and p99
# latency of each, and Rampart's ratios to the others.
#
# Rampart runs with everything a payment API would turn on: API-key
# authentication on every request, edge rate limits (by address and by
# client, set high enough never to refuse), CORS; nginx and Caddy only
# proxy. Access logs are off for all three, so that disk writes do not
# decide the result.
#
# Usage: bench/gateway.sh [DURATION]     (default 10s per run)
# Needs wrk, nginx, caddy and openssl (apt-get install wrk nginx caddy
# openssl); installs the missing ones when run as root.
set -euo pipefail

duration=${1:-10s}
threads=2
connections=64
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/rampart-bench-gateway.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${keep:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
keep=${KEEP:-}

die() { echo "bench/gateway.sh: $*" >&2; exit 1; }

missing=()
for tool in wrk nginx caddy openssl; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${missing[*]}: apt-get install ${missing[*]}"
	apt-get install -y "${missing[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)

# A free port on loopback.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listening on 127.0.0.1:$1"
}

echo "building rampart..." >&2
(cd "$root" && go build -o "$work/rampart" ./cmd/rampart)

# One certificate for the three front ends.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/front.key" -out "$work/front.pem" 2>/dev/null

# The upstream: nginx answering a small JSON body from memory, so that the
# proxies, not the upstream, are what is measured.
up=$(port)
mkdir -p "$work/nginx-up" "$work/nginx-front"
cat >"$work/nginx-up/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx-up/pid;
error_log $work/nginx-up/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $work/nginx-up; proxy_temp_path $work/nginx-up;
	fastcgi_temp_path $work/nginx-up; uwsgi_temp_path $work/nginx-up; scgi_temp_path $work/nginx-up;
	server {
		listen 127.0.0.1:$up;
		location / { default_type application/json; return 200 '{"payments":[]}\n'; }
	}
}
EOF
"$nginx" -e "$work/nginx-up/error.log" -c "$work/nginx-up/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$up"

# Rampart: a client with an API key in a fresh data directory.
data="$work/data"
"$work/rampart" client create bench --data "$data" --init --scopes payment.read >/dev/null 2>&1
key=$("$work/rampart" apikey create --client bench --data "$data" --scopes payment.read 2>/dev/null)
rp=$(port)
cat >"$work/gateway.yaml" <<EOF
listen: 127.0.0.1:$rp
tls: {cert: $work/front.pem, key: $work/front.key}
routes:
  - prefix: /
    upstream: http://127.0.0.1:$up
    auth: required
cors:
  allowed_origins: [https://app.payments.example]
  allowed_headers: [X-API-Key, Content-Type]
ratelimit:
  rules:
    - {name: per-address, rate: 1000000, per: 1s, by: [addr]}
    - {name: per-client, rate: 1000000, per: 1s, by: [client]}
auth:
  api_keys: {data_dir: $data}
access_log: "off"
EOF
"$work/rampart" gateway --config "$work/gateway.yaml" 2>"$work/gateway.log" &
pids+=($!)
wait_port "$rp"

# nginx as a TLS-terminating reverse proxy with upstream keep-alive.
np=$(port)
cat >"$work/nginx-front/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx-front/pid;
error_log $work/nginx-front/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $work/nginx-front; proxy_temp_path $work/nginx-front;
	fastcgi_temp_path $work/nginx-front; uwsgi_temp_path $work/nginx-front; scgi_temp_path $work/nginx-front;
	upstream app { server 127.0.0.1:$up; keepalive 128; }
	server {
		listen 127.0.0.1:$np ssl;
		ssl_certificate $work/front.pem;
		ssl_certificate_key $work/front.key;
		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
"$nginx" -e "$work/nginx-front/error.log" -c "$work/nginx-front/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port "$np"

# Caddy, the same.
cp=$(port)
cat >"$work/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
https://localhost:$cp {
	bind 127.0.0.1
	tls $work/front.pem $work/front.key
	reverse_proxy 127.0.0.1:$up
}
EOF
XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" caddy run --config "$work/Caddyfile" --adapter caddyfile 2>"$work/caddy.log" &
pids+=($!)
wait_port "$cp"

# Every front end must answer 200 before anything is measured.
for u in "https://localhost:$rp/v1/payments" "https://localhost:$np/v1/payments" "https://localhost:$cp/v1/payments"; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/front.pem" -H "X-API-Key: $key" -H 'Origin: https://app.payments.example' "$u")
	[ "$code" = 200 ] || die "$u answered $code"
done
# And Rampart must refuse without the key: authentication is on.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/front.pem" "https://localhost:$rp/v1/payments")
[ "$code" = 401 ] || die "rampart answered $code without an API key, want 401"

# run NAME PORT: wrk, then "req/s p99_ms" on stdout.
run() {
	local out
	out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency \
		-H "X-API-Key: $key" -H 'Origin: https://app.payments.example' \
		"https://localhost:$2/v1/payments")
	echo "$out" >"$work/wrk-$1.txt"
	local rps p99 non2xx
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' <<<"$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
	[ -z "$non2xx" ] || die "$1: $non2xx responses were not 2xx"
	echo "$rps $p99"
}

echo "wrk -t$threads -c$connections -d$duration, TLS at the front, upstream nginx on 127.0.0.1:$up ($(nproc) CPUs)" >&2
for name in rampart nginx caddy; do
	# Warm up (connections, caches, the Go runtime) before measuring.
	case $name in rampart) p=$rp ;; nginx) p=$np ;; caddy) p=$cp ;; esac
	wrk -t"$threads" -c"$connections" -d2s -H "X-API-Key: $key" "https://localhost:$p/v1/payments" >/dev/null
done
declare -A rps p99
for name in rampart nginx caddy; do
	case $name in rampart) p=$rp ;; nginx) p=$np ;; caddy) p=$cp ;; esac
	read -r rps[$name] p99[$name] < <(run "$name" "$p")
done

printf '\n%-8s %12s %10s\n' proxy req/s p99_ms
for name in rampart nginx caddy; do
	printf '%-8s %12.0f %10.2f\n' "$name" "${rps[$name]}" "${p99[$name]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "rampart/caddy  req/s $(ratio "${rps[rampart]}" "${rps[caddy]}")x  p99 $(ratio "${p99[rampart]}" "${p99[caddy]}")x (lower is better)"
echo "rampart/nginx  req/s $(ratio "${rps[rampart]}" "${rps[nginx]}")x  p99 $(ratio "${p99[rampart]}" "${p99[nginx]}")x (lower is better)"
