#!/bin/bash
# Shared-memory sockets under sockperf, the kernel SMC's own benchmark
# tool: a server per I/O multiplexer sockperf offers (epoll, poll,
# select), each under `anole smc run`, and against each a ping-pong of
# 14-byte messages, a ping-pong of 100 to 1900 bytes with sockperf's
# data integrity check, and a throughput run of 64 KiB messages, clients
# under the library too. sockperf's own verdict must be clean (no
# dropped, duplicated or out-of-order message, no integrity failure, a
# latency and a bandwidth summary), and the statistics must show every
# client connection in shared memory.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd sockperf
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

# client NAME MODE ARGS...: a sockperf client run under the library,
# its output checked
client() {
	local name=$1 out=$TMP/$1.out
	shift
	timeout 120 "$ANOLE" smc run -- sockperf "$@" >"$out" 2>&1 ||
		fail "sockperf $name failed: $(tail -n 5 "$out")"
	! grep -qiE "integrity|error" "$out" || fail "sockperf $name: $(grep -iE "integrity|error" "$out" | head -n 3)"
	case $1 in
	ping-pong)
		grep -q "# dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0" "$out" ||
			fail "sockperf $name lost or reordered messages: $(grep messages "$out")"
		grep -q "Summary: Latency is" "$out" || fail "sockperf $name: no latency summary"
		;;
	throughput)
		grep -q "Summary: BandWidth is" "$out" || fail "sockperf $name: no bandwidth summary"
		;;
	esac
	echo "$name: $(grep -o "Summary: [A-Za-z]* is [0-9.]* [a-zA-Z]*" "$out" | tail -n 1)"
}

for mux in epoll poll select; do
	port=$(free_port)
	echo "T:127.0.0.1:$port" >"$TMP/feed.$mux"
	timeout 300 "$ANOLE" smc run -- sockperf server -f "$TMP/feed.$mux" -F "$mux" -m 65536 \
		>"$TMP/server.$mux" 2>&1 &
	srv=$!
	smc_bg $srv
	for _ in $(seq 100); do
		ss -Htln "sport = :$port" | grep -q . && break
		sleep 0.1
	done
	client "$mux-pp" ping-pong --tcp -i 127.0.0.1 -p "$port" -m 14 -t 1
	client "$mux-integrity" ping-pong --tcp -i 127.0.0.1 -p "$port" -m 1000 -r 900 -t 1 --data-integrity
	client "$mux-tp" throughput --tcp -i 127.0.0.1 -p "$port" -m 65536 -t 1
	kill "$srv"
	wait "$srv" 2>/dev/null || true
	_SMC_PIDS=()
done
cat "$ANOLE_SMC_STATS"
smc_clients=$(grep -c '"role":"client","mode":"smc"' "$ANOLE_SMC_STATS" || true)
tcp_clients=$(grep -c '"role":"client","mode":"tcp"' "$ANOLE_SMC_STATS" || true)
[ "$smc_clients" = 9 ] && [ "$tcp_clients" = 0 ] ||
	fail "not all 9 sockperf clients in shared memory: $smc_clients in it, $tcp_clients on TCP"
echo "t0904: sockperf under the library with epoll, poll and select: clean verdicts, every client in shared memory"
