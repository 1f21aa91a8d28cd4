#!/bin/bash
# Shared-memory sockets, many threads on one connection
# (tests/lib/smc-threads.c): two threads in poll, a reader and a poller,
# two threads in epoll_wait on one set, two readers sharing one stream
# (every message read exactly once), and a recv blocked while another
# thread closes the descriptor (it still gets the message sent after
# the close, as Linux gives it). Run plain TCP first, then under the
# library: the same lines both times, every client connection in
# shared memory. A lost wake-up hangs: the timeout makes that a failure.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"
need_cmd cc

ROUNDS=300
cc -O2 -Wall -Wextra -Werror -pthread -o "$TMP/smc-threads" "$ROOT/tests/lib/smc-threads.c" ||
	fail "cc smc-threads.c"
# the library's preload (sanitizer runtimes) is for the run under it
LD_PRELOAD='' timeout 60 "$TMP/smc-threads" "$ROUNDS" >"$TMP/tcp.out" 2>&1 ||
	fail "over plain TCP: $(cat "$TMP/tcp.out")"
rm -f "$ANOLE_SMC_STATS"
# short-connection learning off (the closer's connections are short),
# a long handshake timeout (a loaded machine must not make one TCP)
rc=0
ANOLE_SMC_SHORT=0 ANOLE_SMC_TIMEOUT_MS=30000 timeout 60 "$ANOLE" smc run -- \
	"$TMP/smc-threads" "$ROUNDS" >"$TMP/smc.out" 2>&1 || rc=$?
[ $rc = 124 ] && fail "under the library: hung (a lost wake-up) after: $(cat "$TMP/smc.out")"
[ $rc = 0 ] || fail "under the library: exit $rc: $(cat "$TMP/smc.out")"
cmp "$TMP/tcp.out" "$TMP/smc.out" || fail "under the library the program said: $(cat "$TMP/smc.out")"
cat "$TMP/smc.out"
"$ANOLE" smc stat "$ANOLE_SMC_STATS"
# pollers, mixed, epoll, readers, and ROUNDS/4+1 closer connections
want=$((4 + ROUNDS / 4 + 1))
got=$(grep -c '"role":"client","mode":"smc"' "$ANOLE_SMC_STATS")
[ "$got" = "$want" ] || fail "$got client connections in shared memory, not $want"
echo "t0921: $want connections, each with several threads on it, in shared memory; same results as TCP"
