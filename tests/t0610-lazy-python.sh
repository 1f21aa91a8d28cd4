#!/bin/bash
# The lazy mount's acceptance run on a real rootfs: a Debian bookworm minbase
# with python3 (debootstrapped once, cached), converted with `anole
# convert` into Debian's docker-registry, lazily mounted; `chroot MNT
# python3 -c 'import json'` works, /proc/mounts shows EROFS, and the cache
# then holds at most 30% of the rootfs' bytes. Then the whole tree read
# through the lazy mount equals the source (treecmp).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry debootstrap python3 chroot
need_fanotify
ROOTFS=$("$ROOT/tests/lib/rootfs-variant" minbase-python-bookworm-v1 python3 --no-debs 2>"$TMP/rootfs.err") ||
	skip "no python3 rootfs: $(tail -n 1 "$TMP/rootfs.err")"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
daemon_kill() {
	local m
	for m in $(_mounts_under "$TMP"); do "$ANOLE" umount "$m" 2>/dev/null || true; done
	# all three at once: one left alive restarts the others
	# shellcheck disable=SC2046
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid" 2>/dev/null)" 2>/dev/null || true
	true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT

registry_start
REF=docker://$REGISTRY/lazy/python:v1
"$ANOLE" convert -q "$ROOTFS" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
mkdir -p "$TMP/mnt"
start=$(date +%s%N)
"$ANOLE" mount "$REF" "$TMP/mnt" || fail "anole mount failed"
echo "anole mount took $((($(date +%s%N) - start) / 1000000)) ms (daemon start, metadata fetch, mount)"
awk -v m="$TMP/mnt" '$2 == m && $3 == "erofs"' /proc/mounts | grep -q . || fail "no erofs mount in /proc/mounts"
out=$(chroot "$TMP/mnt" /usr/bin/python3 -c 'import json; print(json.dumps({"ok": 1}))' 2>&1) ||
	fail "chroot python3 failed: $out"
[ "$out" = '{"ok": 1}' ] || fail "python3 printed: $out"
rootfs_bytes=$(du -sb "$ROOTFS" | cut -f1)
cache_bytes=$(du -sB1 "$ANOLE_CACHE_DIR" | cut -f1)
"$ANOLE" status
pct=$((cache_bytes * 100 / rootfs_bytes))
echo "python3 ran; cache holds $cache_bytes bytes on disk = ${pct}% of the rootfs' $rootfs_bytes bytes"
[ "$pct" -le 30 ] || fail "the cache holds ${pct}% of the rootfs (goal: at most 30%)"
"$TREECMP" --ignore-root-mtime "$ROOTFS" "$TMP/mnt" >"$TMP/cmp" || fail "lazy mount differs: $(tail -n 5 "$TMP/cmp")"
tail -n 1 "$TMP/cmp"
"$ANOLE" umount "$TMP/mnt" || fail "umount failed"
echo ok
