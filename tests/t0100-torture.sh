#!/bin/bash
# The torture tree (every file type, mode, owner, time, xattr, name and size
# the foundation promises) through build -> kernel mount, anole extract,
# fsck.erofs and anole check; and twice through build for identical bytes.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
need_cmd fsck.erofs

SRC=$TMP/src MNT=$TMP/mnt OUT=$TMP/out
torture_tree "$SRC"
mkdir -p "$MNT"

"$ANOLE" build -q "$SRC" "$TMP/a.img" || fail "build failed"
"$ANOLE" check "$TMP/a.img" || fail "anole check rejected the image"
fsck.erofs "$TMP/a.img" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "fsck.erofs rejected the image"; }

"$ANOLE" mount "$TMP/a.img" "$MNT" || fail "mount failed"
"$TREECMP" "$SRC" "$MNT" || fail "kernel view differs from the source"
"$ANOLE" umount "$MNT"

mktmpfs "$OUT"
"$ANOLE" extract "$TMP/a.img" "$OUT" || fail "extract failed"
"$TREECMP" "$SRC" "$OUT" || fail "extracted tree differs from the source"
# holes stay holes through extract
blocks=$(stat -c %b "$OUT/sizes/sparse/5g")
[ "$blocks" -lt 1000 ] || fail "extracted 5g file is not sparse ($blocks blocks)"

# Deterministic: the same tree gives the same bytes.
"$ANOLE" build -q "$SRC" "$TMP/b.img"
cmp "$TMP/a.img" "$TMP/b.img" || fail "two builds of the same tree differ"

# The image stays small: a 5 GiB sparse file costs only its data.
size=$(stat -c %s "$TMP/a.img")
[ "$size" -lt $((200 * 1024 * 1024)) ] || fail "image is $size bytes: holes were stored"
echo "image: $size bytes"
