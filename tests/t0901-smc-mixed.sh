#!/bin/bash
# Shared-memory sockets, a mixed pair: only one end has the library
# (server only, then client only). The connection stays plain TCP and
# every byte comes back; the library's end counts its fallback reason
# (the server: TCP data came first; the client: no rendezvous socket
# for the server's port).
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
echo "t0901: both mixed pairs plain TCP and byte-exact"
