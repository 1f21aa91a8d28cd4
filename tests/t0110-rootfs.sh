#!/bin/bash
# A Debian bookworm minbase rootfs (debootstrap, cached) through build ->
# fsck.erofs, anole check, kernel mount and anole extract: zero differences.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
need_cmd fsck.erofs
R=$(rootfs)

MNT=$TMP/mnt OUT=$TMP/out
mkdir -p "$MNT"
"$ANOLE" build -q "$R" "$TMP/a.img" || fail "build failed"
"$ANOLE" check "$TMP/a.img" || fail "anole check rejected the image"
fsck.erofs "$TMP/a.img" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "fsck.erofs rejected the image"; }

"$ANOLE" mount "$TMP/a.img" "$MNT" || fail "mount failed"
"$TREECMP" "$R" "$MNT" || fail "kernel view differs from the rootfs"
"$ANOLE" umount "$MNT"

"$ANOLE" extract "$TMP/a.img" "$OUT" || fail "extract failed"
"$TREECMP" "$R" "$OUT" || fail "extracted tree differs from the rootfs"

"$ANOLE" build -q "$R" "$TMP/b.img"
cmp "$TMP/a.img" "$TMP/b.img" || fail "two builds of the rootfs differ"
ls -l "$TMP/a.img"
