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

echo "$(wc -l <"$TMP/cases.txt") cases equal umoci unpack, merged and stacked"
