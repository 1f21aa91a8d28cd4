#!/bin/bash
# 400 hostile images (tests/lib/mutate-image: flipped bytes, smashed
# fields, truncations, zeroed blocks, directory cycles, nids out of range,
# names with '/', '..' or NUL, lying sizes, extents past the image, huge
# xattr counts, wrong types) made from four good images (plain, lz4, zstd,
# lzma), each through check, inspect and extract: any exit from 0 to 1,
# never a signal or a hang, one-line errors, and extract never writes
# outside its target (which sits alone in a tmpfs, next to nothing).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd python3
need_root

SRC=$TMP/src
mkdir -p "$SRC/d/sub" "$SRC/many"
echo hello >"$SRC/d/a"
setfattr -n user.k -v v "$SRC/d/a" 2>/dev/null || true
for i in $(seq 1 300); do printf 'file %s\n' "$i" >"$SRC/many/file-with-long-name-$i"; done
seq 1 20000 >"$SRC/d/sub/numbers"
ln -s /etc "$SRC/l"
ln "$SRC/d/a" "$SRC/d/hard"

mktmpfs "$TMP/x" 256m
# 100 mutants per codec; the sanitizer build runs the first half of each
# set (the same seeds): 1,200 process starts under ASan take ~5 min, and
# fuzz_image covers the parsers under ASan besides.
per=100
case "${BUILD_DIR:-build}" in *asan*) per=50 ;; esac
total=0 crashes=0 caught=0
for z in none lz4 zstd lzma; do
	args=()
	[ $z = none ] || args=(-z $z)
	"$ANOLE" build -q "${args[@]}" "$SRC" "$TMP/$z.img" || fail "build -z $z"
	"$ANOLE" check -q "$TMP/$z.img" || fail "check rejected the good $z image"
	mkdir -p "$TMP/info-$z" "$TMP/bad-$z"
	for p in root:/ d:/d sub:/d/sub many:/many link:/l a:/d/a; do
		"$ANOLE" inspect --json "$TMP/$z.img" "${p#*:}" >"$TMP/info-$z/${p%%:*}.json" || fail "inspect ${p#*:}"
	done
	"$ROOT/tests/lib/mutate-image" "$TMP/$z.img" "$TMP/info-$z" "$TMP/bad-$z" "$z" $per ||
		fail "mutate-image failed"
	for bad in "$TMP/bad-$z"/*.img; do
		total=$((total + 1))
		name="$z/$(basename "$bad")"
		rc=0
		timeout 20 "$ANOLE" check -q "$bad" >/dev/null 2>"$TMP/err" || rc=$?
		[ "$rc" -le 1 ] || { echo "check on $name: exit $rc: $(tail -n 3 "$TMP/err")"; crashes=$((crashes + 1)); }
		[ "$rc" = 0 ] || caught=$((caught + 1))
		[ "$rc" != 1 ] || [ "$(wc -l <"$TMP/err")" = 1 ] || fail "check on $name: not one line: $(cat "$TMP/err")"
		for p in / /d /many/file-with-long-name-1 /l; do
			rc=0
			timeout 20 "$ANOLE" inspect "$bad" "$p" >/dev/null 2>"$TMP/err" || rc=$?
			[ "$rc" -le 1 ] || { echo "inspect $p on $name: exit $rc: $(tail -n 3 "$TMP/err")"; crashes=$((crashes + 1)); }
		done
		mkdir "$TMP/x/t"
		rc=0
		timeout 20 "$ANOLE" extract --no-owner -q "$bad" "$TMP/x/t/out" >/dev/null 2>"$TMP/err" || rc=$?
		[ "$rc" -le 1 ] || { echo "extract on $name: exit $rc: $(tail -n 3 "$TMP/err")"; crashes=$((crashes + 1)); }
		[ "$rc" != 1 ] || [ "$(wc -l <"$TMP/err")" = 1 ] || fail "extract on $name: not one line: $(cat "$TMP/err")"
		[ "$(ls -A "$TMP/x")" = t ] || fail "extract of $name wrote outside its target: $(ls -A "$TMP/x")"
		case "$(ls -A "$TMP/x/t")" in "" | out) ;; *) fail "extract of $name wrote beside its target: $(ls -A "$TMP/x/t")" ;; esac
		rm -rf "$TMP/x/t"
	done
done
ls /tmp/anole-evil "$TMP"/anole-evil /anole-evil 2>/dev/null && fail "a hostile name escaped"
echo "hostile images: $total through check, inspect and extract; check refused $caught; $crashes crashes or hangs"
[ "$crashes" = 0 ] || fail "$crashes crashes or hangs"
