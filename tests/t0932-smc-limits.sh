#!/bin/bash
# Shared-memory sockets when the server cannot make a connection's shared
# memory: a server whose file size limit (ulimit -f 64: 64 KiB) is below
# the rings' memfd (2 x 256 KiB + 4 KiB) fails to size it for each
# connection. Every connection is then plain TCP, counted once per
# connection as no-memory on the server's side, nothing else changes:
# the client's bytes come back right, and neither end hangs. The same
# pair without the limit is in shared memory.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

# run_pair N [LIMIT]: the echo server (with ulimit -f LIMIT) and a client
# of N connections, every one asking for shared memory
run_pair() {
	local srv out
	rm -f "$TMP/port" "$ANOLE_SMC_STATS"
	(
		# past the limit ftruncate fails with EFBIG and sends SIGXFSZ:
		# ignored here (python3 ignores it too)
		trap '' XFSZ
		[ -z "${2:-}" ] || ulimit -f "$2"
		exec timeout 120 "$ANOLE" smc run -- python3 "$PEER" echo-server "$TMP/port" "$1"
	) &
	srv=$!
	smc_bg $srv
	wait_file "$TMP/port"
	out=$(ANOLE_SMC_SHORT=0 timeout 120 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-short" "$TMP/port" "$1") ||
		fail "client: $out"
	[ "$out" = "ok $1" ] || fail "client said: $out"
	wait "$srv" || fail "the echo server failed"
	_SMC_PIDS=()
	cat "$ANOLE_SMC_STATS"
}

run_pair 4 64
[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "a connection in shared memory past the limit"
[ "$(smc_stat "['fallbacks']['no-memory']")" = 4 ] || fail "not 4 no-memory fallbacks on the server"
[ "$(smc_stat "['tcp_connections']")" = 8 ] || fail "not both ends of 4 connections on TCP"

run_pair 4
[ "$(smc_stat "['smc_connections']")" = 8 ] || fail "without the limit: not every end in shared memory"
echo "t0932: a server that cannot size the rings' memfd keeps every connection on TCP (no-memory), bytes right"
