#!/bin/bash
# Hostile tar layers (tests/lib/mkhostile: escapes through "..", absolute
# paths, symlinks and hard links, huge and lying headers, truncated and
# garbled compression, bad whiteouts): `anole build` never crashes or
# hangs, fails with one line naming the problem or builds an image that
# is normalized (docs/CLI.md says which), never leaves a failed image,
# and nothing anywhere outside the image is written. Every image built is
# accepted by `anole check`, extracts inside its target and exports.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd python3 gzip zstd

H=$TMP/hostile OUT=$TMP/out
mkdir -p "$H" "$OUT"
"$ROOT/tests/lib/mkhostile" "$H" >/dev/null || fail "mkhostile failed"

# Cases whose outcome docs/CLI.md promises: NAME -> "ok" or an error text.
declare -A EXPECT=(
	[dotdot-escape.tar]="'..' in a path is refused"
	[hardlink-escape-rel.tar]="'..' in a path is refused"
	[hardlink-escape-abs.tar]="not an earlier entry of this layer"
	[hardlink-missing.tar]="not an earlier entry of this layer"
	[hardlink-forward.tar]="not an earlier entry of this layer"
	[symlink-escape-abs.tar]="paths through symlinks or files are refused"
	[symlink-escape-rel.tar]="paths through symlinks or files are refused"
	[symlink-escape-chain.tar]="paths through symlinks or files are refused"
	[symlink-loop.tar]="paths through symlinks or files are refused"
	[whiteout-escape.tar]="'..' in a path is refused"
	[long-component.tar]="longer than 255 bytes"
	[truncated-body.tar]="Truncated tar archive"
	[truncated.tar.gz]="truncated gzip input"
	[truncated.tar.zst]="Truncated zstd input"
	[absolute-path.tar]=ok
	[opaque-at-root.tar]=ok
)

# Paths a broken implementation would have written outside the image.
evil_before=$(find / -xdev -name 'anole-evil*' 2>/dev/null | grep -v "^$TMP" | sort)

n=0 failed=0 built=0
for f in "$H"/*; do
	case $f in *.txt | *.md) continue ;; esac
	name=${f##*/}
	n=$((n + 1))
	img=$OUT/$name.img rc=0
	timeout 120 "$ANOLE" build -q "$f" "$img" 2>"$TMP/err" || rc=$?
	[ $rc -lt 124 ] || fail "$name: exit $rc (crash, signal or hang)"
	exp=${EXPECT[$name]:-}
	if [ $rc != 0 ]; then
		failed=$((failed + 1))
		[ "$(wc -l <"$TMP/err")" = 1 ] || fail "$name: error is not one line: $(cat "$TMP/err")"
		[ ! -e "$img" ] || fail "$name: a failed build left an image"
		[ "$exp" != ok ] || fail "$name: expected an image, got: $(cat "$TMP/err")"
		[ -z "$exp" ] || grep -qF -- "$exp" "$TMP/err" ||
			fail "$name: expected '$exp', got: $(cat "$TMP/err")"
		continue
	fi
	built=$((built + 1))
	[ -z "$exp" ] || [ "$exp" = ok ] || fail "$name: expected '$exp', but it built"
	"$ANOLE" check "$img" >/dev/null || fail "$name: anole check rejected the image"
	mkdir "$OUT/$name.x"
	rc=0
	"$ANOLE" extract "$img" "$OUT/$name.x" >/dev/null 2>&1 || rc=$?
	[ $rc -lt 124 ] || fail "$name: extract exit $rc (crash?)"
	rc=0
	"$ANOLE" export -q "$img" -o "$OUT/$name.tar" >/dev/null 2>&1 || rc=$?
	[ $rc -lt 124 ] || fail "$name: export exit $rc (crash?)"
	rm -rf "$OUT/$name.x" "$OUT/$name.tar" "$img"
done

# Normalized: absolute paths land inside the image.
"$ANOLE" build -q "$H/absolute-path.tar" "$OUT/abs.img"
"$ANOLE" inspect "$OUT/abs.img" /etc/anole-evil-abs >/dev/null ||
	fail "absolute-path.tar: /etc/anole-evil-abs is not inside the image"

# Empty input, plain or compressed, is an empty archive as tar(1) reads
# it: an image of an empty root, not an error from inside libarchive.
: >"$OUT/empty"
gzip -c </dev/null >"$OUT/empty.gz"
for e in /dev/null "$OUT/empty" "$OUT/empty.gz"; do
	"$ANOLE" build -q "$e" "$OUT/e.img" 2>"$OUT/err" || fail "$e: $(cat "$OUT/err")"
	mkdir "$OUT/e.x"
	"$ANOLE" extract "$OUT/e.img" "$OUT/e.x" >/dev/null || fail "$e: extract failed"
	[ -z "$(ls -A "$OUT/e.x")" ] || fail "$e: the image is not empty"
	rm -rf "$OUT/e.x" "$OUT/e.img"
done

evil_after=$(find / -xdev -name 'anole-evil*' 2>/dev/null | grep -v "^$TMP" | sort)
[ "$evil_before" = "$evil_after" ] || fail "something was written outside: $evil_after"
echo "$n hostile tars: $failed refused, $built built and checked; nothing written outside"
