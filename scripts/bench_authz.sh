#!/usr/bin/env bash
# revbloom authz behind NGINX, side by side in one run (docs/BENCHMARKS.md, "Behind a proxy"):
#   1. NGINX alone, proxying to an upstream (a `return 200` server block of the same NGINX);
#   2. the same NGINX with `auth_request` to `revbloom authz` (the shipped
#      deploy/nginx/revbloom-authz.conf's subrequest settings, keep-alive to the sidecar);
#   3. the sidecar's HTTP check endpoint on its own;
#   4. the sidecar's Envoy ext_authz gRPC endpoint.
# Each with keep-alive, at C connections for SECS seconds, then with one connection (latency
# without queueing). The sidecar follows a real publisher holding NREV revocations.
#
#   cargo build --release -p revbloom-server --bin revbloom --example check_load
#   scripts/bench_authz.sh [SECS] [C] [NREV]      # e.g. 10 16 10000
#
# Needs NGINX (Debian: nginx) and python3. Loopback only; everything it starts is stopped.
set -uo pipefail
SECS=${1:-10}; C=${2:-16}; NREV=${3:-10000}
T=${T:-${CARGO_TARGET_DIR:-target}/release}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx not found; apt-get install nginx" >&2; exit 1; }
B=$(mktemp -d /tmp/rbauthz.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$B"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }

export REVBLOOM_ADMIN_TOKEN=bench-admin-token-0123456789
"$T/revbloom" serve --listen 127.0.0.1:0 --data "$B/data" >"$B/serve.out" 2>"$B/serve.err" &
PIDS+=($!)
wait_line "$B/serve.out" "listening on"
PUB=$(sed -n 's/^revbloom: listening on //p' "$B/serve.out")
# NREV revocations of other tokens, in batches of 1000, so the filter is not empty.
python3 - "$PUB" "$NREV" <<'PY'
import json, sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2]); exp = int(time.time()) + 1800
for start in range(0, n, 1000):
    body = json.dumps([{"jti": f"revoked-{i}", "exp": exp} for i in range(start, min(n, start + 1000))]).encode()
    req = urllib.request.Request(f"{url}/v1/revocations", data=body, method="POST", headers={
        "Authorization": "Bearer bench-admin-token-0123456789", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
# An HS256 token (the sidecar's secret) that is valid and not revoked.
printf 'bench-hs256-secret-0123456789abcdef' > "$B/secret"
python3 - "$B/secret" > "$B/token" <<'PY'
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
key = open(sys.argv[1], "rb").read(); now = int(time.time())
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"jti": "bench-good-token", "sub": "alice", "sid": "s-1", "iat": now - 5, "exp": now + 1200}).encode())
sig = b(hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{sig}", end="")
PY
"$T/revbloom" authz --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --grpc-listen 127.0.0.1:0 \
  --publisher "$PUB" --publisher-data "$B/data" --cache "$B/authz.rbs" \
  --hs256-secret-file "$B/secret" --forward-claim sub=x-auth-sub >"$B/authz.out" 2>"$B/authz.err" &
PIDS+=($!)
wait_line "$B/authz.out" "ext_authz gRPC on"
CHECK=$(sed -n 's/^revbloom: authz checks on //p' "$B/authz.out")
ADMIN=$(sed -n 's/^revbloom: authz admin on //p' "$B/authz.out")
GRPC=$(sed -n 's/^revbloom: authz ext_authz gRPC on //p' "$B/authz.out")
for _ in $(seq 1 100); do curl -sf "$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$ADMIN/readyz" >/dev/null || { echo "the sidecar never became ready" >&2; exit 1; }

P_ALONE=$(port); P_AUTHZ=$(port); P_APP=$(port)
mkdir -p "$B/nginx/tmp"
cat > "$B/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off; pid $B/nginx/nginx.pid; error_log $B/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $B/nginx/tmp/body; proxy_temp_path $B/nginx/tmp/proxy;
  fastcgi_temp_path $B/nginx/tmp/fcgi; uwsgi_temp_path $B/nginx/tmp/uwsgi; scgi_temp_path $B/nginx/tmp/scgi;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$P_APP; keepalive 64; }
  upstream authz { server ${CHECK#http://}; keepalive 64; }
  server { listen 127.0.0.1:$P_APP; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:$P_ALONE;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$P_AUTHZ;
    location / {
      auth_request /_authz;
      auth_request_set \$authz_sub \$upstream_http_x_auth_sub;
      proxy_set_header X-Auth-Sub \$authz_sub;
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
    }
    location = /_authz {
      internal;
      proxy_pass http://authz; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
    }
  }
}
CONF
"$NGINX" -p "$B/nginx" -c "$B/nginx/nginx.conf" &
PIDS+=($!)
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$P_ALONE/" >/dev/null && break; sleep 0.1; done

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "revocations in the filter: $NREV; nginx $("$NGINX" -v 2>&1 | cut -d/ -f2); $SECS s per run"
run() { # LABEL MODE URL CONNECTIONS
  echo "== $1 ($4 connections)"
  "$T/examples/check_load" "$2" --url "$3" --token-file "$B/token" --connections "$4" --secs "$SECS"
}
for c in "$C" 1; do
  run "NGINX alone" http "http://127.0.0.1:$P_ALONE/app" "$c"
  run "NGINX + auth_request -> revbloom authz" http "http://127.0.0.1:$P_AUTHZ/app" "$c"
  run "revbloom authz HTTP check" http "$CHECK/check" "$c"
  run "revbloom authz gRPC check" grpc "$GRPC" "$c"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
