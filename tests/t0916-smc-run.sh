#!/bin/bash
# anole run --smc: two containers of the python3 image, each in a network
# namespace of its own (the test's: --net=host inside it), joined by a
# veth pair. An echo server in one and a client in the other, both from
# tests/lib/smc-peer: with one rendezvous directory bound into both,
# every byte comes back and both ends count the connection in shared
# memory; with a rendezvous of its own for each, the same exchange is
# plain TCP, byte-exact, with the client's fallback counted.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
# shellcheck source=lib/runimage
. "$ROOT/tests/lib/runimage"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"
need_root
need_erofs
need_cmd docker-registry python3 runc ip nsenter unshare
need_fanotify
[ -z "${LD_PRELOAD:-}" ] ||
	skip "sanitizer build: the containers' programs cannot preload an instrumented library"
ROOTFS=$("$ROOT/tests/lib/rootfs-variant" minbase-python-bookworm-v1 python3 --no-debs 2>"$TMP/rootfs.err") ||
	skip "no python3 rootfs: $(tail -n 1 "$TMP/rootfs.err")"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
NS=()
stop_all() {
	local p
	for p in "${NS[@]}"; do kill "$p" 2>/dev/null; done
	umount "$TMP/keep" 2>/dev/null
	# shellcheck disable=SC2046
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
	return 0
}
trap '_rc=$?; stop_all; (exit $_rc); _cleanup' EXIT

LAYOUT=$(run_image_layout "$ROOTFS") || fail "cannot make the image's layout"
registry_start
REF=docker://$REGISTRY/run/python:v1
"$ANOLE" convert -q "oci:$LAYOUT:v1" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
# the daemon starts here, in the host's network (the registry's), and the
# mount keeps it up for the runs inside the namespaces
mkdir "$TMP/keep"
"$ANOLE" mount "$REF" "$TMP/keep" || fail "anole mount failed"

# two namespaces, held by a sleeping process each, and a veth pair
for _ in a b; do
	unshare -n sleep 600 &
	NS+=($!)
done
A=${NS[0]} B=${NS[1]}
ip link add "sa$$" type veth peer name "sb$$" || fail "no veth pair"
ip link set "sa$$" netns "$A"
ip link set "sb$$" netns "$B"
nsenter -t "$A" -n sh -c "ip link set lo up && ip addr add 10.231.0.1/24 dev sa$$ && ip link set sa$$ up"
nsenter -t "$B" -n sh -c "ip link set lo up && ip addr add 10.231.0.2/24 dev sb$$ && ip link set sb$$ up"

# run_in NSPID RENDEZVOUS CMD...: an --smc container in that namespace
run_in() {
	local pid=$1 rv=$2
	shift 2
	ANOLE_SMC_DIR=$rv timeout 120 nsenter -t "$pid" -n "$ANOLE" run -q --net=host --smc \
		-v "$ROOT/tests/lib:/t:ro" -v "$TMP/out:/out" -e SMC_PEER_HOST=10.231.0.2 \
		-e ANOLE_SMC_STATS=/out/stats "$REF" -- "$@"
}
# exchange RV-SERVER RV-CLIENT SIZE
exchange() {
	rm -f "$TMP/out/port" "$TMP/out/stats"
	run_in "$B" "$1" python3 /t/smc-peer echo-server /out/port 1 >"$TMP/server.out" 2>&1 &
	local srv=$!
	for _ in $(seq 600); do [ -e "$TMP/out/port" ] && break; sleep 0.1; done
	[ -e "$TMP/out/port" ] || fail "the server never listened: $(cat "$TMP/server.out")"
	out=$(run_in "$A" "$2" python3 /t/smc-peer client /out/port "$3" veth 2>&1) ||
		fail "client: $out"
	[ "$out" = "ok $3" ] || fail "the client said: $out"
	wait "$srv" || fail "the echo server failed: $(cat "$TMP/server.out")"
	ANOLE_SMC_STATS=$TMP/out/stats
}
mkdir -m 755 "$TMP/out"
mkdir -m 700 "$TMP/rv2"

echo "== one rendezvous: shared memory"
exchange "$ANOLE_SMC_DIR" "$ANOLE_SMC_DIR" 3000017
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 2 ] || fail "the two ends did not use shared memory"
[ "$(smc_stat "['smc_bytes_sent']")" = $((2 * 3000017)) ] || fail "shared memory did not carry every byte"

echo "== a rendezvous each: plain TCP"
exchange "$TMP/rv2" "$ANOLE_SMC_DIR" 1000003
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "separate rendezvous claim shared memory"
[ "$(smc_stat "['tcp_connections']")" = 2 ] || fail "the fallbacks were not counted"
[ "$(smc_stat "['fallbacks']['no-rendezvous']")" = 1 ] || fail "no no-rendezvous fallback counted"
echo "t0916: two --smc containers over a veth pair: shared memory with one rendezvous, TCP with two"
