#!/bin/bash
# Shared-memory sockets under raw epoll(7), step by step in lock-step
# with the peer: edge-triggered EPOLLIN reported once per arrival,
# level-triggered again and again, EPOLLONESHOT re-armed only by
# EPOLL_CTL_MOD, edge-triggered EPOLLOUT after a full buffer is drained,
# EPOLLRDHUP and EOF after the peer's shutdown, a pipe in the same set.
# The script passes over plain TCP too (the kernel's semantics).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

timeout 300 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-epoll" server "$TMP" >"$TMP/srv.out" 2>&1 &
srv=$!
smc_bg $srv
out=$(timeout 300 "$ANOLE" smc run -- python3 "$ROOT/tests/lib/smc-epoll" client "$TMP") ||
	fail "client: $out"
wait "$srv" || fail "server: $(cat "$TMP/srv.out")"
[ "$out" = ok ] && [ "$(cat "$TMP/srv.out")" = ok ] || fail "client: $out, server: $(cat "$TMP/srv.out")"
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 2 ] || fail "not both ends in shared memory"
echo "t0911: epoll edge and level triggered, one-shot, EPOLLOUT, EPOLLRDHUP over shared memory"
