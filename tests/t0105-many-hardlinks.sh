#!/bin/bash
# Many hard-linked files: a tree with 1,500 multiply-linked inodes (more
# than the directory walker's first link table holds, so it must grow)
# built from the directory and from a tar of it, each compared with the
# source through the kernel's mount and through extract, links included.
# A walker whose table stops growing loops forever: bounded by timeout.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs

SRC=$TMP/src MNT=$TMP/mnt
mkdir -p "$SRC/a" "$SRC/b" "$SRC/c" "$MNT"
for i in $(seq 1 1500); do
	echo "file $i" >"$SRC/a/f$i"
	ln "$SRC/a/f$i" "$SRC/b/f$i"
	[ $((i % 3)) = 0 ] && ln "$SRC/a/f$i" "$SRC/c/f$i"
done
tar --format=posix -C "$SRC" -cf "$TMP/src.tar" .

for from in dir tar; do
	in=$SRC
	[ $from = tar ] && in=$TMP/src.tar
	timeout 120 "$ANOLE" build -q "$in" "$TMP/$from.img" || fail "$from: build failed or hung"
	"$ANOLE" check "$TMP/$from.img" || fail "$from: check rejected the image"
	"$ANOLE" mount "$TMP/$from.img" "$MNT" || fail "$from: mount failed"
	"$TREECMP" --ignore-root-mtime "$SRC" "$MNT" || fail "$from: kernel view differs"
	"$ANOLE" umount "$MNT"
	"$ANOLE" extract "$TMP/$from.img" "$TMP/out-$from" || fail "$from: extract failed"
	"$TREECMP" --ignore-root-mtime "$SRC" "$TMP/out-$from" || fail "$from: extracted tree differs"
done
echo "1500 linked inodes: dir and tar builds match the source"
