#!/bin/bash
# redis from an anole lazy image through containerd and the snapshotter:
# the redis rootfs bench/startup uses, converted into a local registry,
# pulled with `anole ctr-pull` (no data blob fetched at pull) and run with
# `ctr run --snapshotter anole`: a scripted redis-cli session over a unix
# socket in the container gives the expected replies, and the server's
# version line is the rootfs's own; removal leaves nothing behind.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/containerd
. "$ROOT/tests/lib/containerd"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
containerd_lazy_needs
REDIS=$("$ROOT/tests/lib/rootfs-variant" hb-redis-v1 redis-server --no-debs 2>"$TMP/rootfs.err") ||
	skip "no redis rootfs: $(tail -n 1 "$TMP/rootfs.err")"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
D=$TMP/ctd
# shellcheck source=lib/snaplazy
. "$ROOT/tests/lib/snaplazy"
mkdir -p "$D"

registry_start
"$ANOLE" convert -q -z lz4 "$REDIS" "docker://$REGISTRY/lazy/redis:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
faultproxy_start
IMG=$PROXY/lazy/redis:v1

containerd_with_snapshotter "$D"
"$ANOLE" ctr-pull --address "$D/containerd.sock" "$IMG" >"$TMP/pull.out" 2>&1 ||
	fail "ctr-pull failed: $(cat "$TMP/pull.out"; tail -n 3 "$D/snap.log")"
! grep -q "blobs/sha256:.* -> 206" "$TMP/proxy.log" || fail "a data range was fetched at pull"

session='redis-server --version
redis-server --port 0 --unixsocket /tmp/r.sock --daemonize yes --save "" >/dev/null
for i in $(seq 100); do redis-cli -s /tmp/r.sock ping 2>/dev/null && break; sleep 0.1; done
redis-cli -s /tmp/r.sock set greeting "from redis"
redis-cli -s /tmp/r.sock rpush l a b c
redis-cli -s /tmp/r.sock incrby n 41
redis-cli -s /tmp/r.sock get greeting
redis-cli -s /tmp/r.sock lrange l 0 -1
redis-cli -s /tmp/r.sock shutdown nosave'
"${C[@]}" run --rm --snapshotter anole "$IMG" r1 /bin/sh -c "$session" >"$TMP/out" 2>"$TMP/err" ||
	fail "ctr run failed: $(cat "$TMP/err"; tail -n 3 "$D/snap.log")"
{
	chroot "$REDIS" redis-server --version
	printf 'PONG\nOK\n3\n41\nfrom redis\na\nb\nc\n'
} >"$TMP/want"
cmp "$TMP/want" "$TMP/out" || fail "the session: $(diff "$TMP/want" "$TMP/out")"
grep -q "blobs/sha256:.* -> 206" "$TMP/proxy.log" || fail "no data range was fetched for the run"

containerd_remove_all "$IMG"
echo "t1004: redis from a lazy image through containerd $("${C[@]}" version | awk '/Version/ { print $2; exit }') and the snapshotter"
