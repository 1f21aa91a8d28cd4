#!/bin/bash
# Shared-memory sockets, the server's first read of an accepted
# connection it has not looked at yet: read, readv, recvmsg, recvfrom
# and recv with MSG_PEEK each answer it (TCP data there commits the
# connection to TCP in that call). With a plain client every connection
# is TCP (tcp-first) and every byte comes back; with a client under the
# library every connection is in shared memory and every byte comes back.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

FR=$ROOT/tests/lib/smc-firstread
# run [PREFIX...]: the server under the library, the client under PREFIX
run() {
	local srv out
	rm -f "$TMP/port" "$ANOLE_SMC_STATS"
	timeout 60 "$ANOLE" smc run -- python3 "$FR" server "$TMP/port" &
	srv=$!
	smc_bg $srv
	wait_file "$TMP/port"
	out=$(timeout 60 "$@" python3 "$FR" client "$TMP/port") || fail "client: $out"
	[ "$out" = "ok 5" ] || fail "client said: $out"
	wait "$srv" || fail "the server failed"
	_SMC_PIDS=()
	cat "$ANOLE_SMC_STATS"
}
run
[ "$(smc_stat "['fallbacks']['tcp-first']")" = 5 ] || fail "plain client: not 5 tcp-first connections"
[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "plain client: a connection claims shared memory"
run "$ANOLE" smc run --
[ "$(smc_stat "['smc_connections']")" = 10 ] || fail "library client: not 5 connections in shared memory on each end"
echo "t0918: the first read by read, readv, recvmsg, recvfrom, MSG_PEEK: byte-exact over TCP and shared memory"
