#!/bin/bash
# Shared-memory sockets under a pre-fork server: nginx (a master that
# listens, two workers that accept; sendfile) with wrk for 2 s on a
# small file (every response 2xx, no socket error) and curl fetching a
# 100 MiB file (its sha256 must match); both ends of connections the
# workers accepted went through shared memory. In a sanitizer build
# (the runtimes preloaded) Debian's curl hangs before its first
# connect, so python3 fetches the file there, and the probes run curl
# without the runtimes.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd nginx wrk curl sha256sum
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

port=$(free_port)
ng=$TMP/nginx
mkdir -p "$ng/www" "$ng/tmp" "$ng/logs"
head -c 1000 /dev/urandom | base64 >"$ng/www/small.html"
head -c $((100 << 20)) /dev/urandom >"$ng/www/big.bin"
# as root nginx would run its workers as nobody: another uid than the
# clients', which the rendezvous refuses by design
user=
[ "$(id -u)" = 0 ] && user="user root;"
cat >"$ng/nginx.conf" <<CONF
$user
daemon off;
master_process on;
worker_processes 2;
pid $ng/nginx.pid;
error_log $ng/logs/error.log warn;
events { worker_connections 256; }
http {
	access_log off;
	sendfile on;
	keepalive_requests 100000;
	client_body_temp_path $ng/tmp/body;
	proxy_temp_path $ng/tmp/proxy;
	fastcgi_temp_path $ng/tmp/fastcgi;
	uwsgi_temp_path $ng/tmp/uwsgi;
	scgi_temp_path $ng/tmp/scgi;
	server {
		listen 127.0.0.1:$port;
		root $ng/www;
		# the worker closes it, and counts it, when the file is sent
		location = /big.bin { keepalive_timeout 0; }
	}
}
CONF
timeout 300 "$ANOLE" smc run -- nginx -p "$ng" -e "$ng/logs/error.log" -c "$ng/nginx.conf" &
smc_bg $!
probe() { env -u LD_PRELOAD timeout 10 curl -sf -o /dev/null "http://127.0.0.1:$port/small.html"; }
for _ in $(seq 300); do
	probe && break
	sleep 0.1
done
probe ||
	fail "nginx did not start: $(tail -5 "$ng/logs/error.log")"

out=$(timeout 60 "$ANOLE" smc run -- wrk -t 2 -c 8 -d 2s "http://127.0.0.1:$port/small.html") ||
	fail "wrk: $out"
echo "$out"
echo "$out" | grep -q 'requests in' || fail "wrk said no requests"
echo "$out" | grep -q 'Non-2xx' && fail "wrk saw responses other than 2xx"
echo "$out" | grep -q 'Socket errors' && fail "wrk saw socket errors"

fetch=(curl -sSf -o "$TMP/got.bin" "http://127.0.0.1:$port/big.bin")
[ -z "${LD_PRELOAD:-}" ] || fetch=(python3 -c 'import shutil, sys, urllib.request
shutil.copyfileobj(urllib.request.urlopen(sys.argv[1]), open(sys.argv[2], "wb"), 1 << 20)' \
	"http://127.0.0.1:$port/big.bin" "$TMP/got.bin")
timeout 120 "$ANOLE" smc run -- "${fetch[@]}" || fail "the fetch of the 100 MiB file failed"
[ "$(sha256sum <"$TMP/got.bin" | cut -d' ' -f1)" = "$(sha256sum <"$ng/www/big.bin" | cut -d' ' -f1)" ] ||
	fail "the 100 MiB file came back different"
rm -f "$TMP/got.bin" "$ng/www/big.bin"

# a graceful stop: the workers close wrk's idle connections (and count them)
kill -QUIT "$(cat "$ng/nginx.pid")"
for _ in $(seq 300); do
	[ -e "$ng/nginx.pid" ] || break
	sleep 0.1
done
_smc_stop
cat "$ANOLE_SMC_STATS"
"$ANOLE" smc stat "$ANOLE_SMC_STATS"
"$ANOLE" smc stat --json "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_server_connections']")" -ge 1 ] || fail "no worker's connection in shared memory"
[ "$(smc_stat "['smc_client_connections']")" -ge 1 ] || fail "no client's connection in shared memory"
[ "$(smc_stat "['smc_bytes_sent']")" -ge $((100 << 20)) ] || fail "shared memory did not carry the 100 MiB"
echo "t0915: nginx (2 workers), wrk and curl (100 MiB) through shared memory"
