#!/bin/bash
# Shared-memory sockets under Python asyncio (selectors: epoll, level
# triggered, non-blocking connect, add/remove of readers and writers):
# an echo server and a client with 8 connections at once, each sending
# random amounts in random pieces while reading the echo, then a
# half-close (write_eof) after which the server still sends the SHA-256
# of what it got. Three clients in turn; every byte compared, every
# connection in shared memory.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

timeout 300 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-asyncio" server "$TMP/port" &
smc_bg $!
wait_file "$TMP/port"
total=0
for seed in 1 2 3; do
	out=$(timeout 300 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-asyncio" client "$TMP/port" 8 "$seed") ||
		fail "client $seed: $out"
	case $out in
	"ok 8 "*) total=$((total + ${out#ok 8 })) ;;
	*) fail "client $seed said: $out" ;;
	esac
done
_smc_stop
"$ANOLE" smc stat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 48 ] || fail "not every connection used shared memory"
[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "a connection fell back to TCP"
[ "$(smc_stat "['smc_bytes_sent']")" = $((2 * total + 24 * 64)) ] ||
	fail "shared memory did not carry every byte"
echo "t0910: asyncio, 24 connections, $total bytes each way, all in shared memory"
