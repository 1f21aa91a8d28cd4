#!/bin/bash
# Layers real tools write (tests/lib/mkcompat: `umoci repack` of changed
# bundles, and tarfile layers with duplicates, whiteouts of names that
# never existed, opaque markers of absent directories, root entries, ...)
# build, merged, to exactly the tree `umoci unpack` gives, and stacked
# from --layers=separate under overlayfs to the same tree; skopeo's zstd
# and zstd:chunked copies build the same image as the gzip original.
# Whiteouts under a symlink of their own layer delete nothing, not even
# through it (wh_nofollow: where umoci would, the truth says so).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
need_cmd umoci skopeo python3

C=$TMP/cases
mkdir -p "$C"
"$ROOT/tests/lib/mkcompat" "$C" >"$TMP/cases.txt" 2>"$TMP/mkcompat.err" ||
	fail "mkcompat: $(cat "$TMP/mkcompat.err")"

while read -r name; do
	L=$C/$name/layout T=$C/$name/truth/rootfs
	echo "== $name"
	"$ANOLE" build -q "oci:$L:v1" "$TMP/$name.img" || fail "$name: build failed"
	"$ANOLE" check "$TMP/$name.img" >/dev/null || fail "$name: anole check rejected the image"
	image_matches "$TMP/$name.img" "$T" "$name"
	"$ANOLE" build -q --layers=separate "oci:$L:v1" "$TMP/$name.sep" ||
		fail "$name: --layers=separate failed"
	stack_matches "$TMP/$name.sep" "$T" "$name"
done <"$TMP/cases.txt"

# skopeo's own compression of umoci's layers: the same tar bytes, so the
# same image.
L=$C/repack/layout
for fmt in zstd zstd:chunked; do
	skopeo --insecure-policy copy -q --dest-compress-format "$fmt" "oci:$L:v1" \
		"oci:$TMP/${fmt/:/-}.oci:v1" || fail "skopeo copy ($fmt) failed"
	"$ANOLE" build -q "oci:$TMP/${fmt/:/-}.oci:v1" "$TMP/skopeo.img" ||
		fail "skopeo $fmt: build failed"
	cmp "$TMP/repack.img" "$TMP/skopeo.img" || fail "skopeo $fmt: image differs from gzip's"
done

# Docker media types BuildKit and Windows-era tools write: zstd, and
# foreign layers (plain and gzip): the same layers, the same image.
D=$TMP/docker-types
"$ROOT/tests/lib/ocitool" init "$D"
"$ROOT/tests/lib/ocitool" new "$D" v1
"$ROOT/tests/lib/ocitool" add-layer "$D" v1 "$C/wh_absent/v11.tar" --compress zstd \
	--media-type application/vnd.docker.image.rootfs.diff.tar.zstd >/dev/null
"$ROOT/tests/lib/ocitool" add-layer "$D" v1 "$C/wh_absent/v12.tar" --compress none \
	--media-type application/vnd.docker.image.rootfs.foreign.diff.tar >/dev/null
"$ANOLE" build -q "oci:$D:v1" "$TMP/docker-types.img" || fail "Docker media types: build failed"
cmp "$TMP/wh_absent.img" "$TMP/docker-types.img" || fail "Docker media types: the image differs"

# Empty xattrs: GNU tar --xattrs writes them as empty PAX records; a tar
# file, a merged image and separate layers keep them (umoci 0.4.7 drops
# them, so the truth is the tree tar read, compared through getfattr too).
X=$TMP/ex
mktmpfs "$X" 64m
mkdir -p "$X/root/tree/d"
echo data >"$X/root/tree/f"
echo new >"$X/root/tree/d/new"
setfattr -n user.empty "$X/root/tree/f"
setfattr -n user.full -v abc "$X/root/tree/f"
setfattr -n user.e2 "$X/root/tree/d"
touch -d @1700000000 "$X/root/tree/f" "$X/root/tree/d/new" "$X/root/tree/d" "$X/root/tree"
# layer 2 brings d/new; d is only implied there
tar --xattrs --xattrs-include='*' --format=posix --exclude=tree/d/new -C "$X/root" \
	-cf "$X/l1.tar" tree
tar --xattrs --xattrs-include='*' --format=posix -C "$X/root" -cf "$X/l2.tar" tree/d/new
chmod 755 "$X/root"
touch -d @0 "$X/root"	# what anole gives a root no entry names
getfattr_all() { (cd "$1" && getfattr -R -h -d -m - --absolute-names . 2>/dev/null | sort); }
getfattr_all "$X/root" >"$TMP/ex.want"
grep -q '^user.empty=""' "$TMP/ex.want" || fail "the tmpfs did not keep an empty xattr"
"$ROOT/tests/lib/ocitool" init "$X/lay"
"$ROOT/tests/lib/ocitool" new "$X/lay" v1
"$ROOT/tests/lib/ocitool" add-layer "$X/lay" v1 "$X/l1.tar" >/dev/null
"$ROOT/tests/lib/ocitool" add-layer "$X/lay" v1 "$X/l2.tar" --compress zstd >/dev/null
"$ANOLE" build -q "$X/l1.tar" "$TMP/ex-tar.img" || fail "empty xattrs: tar build failed"
"$ANOLE" build -q "oci:$X/lay:v1" "$TMP/ex.img" || fail "empty xattrs: build failed"
"$ANOLE" build -q --layers=separate "oci:$X/lay:v1" "$TMP/ex.sep" ||
	fail "empty xattrs: separate build failed"
"$ANOLE" mount "$TMP/ex-tar.img" "$TMP/mnt"
getfattr_all "$TMP/mnt" >"$TMP/ex.got"
"$ANOLE" umount "$TMP/mnt"
grep -v '^# file: ./tree/d/new$' "$TMP/ex.want" | diff - "$TMP/ex.got" ||
	fail "empty xattrs: the tar file's image differs (getfattr)"
"$ANOLE" mount "$TMP/ex.img" "$TMP/mnt"
getfattr_all "$TMP/mnt" | diff "$TMP/ex.want" - || fail "empty xattrs: merged image differs (getfattr)"
"$ANOLE" umount "$TMP/mnt"
image_matches "$TMP/ex.img" "$X/root" "empty xattrs, merged"
stack_matches "$TMP/ex.sep" "$X/root" "empty xattrs, separate"

echo "$(wc -l <"$TMP/cases.txt") cases equal umoci unpack, merged and stacked; empty xattrs kept"
