#!/bin/bash
# Shared-memory sockets, non-blocking: a client connects without
# blocking (EINPROGRESS, then POLLOUT), a read with nothing there says
# EAGAIN, and both ends move 5 MB through poll(2) with EAGAIN on full
# and empty rings, MSG_PEEK showing the bytes the next read returns,
# shutdown(SHUT_WR) giving the server EOF and the client EOF after the
# echo; every byte back in order, both ends in shared memory.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

timeout 300 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-poll" server "$TMP/port" &
srv=$!
wait_file "$TMP/port"
out=$(timeout 300 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-poll" client "$TMP/port" 5000000) ||
	fail "client: $out"
[ "$out" = "ok 5000000" ] || fail "client said: $out"
wait "$srv" || fail "the server failed"
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 2 ] || fail "not both ends in shared memory"
[ "$(smc_stat "['smc_bytes_sent']")" = 10000000 ] || fail "shared memory did not carry every byte"
echo "t0903: non-blocking connect, accept and poll through shared memory"
