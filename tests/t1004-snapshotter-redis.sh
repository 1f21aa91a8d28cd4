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
# shellcheck source=lib/redissession
. "$ROOT/tests/lib/redissession"
containerd_lazy_needs
REDIS=$("$ROOT/tests/lib/rootfs-variant" hb-redis-v1 redis-server --no-debs 2>"$TMP/rootfs.err") ||
	skip "no redis rootfs: $(tail -n 1 "$TMP/rootfs.err")"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
D=$TMP/ctd
# shellcheck source=lib/snaplazy
. "$ROOT/tests/lib/snaplazy"
mkdir -p "$D"

containerd_lazy_pull "$REDIS" redis -z lz4
! grep -q "blobs/sha256:.* -> 206" "$TMP/proxy.log" || fail "a data range was fetched at pull"

"${C[@]}" run --rm --snapshotter anole "$IMG" r1 /bin/sh -c "$REDIS_SESSION" >"$TMP/out" 2>"$TMP/err" ||
	fail "ctr run failed: $(cat "$TMP/err"; tail -n 3 "$D/snap.log")"
redis_session_want "$REDIS" >"$TMP/want"
cmp "$TMP/want" "$TMP/out" || fail "the session: $(diff "$TMP/want" "$TMP/out")"
grep -q "blobs/sha256:.* -> 206" "$TMP/proxy.log" || fail "no data range was fetched for the run"

containerd_remove_all "$IMG"
echo "t1004: redis from a lazy image through containerd $("${C[@]}" version | awk '/Version/ { print $2; exit }') and the snapshotter"
