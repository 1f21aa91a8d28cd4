#!/bin/bash
# Shared-memory sockets, a mixed pair: only one end has the library
# (server only, then client only). The connection stays plain TCP and
# every byte comes back; the library's end counts its fallback reason
# (the server: TCP data came first; the client: no rendezvous socket
# for the server's port, remembered for 1 s).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

pair() { # SERVER-PREFIX CLIENT-PREFIX
	rm -f "$TMP/port"
	timeout 300 $1 python3 "$PEER" echo-server "$TMP/port" 1 &
	srv=$!
	wait_file "$TMP/port"
	out=$(timeout 300 $2 python3 "$PEER" client "$TMP/port" 2000003 mixed) || fail "client: $out"
	[ "$out" = "ok 2000003" ] || fail "client said: $out"
	wait "$srv" || fail "the echo server failed"
}
pair "$ANOLE smc run --" ""
pair "" "$ANOLE smc run --"
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "a mixed pair claims shared memory"
[ "$(smc_stat "['tcp_connections']")" = 2 ] || fail "the library's ends did not count their fallbacks"
[ "$(smc_stat "['fallbacks']['tcp-first']")" = 1 ] || fail "no tcp-first fallback counted"
[ "$(smc_stat "['fallbacks']['no-rendezvous']")" = 1 ] || fail "no no-rendezvous fallback counted"

# A client under the library keeps what it learned of a port without a
# rendezvous: 20 connections to a plain server, one look (one stats line
# of its own), 19 kept on TCP untracked (one bulk line, "count":19). A
# server with the library on that port later gets shared memory once
# the client's memory of it has run out (1 s).
rm -f "$TMP/port" "$TMP/port2" "$TMP/mark" "$ANOLE_SMC_STATS"
timeout 120 python3 "$PEER" echo-server "$TMP/port" 20 &
srv=$!
smc_bg $srv
wait_file "$TMP/port"
timeout 120 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-short" "$TMP/port" 20 \
	"$TMP/mark" "$TMP/port2" 5 1.5 >"$TMP/short.out" 2>&1 &
cli=$!
wait_file "$TMP/mark"
wait "$srv" || fail "the plain echo server failed"
SMC_PEER_PORT=$(cat "$TMP/port") timeout 120 "$ANOLE" smc run -- \
	python3 "$PEER" echo-server "$TMP/port2" 5 &
srv=$!
smc_bg $srv
wait "$cli" || fail "client: $(cat "$TMP/short.out")"
[ "$(cat "$TMP/short.out")" = "ok 25" ] || fail "client said: $(cat "$TMP/short.out")"
wait "$srv" || fail "the library's echo server failed"
_SMC_PIDS=()
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['fallbacks']['no-rendezvous']")" = 20 ] || fail "not 20 no-rendezvous fallbacks"
grep -q '"role":"client","mode":"tcp","reason":"no-rendezvous","tx":0,"rx":0,"count":19}' "$ANOLE_SMC_STATS" ||
	fail "the client looked for the rendezvous more than once"
[ "$(grep -c '"role":"client","mode":"smc"' "$ANOLE_SMC_STATS")" = 5 ] ||
	fail "the library's server on that port did not get shared memory after 1 s"
echo "t0901: both mixed pairs plain TCP and byte-exact; a port without a rendezvous looked at once, again after 1 s"
