#!/bin/bash
# Lazy mounts (issue 6): `anole mount docker://...` of an image converted to
# Debian's docker-registry mounts before any data is here; the daemon fills
# each range on first read, verified, into the shared cache, and the kernel
# serves the rest. Checked against the source tree (treecmp, every byte and
# attribute): one reader, 16 concurrent readers, readers while the daemon's
# worker is killed with SIGKILL again and again (the right bytes or EIO,
# never others; the mount works afterwards), the registry going away (EIO
# within a bounded time, then success once it is back), a blob corrupted in
# the registry (EIO, never its bytes), two mounts sharing a blob, plain
# umount(8), and bad input (one line, non-zero, nothing mounted).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci python3 curl
"$ROOT/tests/lib/fanotify-probe" || skip "this kernel has no fanotify pre-content events (FAN_PRE_ACCESS)"

SMALL=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
FULL=$("$ROOT/tests/lib/mkoci" 2>"$TMP/mkoci.err") || FULL=
L=${FULL:-$SMALL}
[ -n "$FULL" ] || echo "full image not available: using the small one"
TRUTH=$(dirname "$L")/truth/rootfs

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache

# The daemon ends once nothing is mounted; make sure of it on any exit.
daemon_kill() {
	local m
	for m in $(_mounts_under "$TMP"); do "$ANOLE" umount "$m" 2>/dev/null || true; done
	[ -f "$ANOLE_RUNTIME_DIR/holder.pid" ] && kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid")" 2>/dev/null
	[ -f "$ANOLE_RUNTIME_DIR/daemon.pid" ] && kill -9 "$(cat "$ANOLE_RUNTIME_DIR/daemon.pid")" 2>/dev/null
	true
}
trap 'daemon_kill; _cleanup' EXIT

# wait_daemon_gone: the holder exits within a few seconds of the last umount
wait_daemon_gone() {
	local i
	for i in $(seq 1 50); do
		[ -e "$ANOLE_RUNTIME_DIR/holder.pid" ] || return 0
		sleep 0.2
	done
	fail "the daemon still runs with nothing mounted: $(cat "$ANOLE_RUNTIME_DIR/daemon.log")"
}

fresh_cache() {
	wait_daemon_gone
	rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR"
}

cache_bytes() { du -sb --apparent-size "$ANOLE_CACHE_DIR/partial" "$ANOLE_CACHE_DIR/blobs" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
disk_bytes() { du -sB1 "$ANOLE_CACHE_DIR" | cut -f1; }

registry_start
"$ANOLE" convert -q "oci:$L:v1" "docker://$REGISTRY/lazy/full:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
REF=docker://$REGISTRY/lazy/full:v1

echo "== 1. mount, read everything once, compare with the source"
mkdir -p "$TMP/m1"
"$ANOLE" mount "$REF" "$TMP/m1" || fail "anole mount $REF failed: $(cat "$ANOLE_RUNTIME_DIR/daemon.log" 2>/dev/null)"
awk -v m="$TMP/m1" '$2 == m && $3 == "erofs"' /proc/mounts | grep -q . ||
	fail "no erofs mount at $TMP/m1 in /proc/mounts"
before=$(disk_bytes)
echo "cache on disk right after mounting: $before bytes (metadata only)"
"$ANOLE" status --json >"$TMP/st0.json"
python3 - "$TMP/st0.json" <<'EOF' || fail "status after mount is wrong: $(cat "$TMP/st0.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["mounts"]) == 1 and s["mounts"][0]["blobs"], s
assert s["bytes_fetched"] == 0 and s["bytes_cached"] == 0, s
EOF
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m1" >"$TMP/cmp1" || fail "lazy mount differs: $(tail -n 5 "$TMP/cmp1")"
tail -n 1 "$TMP/cmp1"
"$ANOLE" status >"$TMP/st1.txt" && cat "$TMP/st1.txt"
"$ANOLE" status --json >"$TMP/st1.json"
python3 - "$TMP/st1.json" <<'EOF' || fail "status after reading everything is wrong"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["bytes_fetched"] >= s["bytes_total"] > 0, s
assert all(b["complete"] for b in s["blobs"]), s
assert s["reads_failed"] == 0 and s["events_pending"] == 0, s
EOF
"$ANOLE" status --metrics | grep -q '^anole_fetched_bytes_total [1-9]' || fail "no metrics"
grep -q '^anole_mounts 1' "$ANOLE_RUNTIME_DIR/metrics.prom" 2>/dev/null || sleep 3
grep -q '^anole_mounts 1' "$ANOLE_RUNTIME_DIR/metrics.prom" || fail "metrics.prom not written"
ls "$ANOLE_CACHE_DIR/partial" | grep -q . && fail "complete blobs left in partial/"

echo "== 2. a second mount of the same image shares the cached blobs"
mkdir -p "$TMP/m2"
"$ANOLE" mount "$REF" "$TMP/m2" || fail "second mount failed"
"$ANOLE" status --json >"$TMP/st2.json"
python3 - "$TMP/st2.json" <<'EOF' || fail "two mounts do not share their blobs"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["mounts"]) == 2, s
assert len(s["blobs"]) == len(s["mounts"][0]["blobs"]), s
EOF
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m2" >"$TMP/cmp2" || fail "second mount differs"
expect_fail "$ANOLE" mount "$REF" "$TMP/m2"
"$ANOLE" umount "$TMP/m1" || fail "anole umount failed"
umount "$TMP/m2" # plain umount(8): the daemon notices and ends
wait_daemon_gone
grep -q "no longer mounted" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "daemon missed umount(8)"

echo "== 3. 16 concurrent readers on a cold cache"
fresh_cache
mkdir -p "$TMP/m3"
"$ANOLE" mount "$REF" "$TMP/m3" || fail "mount failed"
# readers MOUNT N OUT: tests/lib/readers, its exit status in OUT.rc
readers() {
	local rc=0
	"$ROOT/tests/lib/readers" "$TRUTH" "$1" "$2" >"$3" 2>&1 || rc=$?
	echo "$rc" >"$3.rc"
	tail -n 1 "$3"
}
readers "$TMP/m3" 16 "$TMP/r3"
[ "$(cat "$TMP/r3.rc")" = 0 ] || fail "concurrent readers saw errors or wrong bytes: $(head -n 5 "$TMP/r3")"
"$ANOLE" status --json >"$TMP/st3.json"
python3 - "$TMP/st3.json" <<'EOF' || fail "concurrent readers fetched ranges more than once"
import json, sys
s = json.load(open(sys.argv[1]))
total = s["bytes_total"]
print("16 readers: fetched %d bytes for %d bytes of blobs in %d requests" % (s["bytes_fetched"], total, s["fetch_requests"]))
assert s["bytes_fetched"] == total, s   # one fetch per range however many wait
EOF
"$ANOLE" umount "$TMP/m3"

echo "== 4. SIGKILL the worker again and again while 16 readers read"
fresh_cache
PROXY_LOG=$TMP/proxy.log
python3 "$ROOT/tests/lib/faultproxy" "$REGISTRY" "$PROXY_LOG" delay=150 "down=$TMP/down" \
	>"$TMP/proxy.port" 2>"$TMP/proxy.err" &
PROXY_PID=$!
for _ in $(seq 1 50); do [ -s "$TMP/proxy.port" ] && break; sleep 0.1; done
PROXY=127.0.0.1:$(cat "$TMP/proxy.port")
PREF=docker://$PROXY/lazy/full:v1
mkdir -p "$TMP/m4"
"$ANOLE" mount "$PREF" "$TMP/m4" || fail "mount through the proxy failed"
readers "$TMP/m4" 16 "$TMP/r4" &
RPID=$!
kills=0
while kill -0 "$RPID" 2>/dev/null && [ $kills -lt 5 ]; do
	sleep 1.5
	pid=$(cat "$ANOLE_RUNTIME_DIR/daemon.pid" 2>/dev/null) || continue
	kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
done
wait "$RPID"
echo "killed the worker $kills times; restarts logged: $(grep -c 'starting another' "$ANOLE_RUNTIME_DIR/daemon.log")"
[ "$kills" -ge 2 ] || fail "the readers finished before the worker could be killed twice"
grep WRONG "$TMP/r4" | head -n 3
grep -q WRONG "$TMP/r4" && fail "a reader got wrong bytes after a worker was killed"
[ "$(cat "$TMP/r4.rc")" != 1 ] || fail "readers failed: $(tail -n 3 "$TMP/r4")"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m4" >"$TMP/cmp4" ||
	fail "after the kills the mount differs: $(tail -n 3 "$TMP/cmp4")"
echo "after the kills the whole tree reads right: $(tail -n 1 "$TMP/cmp4")"

echo "== 5. the registry goes away mid-read, then comes back"
"$ANOLE" umount "$TMP/m4"
fresh_cache
mkdir -p "$TMP/m5"
"$ANOLE" mount "$PREF" "$TMP/m5" || fail "mount failed"
big=$(cd "$TRUTH" && find . -type f -size +2M | head -n 1)
[ -n "$big" ] || fail "no file over 2 MiB in the source"
touch "$TMP/down"
start=$(date +%s)
if timeout 120 cat "$TMP/m5/$big" >/dev/null 2>"$TMP/eio"; then
	fail "a read with the registry down succeeded (zeros?)"
fi
elapsed=$(($(date +%s) - start))
grep -q "Input/output error" "$TMP/eio" || fail "expected EIO with the registry down, got: $(cat "$TMP/eio")"
echo "registry down: the reader got EIO after ${elapsed}s"
rm -f "$TMP/down"
cmp "$TRUTH/$big" "$TMP/m5/$big" || fail "after the registry came back $big still fails"
echo "registry back: $big reads right"
"$ANOLE" umount "$TMP/m5"

echo "== 6. a corrupted blob in the registry: EIO, never its bytes"
fresh_cache
hex=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["blobs"][0]["digest"][7:])' "$TMP/st3.json")
data=$REGISTRY_DIR/data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
cp "$data" "$TMP/blob.orig"
size=$(stat -c %s "$data")
python3 - "$data" $((size / 2)) <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x40]))
EOF
mkdir -p "$TMP/m6"
"$ANOLE" mount "$REF" "$TMP/m6" || fail "mount failed"
readers "$TMP/m6" 1 "$TMP/r6"
grep WRONG "$TMP/r6" && fail "a corrupted range reached a reader"
grep -q EIO "$TMP/r6" || fail "no read failed although a range was corrupted"
grep -q "do not match its digest table" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "the daemon did not log the bad range"
echo "corrupted range: $(grep -c EIO "$TMP/r6") files failed with EIO, none read wrong"
cp "$TMP/blob.orig" "$data"
"$ANOLE" umount "$TMP/m6"

echo "== 7. bad input"
fresh_cache
mkdir -p "$TMP/m7"
expect_fail "$ANOLE" mount "docker://$REGISTRY/lazy/nosuch:v1" "$TMP/m7"
expect_fail "$ANOLE" mount "$REF" "$TMP/convert.out"
expect_fail "$ANOLE" mount --prefetch=some "$REF" "$TMP/m7"
awk -v m="$TMP/m7" '$2 == m' /proc/mounts | grep -q . && fail "a failed mount left a mount"
wait_daemon_gone
kill "$PROXY_PID" 2>/dev/null || true
echo ok
