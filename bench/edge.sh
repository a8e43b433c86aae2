#!/usr/bin/env bash
# bench/edge.sh: Rampart's controls on the engines teams run, against the
# same engine proxying bare and against rampart gateway, each terminating
# TLS (ECDSA P-256) in front of the same upstream on loopback, loaded with
# wrk -t2 -c64, in one run:
#
#   nginx          proxy_pass only (the baseline)
#   nginx+authz    nginx auth_request -> rampart authz (forward auth)
#   caddy+authz    Caddy forward_auth -> rampart authz
#   gateway        rampart gateway
#
# rampart authz and rampart gateway run the same routes and controls: an
# API key on every request, two edge limits (by address and by client, set
# high enough never to refuse), CORS. The engines' configurations are the
# ones rampart authz --print-config writes. Access logs are off.
#
# Usage: bench/edge.sh [DURATION] [ROUNDS]   (default 10s, 1 round)
# Needs wrk, nginx, caddy and openssl; installs the missing ones as root.
set -euo pipefail

duration=${1:-10s}
rounds=${2:-1}
threads=2
connections=64
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/rampart-bench-edge.XXXXXX)
chmod 0711 "$work" # nginx's workers reach the unix socket in it
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${keep:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
keep=${KEEP:-}

die() { echo "bench/edge.sh: $*" >&2; exit 1; }

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

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$work/front.key" -out "$work/front.pem" 2>/dev/null

# nginx_main DIR INCLUDE [WORKERS]: a main nginx.conf including a site.
nginx_main() {
	cat <<EOF
worker_processes ${3:-auto};
pid $1/pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $1; proxy_temp_path $1;
	fastcgi_temp_path $1; uwsgi_temp_path $1; scgi_temp_path $1;
	include $2;
}
EOF
}

# The upstream: nginx answering a small JSON body from memory.
up=$(port)
mkdir -p "$work/nginx-up" "$work/nginx-bare" "$work/nginx-authz"
cat >"$work/nginx-up/site.conf" <<EOF
server {
	listen 127.0.0.1:$up;
	location / { default_type application/json; return 200 '{"payments":[]}\n'; }
}
EOF
nginx_main "$work/nginx-up" "$work/nginx-up/site.conf" 1 >"$work/nginx-up/nginx.conf"
"$nginx" -e "$work/nginx-up/error.log" -c "$work/nginx-up/nginx.conf" -g 'daemon off;' &
pids+=($!)
uppid=$!
wait_port "$up"

data="$work/data"
"$work/rampart" client create bench --data "$data" --init --scopes payment.read >/dev/null 2>&1
key=$("$work/rampart" apikey create --client bench --data "$data" --scopes payment.read 2>/dev/null)

# The controls both Rampart processes run.
controls() {
	cat <<EOF
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
EOF
}

gp=$(port)
{ controls; printf 'listen: 127.0.0.1:%s\ntls: {cert: %s, key: %s}\naccess_log: "off"\n' "$gp" "$work/front.pem" "$work/front.key"; } >"$work/gateway.yaml"
"$work/rampart" gateway --config "$work/gateway.yaml" 2>"$work/gateway.log" &
pids+=($!)
gwpid=$!
wait_port "$gp"

{ controls; printf 'authz:\n  http: {listen: "unix:%s", mode: "0666"}\n' "$work/authz.sock"; } >"$work/authz.yaml"
"$work/rampart" authz --config "$work/authz.yaml" 2>"$work/authz.log" &
pids+=($!)
azpid=$!
for _ in $(seq 100); do [ -S "$work/authz.sock" ] && break; sleep 0.1; done
[ -S "$work/authz.sock" ] || die "rampart authz did not listen on $work/authz.sock"

np=$(port)
cat >"$work/nginx-bare/site.conf" <<EOF
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
EOF
nginx_main "$work/nginx-bare" "$work/nginx-bare/site.conf" >"$work/nginx-bare/nginx.conf"
"$nginx" -e "$work/nginx-bare/error.log" -c "$work/nginx-bare/nginx.conf" -g 'daemon off;' &
pids+=($!)
nbpid=$!
wait_port "$np"

# nginx + auth_request -> rampart authz, as rampart authz --print-config writes it.
nap=$(port)
"$work/rampart" authz --config "$work/authz.yaml" --print-config nginx --listen "127.0.0.1:$nap" \
	--cert "$work/front.pem" --key "$work/front.key" --upstream "http://127.0.0.1:$up" >"$work/nginx-authz/site.conf"
nginx_main "$work/nginx-authz" "$work/nginx-authz/site.conf" >"$work/nginx-authz/nginx.conf"
"$nginx" -e "$work/nginx-authz/error.log" -c "$work/nginx-authz/nginx.conf" -g 'daemon off;' &
pids+=($!)
napid=$!
wait_port "$nap"

# Caddy + forward_auth -> rampart authz.
cap=$(port)
"$work/rampart" authz --config "$work/authz.yaml" --print-config caddy --listen "localhost:$cap" \
	--cert "$work/front.pem" --key "$work/front.key" --upstream "http://127.0.0.1:$up" >"$work/Caddyfile"
XDG_DATA_HOME="$work/caddy" XDG_CONFIG_HOME="$work/caddy" caddy run --config "$work/Caddyfile" --adapter caddyfile 2>"$work/caddy.log" &
pids+=($!)
cdpid=$!
wait_port "$cap"

names=(nginx nginx+authz caddy+authz gateway)
declare -A portof=([nginx]=$np [nginx+authz]=$nap [caddy+authz]=$cap [gateway]=$gp)
for name in "${names[@]}"; do
	u="https://localhost:${portof[$name]}/v1/payments"
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/front.pem" -H "X-API-Key: $key" -H 'Origin: https://app.payments.example' "$u")
	[ "$code" = 200 ] || die "$name: $u answered $code"
	if [ "$name" != nginx ]; then
		code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$work/front.pem" "$u")
		[ "$code" = 401 ] || die "$name answered $code without an API key, want 401"
	fi
done

# cputicks PID...: user+system clock ticks of the processes and their
# children (nginx's workers).
cputicks() {
	local all=() p
	for p in "$@"; do all+=("$p"); all+=($(pgrep -P "$p" || true)); done
	for p in "${all[@]}"; do awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || true; done | awk '{s+=$1} END {print s+0}'
}
declare -A procs=([nginx]="$nbpid" [nginx+authz]="$napid $azpid" [caddy+authz]="$cdpid $azpid" [gateway]="$gwpid")
hz=$(getconf CLK_TCK)

run() { # NAME PORT -> "req/s p99_ms cpu_us_per_request authz_cpu_us_per_request"
	local out before after azbefore azafter
	before=$(cputicks ${procs[$1]})
	azbefore=$(cputicks "$azpid")
	out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency \
		-H "X-API-Key: $key" -H 'Origin: https://app.payments.example' \
		"https://localhost:$2/v1/payments")
	after=$(cputicks ${procs[$1]})
	azafter=$(cputicks "$azpid")
	case $1 in *authz) ;; *) azafter=$azbefore ;; esac
	echo "$out" >"$work/wrk-$1.txt"
	local rps p99 non2xx reqs
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' <<<"$out")
	non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
	[ -z "$non2xx" ] || die "$1: $non2xx responses were not 2xx"
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	echo "$rps $p99 $(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}') $(awk -v t=$((azafter - azbefore)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
}

echo "wrk -t$threads -c$connections -d$duration, $rounds round(s) interleaved, TLS at the front, upstream nginx on 127.0.0.1:$up ($(nproc) CPUs)" >&2
for name in "${names[@]}"; do
	wrk -t"$threads" -c"$connections" -d2s -H "X-API-Key: $key" "https://localhost:${portof[$name]}/v1/payments" >/dev/null
done
declare -A rps p99 cpu azcpu
for _ in $(seq "$rounds"); do
	for name in "${names[@]}"; do
		read -r a b c d < <(run "$name" "${portof[$name]}")
		azcpu[$name]="${azcpu[$name]:-} $d"
		rps[$name]="${rps[$name]:-} $a"
		p99[$name]="${p99[$name]:-} $b"
		cpu[$name]="${cpu[$name]:-} $c"
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
printf '\n%-12s %10s %8s %10s %9s   %s\n' front req/s p99_ms cpu_us/req of_authz "(medians; each round's req/s)"
declare -A m
for name in "${names[@]}"; do
	m[$name]=$(echo "${rps[$name]}" | median)
	printf '%-12s %10.0f %8.2f %10.1f %9.1f   %s\n' "$name" "${m[$name]}" "$(echo "${p99[$name]}" | median)" "$(echo "${cpu[$name]}" | median)" "$(echo "${azcpu[$name]}" | median)" "${rps[$name]}"
done
echo "(cpu_us/req: user+system CPU of the front's processes, nginx's workers and rampart authz included, per request; of_authz: rampart authz's part; neither counts wrk or the upstream)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
echo
echo "nginx+authz / nginx    $(ratio "${m[nginx+authz]}" "${m[nginx]}")   (target >= 0.5)"
echo "nginx+authz / gateway  $(ratio "${m[nginx+authz]}" "${m[gateway]}")   (target >= 2)"
echo "caddy+authz / nginx    $(ratio "${m[caddy+authz]}" "${m[nginx]}")"
echo "gateway / nginx        $(ratio "${m[gateway]}" "${m[nginx]}")"
