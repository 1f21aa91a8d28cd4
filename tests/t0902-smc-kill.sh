#!/bin/bash
# Shared-memory sockets, kill -9 of one end mid-transfer (after the
# first MiB went through shared memory): the other end never hangs
# (bounded by timeout) and sees what TCP would give it. A receiving
# server whose client dies: EOF or ECONNRESET. A sending client whose
# server dies: EPIPE or ECONNRESET.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

# the client dies: the server's recv ends
timeout 120 "$ANOLE" smc run -- python3 "$PEER" sink-server "$TMP/port" "$TMP/mark1" >"$TMP/srv.out" &
srv=$!
wait_file "$TMP/port"
"$ANOLE" smc run -- python3 "$PEER" blast "$TMP/port" "$TMP/unused" >/dev/null &
cli=$!
wait_file "$TMP/mark1"
kill -9 "$cli"
wait "$srv" || fail "the server did not end by itself (status $?)"
grep -Eq '^(eof|reset) [0-9]+$' "$TMP/srv.out" || fail "server saw: $(cat "$TMP/srv.out")"
echo "receiving server after kill -9 of its client: $(cat "$TMP/srv.out")"

# the server dies: the client's send fails
rm -f "$TMP/port"
"$ANOLE" smc run -- python3 "$PEER" sink-server "$TMP/port" "$TMP/mark2" >/dev/null &
srv=$!
wait_file "$TMP/port"
timeout 120 "$ANOLE" smc run -- python3 "$PEER" blast "$TMP/port" "$TMP/mark3" >"$TMP/cli.out" &
cli=$!
wait_file "$TMP/mark2"
kill -9 "$srv"
wait "$cli" || fail "the client did not end by itself (status $?)"
grep -Eqx 'epipe|reset' "$TMP/cli.out" || fail "client saw: $(cat "$TMP/cli.out")"
echo "sending client after kill -9 of its server: $(cat "$TMP/cli.out")"

# both really were in shared memory before the kills
cat "$ANOLE_SMC_STATS"
[ "$(grep -c '"mode":"smc"' "$ANOLE_SMC_STATS")" -ge 2 ] || fail "the surviving ends were not in shared memory"
