#!/bin/bash
# containerd killed (SIGKILL) and started again with the same config
# under a running container of an anole lazy image: the snapshotter goes
# on serving the restarted containerd, which lists the same snapshots
# through it; the task is still there (containerd 1.6 reconnects to its
# shim) and reads a file of its image it had not read, with the image's
# bytes, fetched from the registry after the restart (the proxy's log);
# then removing the container, the image and containerd's content leaves
# no snapshot, mount, directory or lazy mount behind.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/containerd
. "$ROOT/tests/lib/containerd"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
containerd_lazy_needs
# Debian's busybox package is a static binary: it runs with no library
[ -x /bin/busybox ] || skip "no /bin/busybox"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
D=$TMP/ctd
# shellcheck source=lib/snaplazy
. "$ROOT/tests/lib/snaplazy"
mkdir -p "$D"

# a small lazy image: a static busybox, and a file the container reads
# only after containerd's restart
T=$TMP/tree
mkdir -p "$T/bin" "$T/data"
cp /bin/busybox "$T/bin/busybox"
head -c 400000 /dev/urandom >"$T/data/unread"
containerd_lazy_pull "$T" bb
"${C[@]}" run -d --snapshotter anole "$IMG" t1 /bin/busybox sleep 600 >"$TMP/run-d.out" 2>&1 ||
	fail "ctr run -d failed: $(cat "$TMP/run-d.out"; tail -n 3 "$D/snap.log")"
snaplazy_pre_stop() { "${C[@]}" task kill -s SIGKILL t1 2>/dev/null; "${C[@]}" task delete -f t1 2>/dev/null; }
"${C[@]}" snapshots --snapshotter anole ls >"$TMP/snaps.before" ||
	fail "snapshots ls failed before the kill"
grep -q . <(tail -n +2 "$TMP/snaps.before") || fail "no snapshots listed: $(cat "$TMP/snaps.before")"

cp "$TMP/proxy.log" "$TMP/proxy.before"
kill -9 "$CTD_PID"
{ wait "$CTD_PID"; } 2>/dev/null || true
containerd_start "$D"

cmp "$TMP/snaps.before" <("${C[@]}" snapshots --snapshotter anole ls 2>&1) ||
	fail "the snapshots differ after containerd's restart: $(diff "$TMP/snaps.before" <("${C[@]}" snapshots --snapshotter anole ls 2>&1))"
# containerd reconnects to the task's shim as it loads its state
for _ in $(seq 100); do
	"${C[@]}" task ls | awk '$1 == "t1" { print $3 }' >"$TMP/t1.status"
	[ -s "$TMP/t1.status" ] && break
	sleep 0.1
done
[ "$(cat "$TMP/t1.status")" = RUNNING ] || fail "t1 after containerd's restart: '$(cat "$TMP/t1.status")'"
"${C[@]}" task exec --exec-id read1 t1 /bin/busybox cat /data/unread >"$TMP/read" 2>"$TMP/read.err" ||
	fail "reading /data/unread in t1 failed: $(cat "$TMP/read.err")"
cmp "$T/data/unread" "$TMP/read" || fail "/data/unread read in t1 after the restart differs from the image's"
# its bytes came from the registry after the restart (nothing had read
# them before): through the lazy mount, not from a copy made at pull
tail -n +"$(($(wc -l <"$TMP/proxy.before") + 1))" "$TMP/proxy.log" >"$TMP/proxy.after"
grep -q "^GET /v2/lazy/bb/blobs/sha256:.* -> 206" "$TMP/proxy.after" ||
	fail "no blob range was fetched for the read after the restart: $(cat "$TMP/proxy.after")"

# removal through the restarted containerd
containerd_container_rm t1
containerd_remove_all "$IMG"
echo "t1002: a lazy image's container survived a SIGKILL and restart of containerd $("${C[@]}" version | awk '/Version/ { print $2; exit }')"
