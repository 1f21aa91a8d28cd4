#!/bin/bash
# What the lazy mount daemon trusts. Runtime and cache directories another
# user made (or can write in) are refused with one line, and nothing is
# written through their symlinks; a user's own but readable one is made
# private. What the cache holds is checked before it is served: a
# complete blob, the metadata image and present ranges of a partial blob
# with other bytes are fetched again, never read. `anole cache verify`
# finds and removes the same. A cache on tmpfs (no pre-content marks)
# mounts through FUSE with a notice. A worker that cannot listen on its
# socket makes the mount fail with one line in bounded time and leaves no
# daemon. `anole status` for a user who cannot reach the daemon fails.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry python3 curl setpriv
need_fanotify

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
daemon_kill() {
	local m
	# all three at once (one left alive restarts the others), then the mounts
	# shellcheck disable=SC2046
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
	for m in $(_mounts_under "$TMP"); do umount -l "$m" 2>/dev/null; done
	true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT
pids() { cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null; }
wait_daemon_gone() {
	local i p busy
	for i in $(seq 1 50); do
		busy=
		for p in $(pids); do kill -0 "$p" 2>/dev/null && busy=1; done
		# a process that let go of its pid file may still be ending with
		# blob files open: the cache is the next step's only when no
		# process holds a file of it
		[ -z "$busy" ] && [ -z "$(holders)" ] && return 0
		sleep 0.2
	done
	fail "the daemon still runs: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log") $(holders)"
}
holders() { find /proc/[0-9]*/fd -lname "$ANOLE_CACHE_DIR/*" 2>/dev/null | head -n 3; }
fresh() {
	wait_daemon_gone
	rm -rf "$ANOLE_RUNTIME_DIR" "$ANOLE_CACHE_DIR"
}
one_line() { [ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "$1: not one line: $(cat "$TMP/last.err")"; }
flip() { # flip FILE OFFSET: one byte of FILE changed in place
	python3 - "$1" "$2" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x55]))
EOF
}

mkdir -p "$TMP/src/a" "$TMP/src/b"
python3 - "$TMP/src" <<'EOF'
import os, random, sys
r = random.Random(625)
for i in range(24):
    with open(os.path.join(sys.argv[1], "ab"[i % 2], "f%02d" % i), "wb") as f:
        f.write(r.randbytes(r.randrange(8, 256) * 1024 + r.randrange(4096)))
EOF
registry_start
REF=docker://$REGISTRY/trust/plain:v1
"$ANOLE" convert -q -z none "$TMP/src" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
"$ANOLE" inspect --json "$REF" >"$TMP/inspect.json" || fail "inspect failed"
BLOB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_blobs"][0]["digest"][7:])' "$TMP/inspect.json")
[ -n "$BLOB" ] || fail "no data blob in $(cat "$TMP/inspect.json")"

echo "== 1. directories another user made or may write in are refused"
# uid 65533 plays the attacker, uid 65534 the victim; both can reach $U
chmod 711 "$TMP"
U=$TMP/u
mkdir -m 711 "$U"
cp "$ANOLE" "$U/anole" && chmod 755 "$U/anole"
as() { local uid=$1; shift; setpriv --reuid="$uid" --regid="$uid" --clear-groups env HOME= XDG_RUNTIME_DIR= XDG_CACHE_HOME= "$@"; }
for f in victim-pid victim-log; do echo "precious $f" >"$U/$f"; chown 65534:65534 "$U/$f"; done
mkdir -m 777 "$U/rt" && chown 65533:65533 "$U/rt"
as 65533 ln -s "$U/victim-pid" "$U/rt/holder.pid"
as 65533 ln -s "$U/victim-log" "$U/rt/daemon.log"
mkdir -m 700 "$U/cache" "$U/mnt" && chown 65534:65534 "$U/cache" "$U/mnt"
expect_fail as 65534 ANOLE_RUNTIME_DIR="$U/rt" ANOLE_CACHE_DIR="$U/cache" "$U/anole" mount "$REF" "$U/mnt"
one_line "a runtime directory of another user"
grep -q "$U/rt: Permission denied: owned by uid 65533" "$TMP/last.err" ||
	fail "the error does not say whose directory it is: $(cat "$TMP/last.err")"
echo "refused: $(cat "$TMP/last.err")"
for f in victim-pid victim-log; do
	[ "$(cat "$U/$f")" = "precious $f" ] || fail "the daemon wrote through a symlink into $f"
done
expect_fail as 65534 ANOLE_RUNTIME_DIR="$U/rt" "$U/anole" status
grep -q "Permission denied" "$TMP/last.err" || fail "status does not say permission denied: $(cat "$TMP/last.err")"
# a cache another user made, with a "complete" blob planted in it
mkdir -p "$U/cache2/blobs/sha256" && head -c "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_blobs"][0]["bytes"])' "$TMP/inspect.json")" /dev/zero >"$U/cache2/blobs/sha256/$BLOB"
chown -R 65533:65533 "$U/cache2" && chmod 755 "$U/cache2"
mkdir -m 700 "$U/rt2" && chown 65534:65534 "$U/rt2"
expect_fail as 65534 ANOLE_RUNTIME_DIR="$U/rt2" ANOLE_CACHE_DIR="$U/cache2" "$U/anole" mount "$REF" "$U/mnt"
one_line "a cache of another user"
grep -q "$U/cache2: Permission denied: owned by uid 65533" "$TMP/last.err" ||
	fail "the error does not name the cache: $(cat "$TMP/last.err")"
awk -v m="$U/mnt" '$2 == m' /proc/mounts | grep -q . && fail "a refused cache got mounted"
# the victim's own, but writable by others: anything may be in it
chown 65534:65534 "$U/cache2" && chmod 777 "$U/cache2"
expect_fail as 65534 ANOLE_CACHE_DIR="$U/cache2" "$U/anole" cache ls >/dev/null
grep -q "mode 0777 lets other users write" "$TMP/last.err" || fail "a cache others may write was used: $(cat "$TMP/last.err")"
# the victim's own and only readable by others: made private, then used
chmod 755 "$U/cache2" && rm -rf "$U/cache2/blobs"
as 65534 ANOLE_CACHE_DIR="$U/cache2" "$U/anole" cache ls >/dev/null || fail "cache ls of an own cache failed"
[ "$(stat -c %a "$U/cache2")" = 700 ] || fail "an own cache was not made private: $(stat -c %a "$U/cache2")"
echo "another user's runtime or cache directory, or one others may write in: refused; an own readable one made private"

echo "== 2. what the cache holds is checked before it is served"
fresh
mkdir -p "$TMP/m"
"$ANOLE" mount "$REF" "$TMP/m" || fail "mount failed"
"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" || fail "the mount differs"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
wait_daemon_gone
[ -f "$ANOLE_CACHE_DIR/blobs/sha256/$BLOB" ] || fail "the data blob did not complete"
# a complete data blob and the metadata image with other bytes (the
# image as unpacked: EROFS's magic at byte 1024)
META=$(cd "$ANOLE_CACHE_DIR/blobs/sha256" && for f in *; do
	[ "$(od -An -tx1 -j 1024 -N 4 "$f" 2>/dev/null | tr -d ' ')" = e2e1f5e0 ] && echo "$f"; done | head -n 1)
[ -n "$META" ] || fail "no metadata image in the cache"
flip "$ANOLE_CACHE_DIR/blobs/sha256/$BLOB" 70000
flip "$ANOLE_CACHE_DIR/blobs/sha256/$META" 1500
"$ANOLE" mount "$REF" "$TMP/m" || fail "mount over a changed cache failed: $(tail -n 3 "$ANOLE_RUNTIME_DIR/daemon.log")"
grep -q "does not match its digest: removed, fetched again" "$ANOLE_RUNTIME_DIR/daemon.log" ||
	fail "the daemon trusted a changed complete blob: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" ||
	fail "a changed cache was served: $(tail -n 3 "$TMP/cmp")"
[ "$(sha256sum <"$ANOLE_CACHE_DIR/blobs/sha256/$META" | cut -d' ' -f1)" = "$META" ] ||
	fail "the changed metadata image was kept"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
wait_daemon_gone
# present ranges of a partial blob with other bytes
rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR"
"$ANOLE" mount --prefetch=none "$REF" "$TMP/m" || fail "mount failed"
cat "$TMP/m/a/f00" "$TMP/m/b/f01" >/dev/null
"$ANOLE" umount "$TMP/m" || fail "umount failed"
wait_daemon_gone
[ -f "$ANOLE_CACHE_DIR/partial/$BLOB" ] || fail "no partial blob left"
flip "$ANOLE_CACHE_DIR/partial/$BLOB" 100
"$ANOLE" mount --prefetch=none "$REF" "$TMP/m" || fail "mount over a changed partial blob failed"
grep -q "cached ranges do not match its digest table" "$ANOLE_RUNTIME_DIR/daemon.log" ||
	fail "the daemon trusted a changed range: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" ||
	fail "a changed range was served: $(tail -n 3 "$TMP/cmp")"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
echo "a changed complete blob, metadata image and cached range: fetched again; the tree reads right"

echo "== 3. anole cache verify"
wait_daemon_gone
rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR"
"$ANOLE" cache verify >"$TMP/v0" || fail "verify of no cache failed: $(cat "$TMP/v0")"
"$ANOLE" mount --prefetch=none "$REF" "$TMP/m" || fail "mount failed"
cat "$TMP/m/a/f00" "$TMP/m/a/f02" >/dev/null
"$ANOLE" cache verify >"$TMP/v1" || fail "verify with a mount failed: $(cat "$TMP/v1")"
grep -q "^skipped .*$BLOB  partial: held by the daemon" "$TMP/v1" || fail "a partial blob in use was not skipped: $(cat "$TMP/v1")"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
wait_daemon_gone
"$ANOLE" cache verify >"$TMP/v2" || fail "verify of a sound cache failed: $(cat "$TMP/v2")"
flip "$ANOLE_CACHE_DIR/partial/$BLOB" 200
small=$ANOLE_CACHE_DIR/blobs/sha256/$META
flip "$small" 0
rc=0
"$ANOLE" cache verify >"$TMP/v3" || rc=$?
cat "$TMP/v3"
[ "$rc" = 1 ] || fail "verify of a bad cache exited $rc"
grep -q "^bad .*${small##*/}  complete: does not match its digest; removed" "$TMP/v3" || fail "verify missed the changed complete blob"
grep -q "^bad .*$BLOB  partial: 1 of [0-9]* present ranges do not match" "$TMP/v3" || fail "verify missed the changed range"
[ ! -e "$small" ] || fail "verify did not remove the bad blob"
"$ANOLE" cache verify >"$TMP/v4" || fail "a second verify still found bad blobs: $(cat "$TMP/v4")"
"$ANOLE" mount --prefetch=none "$REF" "$TMP/m" || fail "mount after verify failed"
"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" || fail "after verify the mount differs"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
echo "verify: $(tail -n 1 "$TMP/v3")"

echo "== 4. a cache on tmpfs: FUSE, with a notice"
fresh
mktmpfs "$TMP/tc" 256m
export ANOLE_CACHE_DIR=$TMP/tc/cache
"$ANOLE" mount "$REF" "$TMP/m" 2>"$TMP/tmpfs.err" || fail "mount with a tmpfs cache failed: $(cat "$TMP/tmpfs.err")"
grep -q "notice: the cache .* without fanotify pre-content events (fanotify mark: Operation not supported); serving .* through FUSE" "$TMP/tmpfs.err" ||
	fail "no notice about the tmpfs cache: $(cat "$TMP/tmpfs.err")"
awk -v m="$TMP/m" '$2 == m && $3 == "fuse.anole"' /proc/mounts | grep -q . || fail "not a FUSE mount"
"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" || fail "the FUSE mount over a tmpfs cache differs"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
echo "tmpfs cache: $(cat "$TMP/tmpfs.err")"
export ANOLE_CACHE_DIR=$TMP/cache

echo "== 5. a worker that cannot listen: one line, in bounded time, no daemon left"
fresh
mkdir -p -m 700 "$ANOLE_RUNTIME_DIR" "$ANOLE_RUNTIME_DIR/daemon.sock"
start=$(date +%s)
expect_fail timeout 60 "$ANOLE" mount "$REF" "$TMP/m"
took=$(($(date +%s) - start))
one_line "a socket that cannot be bound"
grep -q "daemon.sock: cannot listen: Address already in use" "$TMP/last.err" ||
	fail "the error does not say why: $(cat "$TMP/last.err")"
[ "$(grep -c "giving up" "$ANOLE_RUNTIME_DIR/daemon.log")" = 1 ] || fail "no one line in the log: $(cat "$ANOLE_RUNTIME_DIR/daemon.log")"
wait_daemon_gone
echo "cannot listen: failed in ${took}s: $(cat "$TMP/last.err")"
echo ok
