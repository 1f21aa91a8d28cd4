#!/bin/bash
# Lazy mounts: `anole mount docker://...` of an image converted to
# Debian's docker-registry mounts before any data is here; the daemon fills
# each range on first read, verified, into the shared cache, and the kernel
# serves the rest. Checked against the source tree (treecmp, every byte and
# attribute): one reader, 16 concurrent readers, readers while the daemon's
# worker is killed with SIGKILL again and again, and the holder once (the
# right bytes or EIO, never others; the mount works afterwards; t0620 kills
# every process in every order), the registry going away (EIO
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
need_fanotify

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
	# all three at once: one left alive restarts the others
	# shellcheck disable=SC2046
	# (each may be gone already: under set -e a failed kill ends the test)
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid" 2>/dev/null)" 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/daemon.pid" 2>/dev/null)" 2>/dev/null || true
}
# (the test's status reaches _cleanup through $?)
trap '_rc=$?; daemon_kill; [ -z "${PROXY_PID:-}" ] || kill "$PROXY_PID" 2>/dev/null || true
	[ -n "${FUSE_MODE:-}" ] && chmod "$FUSE_MODE" /dev/fuse
	[ -n "${U:-}" ] && { umount -l "$U/mnt" 2>/dev/null; rm -rf "$U"; }; (exit $_rc); _cleanup' EXIT

# wait_daemon_gone: the holder exits within a few seconds of the last umount
alive() { [ -e "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
wait_daemon_gone() {
	local i
	for i in $(seq 1 50); do
		alive "$ANOLE_RUNTIME_DIR/holder.pid" || alive "$ANOLE_RUNTIME_DIR/daemon.pid" || return 0
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
# a version 2 digest table holds extents whole: no chunk index is fetched
CHUNKS=$("$ANOLE" inspect --json "$REF" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data_blobs"][0]["chunk_index"])')
[ -n "$CHUNKS" ] && [ ! -e "$ANOLE_CACHE_DIR/blobs/sha256/${CHUNKS#sha256:}" ] ||
	fail "the mount fetched the chunk index $CHUNKS"
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
# a cold cache: reads waited, and every wait took some time
assert 0 < s["read_waits"] <= s["events"] and s["read_wait_us"] > 0, s
EOF
"$ANOLE" status --metrics >"$TMP/metrics1"
grep -q '^anole_fetched_bytes_total [1-9]' "$TMP/metrics1" || fail "no metrics"
grep -Eq '^anole_read_wait_seconds_total [0-9]+\.[0-9]{6}$' "$TMP/metrics1" ||
	fail "no read wait time in the metrics: $(grep wait "$TMP/metrics1")"
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

echo "== 2b. digest tables of 4 KiB and 1 MiB ranges serve the same tree"
probe=$(cd "$TRUTH" && find . -type f -size +8k | sort | head -n 1)
for rs in 4K 1M; do
	fresh_cache
	"$ANOLE" convert -q --range-size=$rs "oci:$L:v1" "docker://$REGISTRY/lazy/rs:$rs" \
		>"$TMP/convert.out" 2>&1 || fail "convert --range-size=$rs failed: $(tail -n 3 "$TMP/convert.out")"
	mkdir -p "$TMP/rs$rs"
	"$ANOLE" mount "docker://$REGISTRY/lazy/rs:$rs" "$TMP/rs$rs" || fail "mount of the $rs image failed"
	cmp "$TRUTH/$probe" "$TMP/rs$rs/$probe" || fail "$rs ranges: $probe differs"
	"$ANOLE" status --json >"$TMP/strs.json"
	python3 - "$TMP/strs.json" <<'EOF' || fail "$rs ranges: fetched/read accounting is wrong: $(cat "$TMP/strs.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert 0 < s["bytes_read"] <= s["bytes_fetched"] < s["bytes_total"], s
EOF
	"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/rs$rs" >"$TMP/cmprs" || fail "$rs ranges: the mount differs: $(tail -n 5 "$TMP/cmprs")"
	"$ANOLE" umount "$TMP/rs$rs" || fail "umount failed"
done
expect_fail "$ANOLE" convert --range-size=3K "oci:$L:v1" "docker://$REGISTRY/lazy/bad:v1"
expect_fail "$ANOLE" convert --range-size=2M "oci:$L:v1" "docker://$REGISTRY/lazy/bad:v1"
fresh_cache

echo "== 2c. a read inside a compressed extent waits once: the whole extent comes"
# The kernel decompresses an extent whole but asks for it in pieces, one
# after another; fetched piece by piece, each would wait a round trip.
mkdir -p "$TMP/ext/src" "$TMP/ext/m"
head -c 786432 /dev/urandom | base64 -w 76 >"$TMP/ext/src/text" # compresses to ~3/4
"$ANOLE" convert -q "$TMP/ext/src" "docker://$REGISTRY/lazy/ext:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
"$ANOLE" mount --prefetch=none "docker://$REGISTRY/lazy/ext:v1" "$TMP/ext/m" || fail "mount failed"
dd if="$TMP/ext/m/text" bs=4096 count=1 status=none | cmp - <(head -c 4096 "$TMP/ext/src/text") ||
	fail "the first page differs"
"$ANOLE" status --json >"$TMP/ext/st.json"
python3 - "$TMP/ext/st.json" <<'EOF' || fail "a read inside one extent waited more than once: $(cat "$TMP/ext/st.json")"
import json, sys
s = json.load(open(sys.argv[1]))
print("one page read: %d reads asked, %d waited; %d bytes fetched in %d requests" %
      (s["events"], s["read_waits"], s["bytes_fetched"], s["fetch_requests"]))
if s["events"] < 2:
    print("(this kernel asked for the extent in one read)")
assert s["read_waits"] == 1 and s["reads_failed"] == 0, s
# the extent came with that wait: 256 KiB of text at least, 3/4 of it
# compressed
assert s["bytes_fetched"] >= 196608, s
EOF
cmp "$TMP/ext/src/text" "$TMP/ext/m/text" || fail "the file differs"
"$ANOLE" umount "$TMP/ext/m" || fail "umount failed"
fresh_cache

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

"$ANOLE" umount "$TMP/m4"

echo "== 4b. SIGKILL the holder while 16 readers read: the keeper starts a new holder and worker"
fresh_cache
mkdir -p "$TMP/m4h"
"$ANOLE" mount "$PREF" "$TMP/m4h" || fail "mount through the proxy failed"
readers "$TMP/m4h" 16 "$TMP/r4h" &
RPID=$!
sleep 1.5
kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid")" || fail "no holder to kill"
wait "$RPID"
grep -q WRONG "$TMP/r4h" && fail "a reader got wrong bytes after the holder was killed: $(grep -m 3 WRONG "$TMP/r4h")"
grep -q "the holder was gone; started holder" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "the keeper did not start a new holder"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m4h" >"$TMP/cmp4h" ||
	fail "after the holder died the mount differs: $(tail -n 3 "$TMP/cmp4h")"
echo "holder killed: no wrong bytes ($(grep -c EIO "$TMP/r4h" || true) reads failed with EIO); then $(tail -n 1 "$TMP/cmp4h")"
"$ANOLE" umount "$TMP/m4h" || fail "umount after the holder died failed"

echo "== 5. the registry goes away mid-read, then comes back"
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

echo "== 7. the FUSE fallback (--fuse): the same content tests"
fresh_cache
mkdir -p "$TMP/m7f"
"$ANOLE" mount --fuse "$REF" "$TMP/m7f" || fail "anole mount --fuse failed: $(tail -n 3 "$ANOLE_RUNTIME_DIR/daemon.log")"
awk -v m="$TMP/m7f" '$2 == m && $3 == "fuse.anole"' /proc/mounts | grep -q . || fail "no fuse.anole mount"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m7f" >"$TMP/cmp7" || fail "FUSE mount differs: $(tail -n 5 "$TMP/cmp7")"
echo "FUSE, one reader: $(tail -n 1 "$TMP/cmp7")"
umount "$TMP/m7f"
wait_daemon_gone
fresh_cache
"$ANOLE" mount --fuse "$REF" "$TMP/m7f" || fail "anole mount --fuse failed"
readers "$TMP/m7f" 16 "$TMP/r7"
[ "$(cat "$TMP/r7.rc")" = 0 ] || fail "FUSE readers saw errors or wrong bytes: $(head -n 5 "$TMP/r7")"
# a kernel mount of the same image now shares the FUSE mount's cache
mkdir -p "$TMP/m7k"
"$ANOLE" mount "$REF" "$TMP/m7k" || fail "kernel mount beside FUSE failed"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m7k" >"$TMP/cmp7k" || fail "kernel mount beside FUSE differs"
"$ANOLE" umount "$TMP/m7k"
"$ANOLE" umount "$TMP/m7f" || fail "anole umount of the FUSE mount failed"
awk -v m="$TMP/m7f" '$2 == m' /proc/mounts | grep -q . && fail "FUSE mount left behind"

echo "== 8. a user without root gets the FUSE path, with a notice"
if command -v setpriv >/dev/null && [ -c /dev/fuse ] && command -v fusermount3 >/dev/null; then
	wait_daemon_gone
	# Debian's udev makes /dev/fuse 0666; some containers do not (only
	# this test opens it as a user, so a neighbour does not mind the mode)
	FUSE_MODE=$(stat -c %a /dev/fuse)
	chmod 666 /dev/fuse
	U=$(mktemp -d /tmp/anole-user.XXXXXX)
	chown 65534:65534 "$U"
	mkdir "$U/mnt" && chown 65534:65534 "$U/mnt"
	# The user runs a copy of anole: the build tree may lie where others
	# cannot enter (a clone in /root, or in a mktemp -d directory, is 0700).
	# Libraries it loads from the build tree come along.
	mkdir "$U/bin"
	cp "$ANOLE" "$U/bin/anole"
	ldd "$ANOLE" | awk -v r="$ROOT/" 'index($3, r) == 1 { print $3 }' | xargs -r cp -t "$U/bin"
	UANOLE=$U/bin/anole
	as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$U" XDG_RUNTIME_DIR= XDG_CACHE_HOME= ANOLE_RUNTIME_DIR= ANOLE_CACHE_DIR= LD_LIBRARY_PATH="$U/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
	as_user "$UANOLE" mount "$REF" "$U/mnt" 2>"$TMP/user.err" || fail "user mount failed: $(cat "$TMP/user.err")"
	grep -q "notice: .*FUSE" "$TMP/user.err" || fail "no notice about the FUSE fallback: $(cat "$TMP/user.err")"
	# files anyone may read: o+r, every directory above them o+x
	python3 - "$TRUTH" >"$TMP/ufiles" <<'PY'
import os, stat, sys
top = sys.argv[1]
out = []
for d, dirs, files in os.walk(top):
    dirs[:] = [x for x in dirs if os.lstat(os.path.join(d, x)).st_mode & stat.S_IXOTH]
    for f in files:
        st = os.lstat(os.path.join(d, f))
        if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH and st.st_size:
            out.append("./" + os.path.relpath(os.path.join(d, f), top))
print("\n".join(sorted(out)[:300]))
PY
	[ -s "$TMP/ufiles" ] || fail "the user can read none of the source's files"
	(cd "$TRUTH" && xargs -d '\n' sha256sum <"$TMP/ufiles") >"$TMP/usum.want"
	as_user sh -c 'cd "$1" && xargs -d "\n" sha256sum' _ "$U/mnt" <"$TMP/ufiles" >"$TMP/usum.got" ||
		fail "the user could not read the FUSE mount"
	cmp "$TMP/usum.want" "$TMP/usum.got" || fail "the user's FUSE mount differs from the source"
	echo "user (uid 65534): $(wc -l <"$TMP/ufiles") files read through FUSE match the source"
	as_user "$UANOLE" umount "$U/mnt" || fail "user umount failed"
	# this user's daemon runs $UANOLE; other tests' daemons may share the uid
	user_daemon() {
		local p
		for p in $(pgrep -u 65534 -f "anole daemon"); do
			[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$UANOLE" ] && return 0
		done
		return 1
	}
	for _ in $(seq 1 50); do user_daemon || break; sleep 0.2; done
	user_daemon && fail "the user's daemon did not end"
	chmod "$FUSE_MODE" /dev/fuse
	rm -rf "$U"
else
	echo "skipped: setpriv, /dev/fuse or fusermount3 missing"
fi

echo "== 8b. --prefetch=all fills the cache in the background, unread"
fresh_cache
mkdir -p "$TMP/m8p"
"$ANOLE" mount --prefetch=all --prefetch-rate=0 "$REF" "$TMP/m8p" || fail "mount --prefetch=all failed"
done=
for _ in $(seq 1 150); do
	"$ANOLE" status --json >"$TMP/st8.json"
	if python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if all(b["complete"] for b in s["blobs"]) else 1)' "$TMP/st8.json"; then
		done=1
		break
	fi
	sleep 0.2
done
[ -n "$done" ] || fail "prefetch did not complete the cache in 30 s: $(cat "$TMP/st8.json")"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["events"] == 0 and s["bytes_fetched"] == s["bytes_total"], s' "$TMP/st8.json" ||
	fail "prefetch fetched other than the blobs, or reads happened"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m8p" >"$TMP/cmp8p" || fail "prefetched mount differs"
echo "prefetch: the whole blob cached with no read; $(tail -n 1 "$TMP/cmp8p")"
"$ANOLE" umount "$TMP/m8p"

echo "== 9. anole cache ls and gc: what mounts use stays"
fresh_cache
mkdir -p "$TMP/m9c"
"$ANOLE" mount "$REF" "$TMP/m9c" || fail "mount failed"
head -c 100000 "$TMP/m9c/usr/bin/bash" >/dev/null || true
"$ANOLE" cache ls >"$TMP/ls1" || fail "cache ls failed"
grep -Eq "partial +in use" "$TMP/ls1" || fail "cache ls does not show the partial blob in use: $(cat "$TMP/ls1")"
"$ANOLE" cache gc --max-size 0 >"$TMP/gc1" 2>&1 || fail "cache gc failed: $(cat "$TMP/gc1")"
cat "$TMP/gc1"
grep -q "kept [1-9][0-9]* in use" "$TMP/gc1" || fail "gc did not keep the files in use"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m9c" >"$TMP/cmp9" || fail "after gc the mount differs: $(tail -n 3 "$TMP/cmp9")"
"$ANOLE" umount "$TMP/m9c"
wait_daemon_gone
"$ANOLE" cache gc --max-size 0 >"$TMP/gc2" 2>&1 || fail "cache gc failed"
"$ANOLE" cache ls --json >"$TMP/ls2.json"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); assert a == [], a' "$TMP/ls2.json" ||
	fail "gc with nothing mounted left blobs: $(cat "$TMP/ls2.json")"
echo "cache gc: $(cat "$TMP/gc1"); then with nothing mounted: $(cat "$TMP/gc2")"
expect_fail "$ANOLE" cache gc --max-size lots

echo "== 10. bad input"
fresh_cache
mkdir -p "$TMP/m9"
expect_fail "$ANOLE" mount "docker://$REGISTRY/lazy/nosuch:v1" "$TMP/m9"
grep -q "nosuch" "$TMP/last.err" || fail "the error does not name the image: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" mount "$REF" "$TMP/convert.out"
expect_fail "$ANOLE" mount --prefetch=some "$REF" "$TMP/m9"
awk -v m="$TMP/m9" '$2 == m' /proc/mounts | grep -q . && fail "a failed mount left a mount"
wait_daemon_gone

echo "== 11. umount -l with a file still open: its reads still wait for verified data"
fresh_cache
mkdir -p "$TMP/m11"
"$ANOLE" mount "$REF" "$TMP/m11" || fail "mount failed"
big=$(cd "$TRUTH" && find . -type f -size +2M | head -n 1)
exec 3<"$TMP/m11/$big"
umount -l "$TMP/m11"
sleep 3 # the daemon notices the mount is gone (every 2 s)
grep -q "no longer mounted" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "the daemon missed umount -l"
cmp - "$TRUTH/$big" <&3 || fail "reading a file of a lazily unmounted image gave other bytes"
exec 3<&-
echo "after umount -l, an open file still read right: $big"
daemon_kill
kill "$PROXY_PID" 2>/dev/null || true
echo ok
