#!/bin/bash
# anole extract creates regular files and decodes and writes their data
# on worker threads (-j): the tree is the same for any thread count.
# Images of the torture tree (holes, hard links, xattrs, devices, big and
# empty files) in lz4hc with small pclusters, lzma with fragments, zstd
# with 1 MiB pclusters and dedupe (partially referenced pclusters),
# extracted with -j1 (no threads), -j2 and -j7 (more threads than cores):
# each equals the source (treecmp, contents byte for byte) and the -j1
# tree; so does an uncompressed image; 3000 directories extract under a
# limit of 64 descriptors, and 600 with files under 32 with seven
# threads; a damaged pcluster fails with one line and leaves no target.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
T=$TMP/torture
torture_tree "$T"
rm -rf "$T/many" # 100000 entries: the walk, not the decoding
mktmpfs "$TMP/out"

for c in "lz4hc --pcluster=8K --no-fragments" "lzma --pcluster=16K --fragments" \
	"zstd --pcluster=1M --dedupe"; do
	name=${c%% *}
	# shellcheck disable=SC2086 # the options, split
	"$ANOLE" build -q -z $c "$T" "$TMP/$name.img" || fail "$name: build failed"
	for j in 1 2 7; do
		out=$TMP/out/$name-j$j
		"$ANOLE" extract -q -j "$j" "$TMP/$name.img" "$out" || fail "$name: extract -j$j failed"
		"$TREECMP" --ignore-root-mtime "$T" "$out" >"$TMP/cmp.log" 2>&1 ||
			{ cat "$TMP/cmp.log"; fail "$name: extract -j$j differs from the source"; }
		[ "$j" = 1 ] && continue
		"$TREECMP" "$TMP/out/$name-j1" "$out" >"$TMP/cmp.log" 2>&1 ||
			{ cat "$TMP/cmp.log"; fail "$name: extract -j$j differs from -j1"; }
		rm -rf "$out"
	done
	rm -rf "$TMP/out/$name-j1"
done

# uncompressed files are created and written by the pool too
"$ANOLE" build -q "$T" "$TMP/plain.img" || fail "plain: build failed"
for j in 1 2 7; do
	out=$TMP/out/plain-j$j
	"$ANOLE" extract -q -j "$j" "$TMP/plain.img" "$out" || fail "plain: extract -j$j failed"
	"$TREECMP" --ignore-root-mtime "$T" "$out" >"$TMP/cmp.log" 2>&1 ||
		{ cat "$TMP/cmp.log"; fail "plain: extract -j$j differs from the source"; }
	rm -rf "$out"
done

# 3000 directories without files, under a limit of 64 descriptors: each
# is finished (and closed) as the walk leaves it, not kept open until
# some file is written
mkdir "$TMP/dirs"
(cd "$TMP/dirs" && mkdir $(seq 3000) && chmod 0555 17 && touch -d @1000000000 42) ||
	fail "cannot make the directories"
"$ANOLE" build -q -z lz4 "$TMP/dirs" "$TMP/dirs.img" || fail "dirs: build failed"
(ulimit -n 64 && exec "$ANOLE" extract -q "$TMP/dirs.img" "$TMP/out/dirs") ||
	fail "dirs: extract with 64 descriptors failed"
"$TREECMP" --ignore-root-mtime "$TMP/dirs" "$TMP/out/dirs" >"$TMP/cmp.log" 2>&1 ||
	{ cat "$TMP/cmp.log"; fail "dirs: extract differs from the source"; }
rm -rf "$TMP/out/dirs"

# 600 directories with a file each (every tenth also a big one, made by
# the walk), under a limit of 32 descriptors, with seven threads: the
# queue keeps as many directories and files open as the limit leaves room
# for, and the threads as many as it allows
mkdir "$TMP/fds"
for i in $(seq 600); do
	mkdir "$TMP/fds/d$i" && echo "$i" >"$TMP/fds/d$i/f"
	[ $((i % 10)) = 0 ] && head -c 300000 /dev/urandom >"$TMP/fds/d$i/big"
done
"$ANOLE" build -q -z lz4 "$TMP/fds" "$TMP/fds.img" || fail "fds: build failed"
for j in 1 7; do
	(ulimit -n 32 && exec "$ANOLE" extract -q -j "$j" "$TMP/fds.img" "$TMP/out/fds") ||
		fail "fds: extract -j$j with 32 descriptors failed"
	"$TREECMP" --ignore-root-mtime "$TMP/fds" "$TMP/out/fds" >"$TMP/cmp.log" 2>&1 ||
		{ cat "$TMP/cmp.log"; fail "fds: extract -j$j differs from the source"; }
	rm -rf "$TMP/out/fds"
done

# 0xff over the middle of an image of compressible files (whole
# pclusters: flipped bits could still decode, lzma has no checksum; and
# data stored plain has nothing to check): an error (never a crash), one
# line, and no target left behind
mkdir "$TMP/text"
for i in 1 2 3 4; do seq "$i" 3 2000000 >"$TMP/text/$i"; done
"$ANOLE" build -q -z lzma --pcluster=16K "$TMP/text" "$TMP/text.img" || fail "text: build failed"
size=$(stat -c %s "$TMP/text.img")
cp "$TMP/text.img" "$TMP/bad.img"
head -c 65536 /dev/zero | tr '\0' '\377' |
	dd of="$TMP/bad.img" bs=65536 seek=$((size / 2 / 65536)) conv=notrunc status=none
for j in 1 4; do
	expect_fail "$ANOLE" extract -q -j "$j" "$TMP/bad.img" "$TMP/out/bad"
	[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "-j$j: not one line: $(cat "$TMP/last.err")"
	[ ! -e "$TMP/out/bad" ] || fail "-j$j: a failed extract left its target"
	[ -z "$(ls -A "$TMP/out")" ] || fail "-j$j: a failed extract left $(ls -A "$TMP/out")"
done
"$ANOLE" extract -j 0 "$TMP/text.img" "$TMP/out/x" 2>/dev/null && fail "-j 0 accepted"
echo ok
