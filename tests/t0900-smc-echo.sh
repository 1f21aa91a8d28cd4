#!/bin/bash
# Shared-memory sockets: a Python echo server and clients, all under
# `anole smc run`, move pseudo-random data of several sizes (0 bytes to
# 8 MiB, the ring is 256 KiB) both ways at once in random pieces and
# get every byte back; the statistics show every connection went
# through shared memory and carried those bytes, none fell back.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

sizes="0 1 4096 262144 262145 3000001 8388609"
n=$(echo "$sizes" | wc -w)
timeout 300 "$ANOLE" smc run -- python3 "$PEER" echo-server "$TMP/port" "$n" &
srv=$!
wait_file "$TMP/port"
total=0
for s in $sizes; do
	out=$(timeout 300 "$ANOLE" smc run -- python3 "$PEER" client "$TMP/port" "$s" "seed$s") ||
		fail "client of $s bytes: $out"
	[ "$out" = "ok $s" ] || fail "client of $s bytes said: $out"
	total=$((total + s))
done
wait "$srv" || fail "the echo server failed"
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = $((2 * n)) ] || fail "not every connection used shared memory"
[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "a connection fell back to TCP"
[ "$(smc_stat "['smc_bytes_sent']")" = $((2 * total)) ] || fail "shared memory did not carry every byte"
"$ANOLE" smc stat "$ANOLE_SMC_STATS"
echo "t0900: $n connections, $total bytes each way, all in shared memory"
