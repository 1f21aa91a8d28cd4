#!/bin/bash
# Shared-memory sockets, short connections: a client process that makes
# 20 short connections (100 bytes each way, then close) to one port uses
# shared memory for the first 8, learns that this port's connections are
# short and keeps the next 12 on TCP without a handshake (reason
# short-lived; the server sees TCP data first). Every byte comes back
# right either way. With ANOLE_SMC_SHORT=0 all 20 use shared memory.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

# run_short N: the echo server and the client, N connections
run_short() {
	local srv out
	rm -f "$TMP/port" "$ANOLE_SMC_STATS"
	timeout 120 "$ANOLE" smc run -- python3 "$PEER" echo-server "$TMP/port" "$1" &
	srv=$!
	smc_bg $srv
	wait_file "$TMP/port"
	out=$(timeout 120 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-short" "$TMP/port" "$1") ||
		fail "client: $out"
	[ "$out" = "ok $1" ] || fail "client said: $out"
	wait "$srv" || fail "the echo server failed"
	_SMC_PIDS=()
	cat "$ANOLE_SMC_STATS"
}
# count ROLE MODE REASON: lines of the statistics file
count() { grep -c "\"role\":\"$1\",\"mode\":\"$2\",\"reason\":\"$3\"" "$ANOLE_SMC_STATS" || true; }

run_short 20
[ "$(count client smc none)" = 8 ] || fail "not 8 client connections in shared memory first"
[ "$(smc_stat "['fallbacks']['short-lived']")" = 12 ] || fail "not 12 client connections kept on TCP as short"
[ "$(count server smc none)" = 8 ] || fail "the server's ends do not match the client's"
[ "$(smc_stat "['fallbacks']['tcp-first']")" = 12 ] || fail "the server did not see TCP first 12 times"
[ "$(smc_stat "['smc_bytes_sent']")" = 1600 ] || fail "shared memory did not carry 8 x 100 bytes each way"

ANOLE_SMC_SHORT=0 run_short 20
[ "$(count client smc none)" = 20 ] || fail "ANOLE_SMC_SHORT=0: not every client connection in shared memory"
[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "ANOLE_SMC_SHORT=0: a connection fell back to TCP"
echo "t0917: 8 short connections in shared memory, the next 12 on TCP; all 20 with ANOLE_SMC_SHORT=0"
