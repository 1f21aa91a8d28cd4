#!/bin/bash
# Shared-memory sockets, a client of another host on a port a local
# server also serves: the local server's rendezvous answers the client's
# proposal at once with a decline (the address the client connected to
# is not one of its network namespace's), instead of leaving it to the
# handshake's timeout, and the client keeps that address on TCP without
# asking for a while; its connections to the local server on the same
# port stay in shared memory. Two network namespaces of the test's own
# joined by a veth pair: in A the client and a local echo server under
# the library (127.0.0.1:PORT), in B a plain echo server (10.232.0.2:PORT)
# standing for the other host. Then the same with a local server under
# the library bound to A's veth address only and a plain one on
# 127.0.0.1 with the same port: the client's connections to 127.0.0.1
# are not the library server's either. Every byte comes back.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_cmd ip unshare nsenter
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

NS=()
stop_ns() {
	local p
	for p in "${NS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap '_rc=$?; _smc_stop; stop_ns; (exit $_rc); _cleanup' EXIT
for _ in a b; do
	unshare -n sleep 600 &
	NS+=($!)
done
A=${NS[0]} B=${NS[1]}
sleep 0.2
ip link add "ra$$" type veth peer name "rb$$" || fail "no veth pair"
ip link set "ra$$" netns "$A"
ip link set "rb$$" netns "$B"
nsenter -t "$A" -n sh -c "ip link set lo up && ip addr add 10.232.0.1/24 dev ra$$ && ip link set ra$$ up"
nsenter -t "$B" -n sh -c "ip link set lo up && ip addr add 10.232.0.2/24 dev rb$$ && ip link set rb$$ up"

port=$(free_port)
SMC_PEER_HOST=10.232.0.2 SMC_PEER_PORT=$port timeout 120 nsenter -t "$B" -n \
	python3 "$PEER" echo-server "$TMP/port.b" 6 &
smc_bg $!
SMC_PEER_PORT=$port timeout 120 nsenter -t "$A" -n "$ANOLE" smc run -- \
	python3 "$PEER" echo-server "$TMP/port.a" 2 &
smc_bg $!
wait_file "$TMP/port.a"
wait_file "$TMP/port.b"

cat >"$TMP/client.py" <<'PY'
import hashlib, socket, sys
port = int(sys.argv[1])
for i, host in enumerate(sys.argv[2:]):
    data = hashlib.shake_256(b"remote%d" % i).digest(1000)
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
    s.close()
    if got != data:
        sys.exit("connection %d to %s: %d bytes back, not the 1000 sent" % (i, host, len(got)))
print("ok")
PY
R=10.232.0.2 L=127.0.0.1
out=$(timeout 120 nsenter -t "$A" -n "$ANOLE" smc run -- python3 "$TMP/client.py" "$port" \
	$R $R $R $L $R $R $R $L 2>&1) ||
	fail "client: $out"
[ "$out" = ok ] || fail "client said: $out"
for p in "${_SMC_PIDS[@]}"; do wait "$p" || fail "an echo server failed"; done
_SMC_PIDS=()
cat "$ANOLE_SMC_STATS"
count() { grep -c "$1" "$ANOLE_SMC_STATS" || true; }
[ "$(count '"reason":"timeout"')" = 0 ] || fail "a proposal for the other host waited for its timeout"
[ "$(count '"role":"client","mode":"tcp","reason":"declined"')" = 1 ] ||
	fail "the first connection to the other host was not declined at once"
[ "$(smc_stat "['fallbacks']['no-rendezvous']")" = 5 ] ||
	fail "the other host's address was not remembered: $(smc_stat "['fallbacks']")"
[ "$(count '"role":"client","mode":"smc"')" = 2 ] && [ "$(count '"role":"server","mode":"smc"')" = 2 ] ||
	fail "the local server's connections on the same port were not in shared memory"

# 2. the library's server bound to 10.232.0.1 only, a plain one on
# 127.0.0.1, one port
rm -f "$ANOLE_SMC_STATS"
port=$(free_port)
SMC_PEER_HOST=127.0.0.1 SMC_PEER_PORT=$port timeout 120 nsenter -t "$A" -n \
	python3 "$PEER" echo-server "$TMP/port.l" 2 &
smc_bg $!
SMC_PEER_HOST=10.232.0.1 SMC_PEER_PORT=$port timeout 120 nsenter -t "$A" -n "$ANOLE" smc run -- \
	python3 "$PEER" echo-server "$TMP/port.v" 1 &
smc_bg $!
wait_file "$TMP/port.l"
wait_file "$TMP/port.v"
out=$(timeout 120 nsenter -t "$A" -n "$ANOLE" smc run -- python3 "$TMP/client.py" "$port" \
	127.0.0.1 127.0.0.1 10.232.0.1 2>&1) || fail "client: $out"
[ "$out" = ok ] || fail "client said: $out"
for p in "${_SMC_PIDS[@]}"; do wait "$p" || fail "an echo server failed"; done
_SMC_PIDS=()
cat "$ANOLE_SMC_STATS"
[ "$(count '"reason":"timeout"')" = 0 ] || fail "a proposal for another server's address waited for its timeout"
[ "$(count '"role":"client","mode":"tcp","reason":"declined"')" = 1 ] &&
	[ "$(smc_stat "['fallbacks']['no-rendezvous']")" = 1 ] ||
	fail "127.0.0.1 was not declined at once and remembered: $(smc_stat "['fallbacks']")"
[ "$(count '"role":"client","mode":"smc"')" = 1 ] ||
	fail "the connection to the library's server's own address was not in shared memory"
echo "t0905: addresses that are not the local server's (another host; another local address on its port) declined at once and remembered; the server's own in shared memory"
