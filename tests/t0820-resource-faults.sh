#!/bin/bash
# Resource faults (hardening). (1) The lazy cache's disk fills up during
# reads: readers get EIO, never other bytes; the cache stays consistent,
# and once space is back the same reads return the right bytes. (2) anole
# pull and (3) anole convert killed with SIGKILL at random moments, again
# and again: nothing they leave is taken for complete (no tag names a
# half-written image, a later pull verifies and finishes), and the final
# run's result equals the source; the next convert removes the work
# directories killed ones left. (4) pull and convert onto a full disk: one
# clear line, no tag, nothing under a blob's name but that blob, and no
# work files left behind.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry python3 curl mkfs.ext4 fallocate
need_fanotify

# 24 MiB of incompressible data in three files, and small ones
SRC=$TMP/src
mkdir -p "$SRC/big" "$SRC/small"
for i in 1 2 3; do head -c $((8 << 20)) /dev/urandom >"$SRC/big/f$i"; done
for i in $(seq 1 50); do echo "small $i" >"$SRC/small/s$i"; done

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cachefs/cache
daemon_kill() {
	local m
	for m in $(_mounts_under "$TMP/m" 2>/dev/null); do "$ANOLE" umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	# all three at once: one left alive restarts the others
	# shellcheck disable=SC2046
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid" 2>/dev/null)" 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/daemon.pid" 2>/dev/null)" 2>/dev/null || true
	sleep 0.2
	umount "$TMP/cachefs" 2>/dev/null
	umount "$TMP/smallfs" 2>/dev/null
	true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT

registry_start
REF=docker://$REGISTRY/faults/img:v1
"$ANOLE" convert -q "$SRC" "$REF" >"$TMP/convert.out" 2>&1 || fail "convert failed: $(cat "$TMP/convert.out")"

echo "== 1. the cache's disk fills up during lazy reads"
truncate -s 64M "$TMP/cache.ext4"
mkfs.ext4 -q -F "$TMP/cache.ext4"
mkdir -p "$TMP/cachefs" "$TMP/m"
mount -o loop "$TMP/cache.ext4" "$TMP/cachefs" || skip "cannot loop-mount an ext4 image here"
"$ANOLE" mount "$REF" "$TMP/m" || fail "mount failed: $(cat "$ANOLE_RUNTIME_DIR/daemon.log" 2>/dev/null)"
# leave about 1 MiB free: the first range writes fit, then ENOSPC
avail=$(df -B1 --output=avail "$TMP/cachefs" | tail -n 1)
fallocate -l $((avail - (1 << 20))) "$TMP/cachefs/ballast" || fail "fallocate failed"
failed=0
for i in 1 2 3; do
	if cat "$TMP/m/big/f$i" >"$TMP/out" 2>"$TMP/cat.err"; then
		cmp -s "$TMP/out" "$SRC/big/f$i" || fail "big/f$i read wrong bytes with the disk full"
	else
		grep -q "Input/output error" "$TMP/cat.err" || fail "big/f$i failed, but not with EIO: $(cat "$TMP/cat.err")"
		failed=$((failed + 1))
	fi
done
[ "$failed" -gt 0 ] || fail "no read failed although the cache's disk was full"
grep -q "No space left" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "the daemon did not log ENOSPC: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
"$ANOLE" status --json >"$TMP/st.json"
python3 - "$TMP/st.json" <<'PY' || fail "status after ENOSPC is wrong: $(cat "$TMP/st.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["reads_failed"] > 0, s
assert s["bytes_cached"] < s["bytes_total"], s
PY
echo "disk full: $failed of 3 big files failed with EIO, none read wrong"
rm -f "$TMP/cachefs/ballast"
"$TREECMP" --ignore-root-mtime "$SRC" "$TMP/m" >"$TMP/cmp" || fail "after freeing space the mount differs: $(tail -n 5 "$TMP/cmp")"
echo "space back: the whole tree reads right"
"$ANOLE" umount "$TMP/m" || fail "umount failed"
# a new daemon over the same cache takes only verified ranges as present
for i in $(seq 1 50); do
	alive=0
	for p in holder daemon; do kill -0 "$(cat "$ANOLE_RUNTIME_DIR/$p.pid" 2>/dev/null)" 2>/dev/null && alive=1; done
	[ "$alive" = 0 ] && break
	sleep 0.2
done
"$ANOLE" mount "$REF" "$TMP/m" || fail "remount failed"
"$TREECMP" --ignore-root-mtime "$SRC" "$TMP/m" >"$TMP/cmp" || fail "the cache kept after ENOSPC reads wrong: $(tail -n 5 "$TMP/cmp")"
"$ANOLE" umount "$TMP/m" || fail "umount failed"

echo "== 2. anole pull killed again and again, then finished"
for t in 0.05 0.1 0.2 0.3 0.5; do
	"$ANOLE" pull -q "$REF" "$TMP/pulled" >/dev/null 2>&1 &
	pid=$!
	sleep "$t"
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	# whatever is there under a blob's name must be that blob, whole
	for f in "$TMP/pulled"/blobs/sha256/*; do
		[ -f "$f" ] || continue
		[ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$(basename "$f")" ] ||
			fail "after a kill at ${t}s, blobs/sha256/$(basename "$f") is not that blob"
	done
done
"$ANOLE" pull -q "$REF" "$TMP/pulled" || fail "pull after the kills failed"
mkdir -p "$TMP/pm"
"$ANOLE" mount "oci:$TMP/pulled:v1" "$TMP/pm" 2>/dev/null || "$ANOLE" mount "oci:$TMP/pulled" "$TMP/pm" ||
	fail "mount of the pulled image failed"
"$TREECMP" --ignore-root-mtime "$SRC" "$TMP/pm" >"$TMP/cmp" || fail "pulled image differs: $(tail -n 5 "$TMP/cmp")"
umount "$TMP/pm"
echo "pull: 5 kills, then a verified image equal to the source"

echo "== 3. anole convert killed again and again, then finished"
REF2=docker://$REGISTRY/faults/conv:v1
mkdir -p "$TMP/work"
for t in 0.05 0.1 0.2 0.4; do
	"$ANOLE" convert -q --work-dir="$TMP/work" "$SRC" "$REF2" >/dev/null 2>&1 &
	pid=$!
	sleep "$t"
	kill -9 "$pid" 2>/dev/null || true
	if ! wait "$pid" 2>/dev/null; then
		# killed: the tag must not exist, or name a whole image
		if "$ANOLE" inspect "$REF2" >/dev/null 2>&1; then
			"$ANOLE" pull -q "$REF2" "$TMP/conv-check" || fail "after a kill at ${t}s the tag names an image that does not pull"
			rm -rf "$TMP/conv-check"
		fi
	fi
done
left=$(ls "$TMP/work" | wc -l)
"$ANOLE" convert -q --work-dir="$TMP/work" "$SRC" "$REF2" >/dev/null || fail "convert after the kills failed"
[ -z "$(ls -A "$TMP/work")" ] || fail "work directories of killed converts were not cleaned up: $(ls "$TMP/work")"
"$ANOLE" pull -q "$REF2" "$TMP/conv-pulled" || fail "pull of the converted image failed"
echo "convert: 4 kills ($left work entries left by them, removed by the next convert), no tag on a partial image, then a whole one"

echo "== 4. pull and convert onto a full disk"
truncate -s 16M "$TMP/small.ext4"
mkfs.ext4 -q -F "$TMP/small.ext4"
mkdir -p "$TMP/smallfs"
mount -o loop "$TMP/small.ext4" "$TMP/smallfs" || fail "cannot loop-mount the small ext4 image"
one_line_enospc() { # one_line_enospc WHAT ERRFILE
	[ "$(wc -l <"$2")" = 1 ] || fail "$1 on a full disk: not one line: $(cat "$2")"
	grep -q "No space left" "$2" || fail "$1 on a full disk: no ENOSPC in: $(cat "$2")"
}
whole_blobs() { # whole_blobs LAYOUT WHAT
	local f
	for f in "$1"/blobs/sha256/*; do
		[ -f "$f" ] || continue
		[ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$(basename "$f")" ] ||
			fail "$2: blobs/sha256/$(basename "$f") is not that blob"
	done
	if [ -f "$1/index.json" ]; then
		python3 -c 'import json,sys; sys.exit(len(json.load(open(sys.argv[1])).get("manifests", [])) != 0)' "$1/index.json" ||
			fail "$2: index.json names an image: $(cat "$1/index.json")"
	fi
}
rc=0
"$ANOLE" pull -q "$REF" "$TMP/smallfs/pulled" >/dev/null 2>"$TMP/pull.err" || rc=$?
[ "$rc" = 1 ] || fail "pull onto a full disk: exit $rc: $(cat "$TMP/pull.err")"
one_line_enospc pull "$TMP/pull.err"
whole_blobs "$TMP/smallfs/pulled" "pull onto a full disk"
echo "pull: $(cat "$TMP/pull.err")"
rm -rf "$TMP/smallfs/pulled"
rc=0
"$ANOLE" convert -q --work-dir="$TMP/smallfs/work" "$SRC" "oci:$TMP/smallfs/conv" >/dev/null 2>"$TMP/conv.err" || rc=$?
[ "$rc" = 1 ] || fail "convert onto a full disk: exit $rc: $(cat "$TMP/conv.err")"
one_line_enospc convert "$TMP/conv.err"
whole_blobs "$TMP/smallfs/conv" "convert onto a full disk"
[ -z "$(ls -A "$TMP/smallfs/work" 2>/dev/null)" ] || fail "convert on a full disk left work files: $(ls "$TMP/smallfs/work")"
echo "convert: $(cat "$TMP/conv.err")"
umount "$TMP/smallfs"
