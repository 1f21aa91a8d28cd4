#!/bin/bash
# The lazy format's local layout (its first part, 96f3f19): with
# --separate-data the file data goes to a content-addressed blob beside
# the image (DIR/blobs/sha256/HEX) that the image names in its device
# table (unified addressing). The kernel mounts it file-backed with
# device= (anole mount adds it) and shows the source tree; anole check
# and extract read through the blob; builds are reproducible and the same
# data makes the same blob; a missing blob is named.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
SRC=$TMP/src
torture_tree "$SRC"
R=$(rootfs)

for cfg in "none" "zstd" "lz4hc"; do
	for tree in torture rootfs; do
		src=$SRC
		[ $tree = rootfs ] && src=$R
		d=$TMP/$cfg-$tree
		mkdir "$d"
		z=()
		[ $cfg != none ] && z=(-z "$cfg")
		"$ANOLE" build -q "${z[@]}" --separate-data "$src" "$d/img.erofs" ||
			fail "$cfg/$tree: build failed"
		# the blob, its digest table and its chunk index
		n=$(find "$d/blobs/sha256" -type f | wc -l)
		[ "$n" = 3 ] || fail "$cfg/$tree: $n files in blobs/sha256, not 3"
		blob=$("$ANOLE" inspect --json "$d/img.erofs" |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["data_blobs"][0]["path"])')
		[ "sha256:${blob##*/}" = "sha256:$(sha256sum "$blob" | cut -d' ' -f1)" ] ||
			fail "$cfg/$tree: blob is not named by its digest"
		"$ANOLE" check "$d/img.erofs" >/dev/null || fail "$cfg/$tree: check failed"
		image_matches "$d/img.erofs" "$src" "$cfg/$tree"
		echo "$cfg/$tree: image $(stat -c %s "$d/img.erofs") bytes, blob $(stat -c %s "$blob") bytes"
	done
done

# inspect lists the blob
"$ANOLE" inspect --json "$TMP/zstd-rootfs/img.erofs" >"$TMP/inspect.json"
python3 -c '
import json, os, sys
o = json.load(open(sys.argv[1]))
b = o["data_blobs"]
assert len(b) == 1 and b[0]["digest"] == "sha256:" + os.path.basename(b[0]["path"]), b
assert b[0]["bytes"] == os.path.getsize(b[0]["path"]), b
assert "device_table" in o["features"], o["features"]
' "$TMP/inspect.json" || fail "inspect does not show the data blob"

# extract reads through the blob (into tmpfs: the torture tree's big
# xattrs do not fit ext4)
mktmpfs "$TMP/xfs"
"$ANOLE" extract "$TMP/zstd-torture/img.erofs" "$TMP/xfs/x" >/dev/null || fail "extract failed"
"$TREECMP" "$SRC" "$TMP/xfs/x" || fail "extracted tree differs"

# reproducible, and the same data is the same blob
mkdir "$TMP/again"
"$ANOLE" build -q -z zstd --separate-data "$SRC" "$TMP/again/img.erofs"
cmp "$TMP/zstd-torture/img.erofs" "$TMP/again/img.erofs" || fail "two builds differ"
"$ANOLE" build -q -z zstd --separate-data "$SRC" "$TMP/again/second.erofs"
[ "$(find "$TMP/again/blobs/sha256" -type f | wc -l)" = 3 ] || fail "equal data made two blobs"

# small files that do not compress stay out of the metadata image (a lazy
# mount fetches it whole); ones that do stay inline
mkdir -p "$TMP/small/src" "$TMP/small/out"
head -c 1500 /dev/urandom >"$TMP/small/src/random.bin"
yes "some text" | head -c 1500 >"$TMP/small/src/text.txt"
"$ANOLE" build -q -z zstd --no-fragments --separate-data "$TMP/small/src" "$TMP/small/out/img.erofs"
for f in random.bin:flat-plain text.txt:flat-inline; do
	got=$("$ANOLE" inspect --json "$TMP/small/out/img.erofs" "/${f%%:*}" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["layout"])')
	[ "$got" = "${f#*:}" ] || fail "${f%%:*}: layout $got, not ${f#*:}"
done
"$ANOLE" check "$TMP/small/out/img.erofs" >/dev/null || fail "small files: check failed"
image_matches "$TMP/small/out/img.erofs" "$TMP/small/src" "small files"

# a missing blob is named
rm -f "$TMP/again/blobs/sha256/"*
expect_fail "$ANOLE" check "$TMP/again/img.erofs"
grep -q "needs data blob sha256:" "$TMP/last.err" || fail "missing blob: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" mount "$TMP/again/img.erofs" "$TMP/mnt"
