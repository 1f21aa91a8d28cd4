#!/bin/bash
# Shared-memory sockets under redis (epoll, non-blocking connect and
# hiredis' second connect(), writev): redis-server, redis-benchmark
# -t set,get -n 20000 (50 clients), and redis-cli writing 24 values of
# 1 byte to 4 MiB then reading each back, compared byte for byte; every
# connection the library saw used shared memory and carried the values.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd redis-server redis-benchmark redis-cli
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

port=$(free_port)
mkdir "$TMP/redis"
cli() { timeout 60 "$ANOLE" smc run -- redis-cli -h 127.0.0.1 -p "$port" "$@"; }
timeout 600 "$ANOLE" smc run -- redis-server --port "$port" --bind 127.0.0.1 --save "" \
	--appendonly no --dir "$TMP/redis" --logfile "$TMP/redis/log" --daemonize no &
smc_bg $!
# (not counted: a connect refused before the server listens is no connection)
for _ in $(seq 300); do
	[ "$(ANOLE_SMC_STATS='' cli ping 2>/dev/null)" = PONG ] && break
	sleep 0.1
done
[ "$(cli ping)" = PONG ] || fail "redis-server did not start: $(tail -5 "$TMP/redis/log")"

out=$(timeout 300 "$ANOLE" smc run -- redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n 20000 --csv) ||
	fail "redis-benchmark: $out"
echo "$out"
echo "$out" | grep -q '^"SET",' && echo "$out" | grep -q '^"GET",' || fail "redis-benchmark said: $out"

# values of many sizes, the ring (256 KiB) and redis' buffers crossed
bytes=0
for i in $(seq 0 23); do
	python3 -c "import random, sys; r = random.Random($i); sys.stdout.write(r.randbytes(min(3 << 20, 1 << $i)).hex()[:max(1, (1 << $i) // 2)])" >"$TMP/v$i"
	cli -x set "k$i" <"$TMP/v$i" >"$TMP/set.out" || fail "SET k$i"
	[ "$(cat "$TMP/set.out")" = OK ] || fail "SET k$i said $(cat "$TMP/set.out")"
	bytes=$((bytes + $(stat -c %s "$TMP/v$i")))
done
for i in $(seq 0 23); do
	cli get "k$i" | head -c "$(stat -c %s "$TMP/v$i")" >"$TMP/got$i"
	cmp "$TMP/v$i" "$TMP/got$i" || fail "GET k$i differs from what SET wrote"
done
[ "$(cli dbsize)" -ge 24 ] || fail "dbsize below 24"
# the server closes (and counts) each connection once it sees the EOF
for _ in $(seq 300); do
	cli info clients | grep -q '^connected_clients:1' && break
	sleep 0.1
done
_smc_stop
"$ANOLE" smc stat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "a connection fell back to TCP"
# a client that exits without close() writes no line: count the
# server's side, the benchmark's 100 connections and redis-cli's 49 at
# least, and the values sent back by GET
[ "$(smc_stat "['smc_connections']")" -ge 149 ] || fail "too few connections in shared memory"
[ "$(smc_stat "['smc_bytes_sent']")" -ge "$bytes" ] || fail "shared memory did not carry the values"
echo "t0912: redis-server, redis-benchmark and redis-cli ($bytes value bytes) through shared memory"
