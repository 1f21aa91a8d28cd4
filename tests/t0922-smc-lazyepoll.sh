#!/bin/bash
# Shared-memory sockets, an event loop that adds an accepted connection
# to epoll before its client sent anything: the connection goes into
# the kernel's epoll set without a look, and the client's proposal,
# coming later, rings the process tree's doorbell so that epoll_wait
# answers it. The handshake timeout is set far above the test's length:
# a proposal left to it would end in TCP, so "smc" on both ends shows
# that it was answered from the event loop. A plain client's bytes
# arriving after the add make the connection TCP (the first read is the
# look); every byte comes back. For one process, for a worker forked
# after listen(), and for a program that gives a member of the set the
# library's doorbell data (its events must reach it).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

LZ=$ROOT/tests/lib/smc-lazyepoll
N=4
export ANOLE_SMC_TIMEOUT_MS=120000
# run FORK [PREFIX...]: the server under the library, the client under PREFIX
run() {
	local fork=$1 srv out
	shift
	rm -rf "$TMP/port" "$ANOLE_SMC_STATS" "$TMP/d"
	mkdir "$TMP/d"
	timeout 60 "$ANOLE" smc run -- python3 "$LZ" server "$TMP/port" "$TMP/d" $N $fork &
	srv=$!
	smc_bg $srv
	wait_file "$TMP/port"
	out=$(timeout 50 "$@" python3 "$LZ" client "$TMP/port" "$TMP/d" $N) || fail "client: $out"
	[ "$out" = "ok $N" ] || fail "client said: $out"
	wait "$srv" || fail "the server failed"
	_SMC_PIDS=()
	cat "$ANOLE_SMC_STATS"
}
for fork in "" fork clash; do
	run "$fork"
	[ "$(smc_stat "['fallbacks']['tcp-first']")" = $N ] || fail "plain client ($fork): not $N tcp-first"
	[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "plain client ($fork): a connection claims shared memory"
	run "$fork" "$ANOLE" smc run --
	[ "$(smc_stat "['smc_connections']")" = $((2 * N)) ] ||
		fail "library client ($fork): not $N connections in shared memory on each end"
	[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "library client ($fork): a connection fell back to TCP"
done
echo "t0922: a connection added to epoll before its proposal: shared memory, answered from the event loop; plain bytes after the add: TCP; byte-exact"
