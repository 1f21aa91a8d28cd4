#!/bin/bash
# Container images from OCI layouts: a multi-layer image (a debootstrap
# rootfs plus hand-made layers with whiteouts, an opaque directory, PAX
# xattrs, hard links, sparse and long names; gzip, zstd and plain layers)
# built with `anole build oci:...` mounts under the kernel equal to
# `umoci unpack` of the same image. Also: platform choice from an index,
# single layers from stdin and from files, --layers=separate stacked with
# overlayfs, and `anole export` -> tar -x reproducing the tree.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
need_cmd umoci skopeo zstd xz tar

MKOCI=$ROOT/tests/lib/mkoci
MNT=$TMP/mnt
mkdir -p "$MNT"

# check_image IMAGE TRUTH WHAT: anole check passes, kernel view equals TRUTH
check_image() {
	"$ANOLE" check "$1" >/dev/null || fail "$3: anole check rejected the image"
	image_matches "$@"
}

run_image() {	# LAYOUT-DIR NAME
	local L=$1 name=$2 OUT TRUTH
	OUT=$(dirname "$L")
	TRUTH=$OUT/truth/rootfs
	echo "== $name image: $L"

	"$ANOLE" build -q "oci:$L:v1" "$TMP/$name.img" || fail "$name: build from oci: failed"
	check_image "$TMP/$name.img" "$TRUTH" "$name"
	"$ANOLE" build -q "oci:$L:v1" "$TMP/$name.again.img"
	cmp "$TMP/$name.img" "$TMP/$name.again.img" || fail "$name: two builds differ"

	"$ANOLE" build -q -z zstd "oci:$L:v1" "$TMP/$name.zstd.img" || fail "$name: zstd build failed"
	check_image "$TMP/$name.zstd.img" "$TRUTH" "$name zstd"

	# The amd64 entry of the index is v1; arm64 is another image.
	"$ANOLE" build -q "oci:$L:multi" "$TMP/$name.multi.img" || fail "$name: multi failed"
	cmp "$TMP/$name.img" "$TMP/$name.multi.img" || fail "$name: multi (amd64) differs from v1"
	if [ -d "$OUT/truth-arm64/rootfs" ]; then
		"$ANOLE" build -q --platform linux/arm64/v8 "oci:$L:multi" "$TMP/$name.arm.img" ||
			fail "$name: arm64 build failed"
		check_image "$TMP/$name.arm.img" "$OUT/truth-arm64/rootfs" "$name arm64"
	fi
	expect_fail "$ANOLE" build -q --platform linux/s390x "oci:$L:multi" "$TMP/x.img"
	grep -q "no image for platform linux/s390x" "$TMP/last.err" ||
		fail "platform error: $(cat "$TMP/last.err")"
	expect_fail "$ANOLE" build -q "oci:$L:nosuchtag" "$TMP/x.img"
	grep -q "no such tag" "$TMP/last.err" || fail "tag error: $(cat "$TMP/last.err")"
	[ ! -e "$TMP/x.img" ] || fail "a failed build left an image"

	# Each layer alone: from its file and from stdin, the same bytes (or,
	# for a layer that hard-links a lower layer's file, the same error).
	local n=0 mt f rc1 rc2
	while read -r mt f; do
		n=$((n + 1))
		rc1=0 rc2=0
		"$ANOLE" build -q "$f" "$TMP/layer$n.img" 2>"$TMP/e1" || rc1=$?
		"$ANOLE" build -q - "$TMP/layer$n.stdin.img" <"$f" 2>"$TMP/e2" || rc2=$?
		if [ $rc1 != 0 ]; then
			grep -q "not an earlier entry of this layer" "$TMP/e1" ||
				fail "$name: layer $n ($mt) from file failed: $(cat "$TMP/e1")"
			[ $rc2 = $rc1 ] || fail "$name: layer $n: stdin and file disagree"
			sed -i 's/^anole: [^:]*: //' "$TMP/e1" "$TMP/e2"
			continue
		fi
		[ $rc2 = 0 ] || fail "$name: layer $n from stdin failed: $(cat "$TMP/e2")"
		cmp "$TMP/layer$n.img" "$TMP/layer$n.stdin.img" || fail "$name: layer $n: stdin differs"
		"$ANOLE" check "$TMP/layer$n.img" >/dev/null || fail "$name: layer $n image rejected"
		rm -f "$TMP/layer$n.img" "$TMP/layer$n.stdin.img"
	done <"$OUT/layers.txt"

	# xz, which no layer of the image uses: the plain layer, recompressed.
	f=$(awk '$1 == "application/vnd.oci.image.layer.v1.tar" {print $2; exit}' "$OUT/layers.txt")
	if [ -n "$f" ]; then
		"$ANOLE" build -q "$f" "$TMP/plain.img" || fail "$name: plain layer failed"
		xz -T1 -c "$f" | "$ANOLE" build -q - "$TMP/xz.img" || fail "$name: xz layer failed"
		cmp "$TMP/plain.img" "$TMP/xz.img" || fail "$name: xz layer differs from plain"
		rm -f "$TMP/plain.img" "$TMP/xz.img"
	fi

	# Old GNU sparse members (umoci cannot unpack them): GNU tar's own
	# extraction is the truth.
	if [ -f "$OUT/extra/gnu-sparse.tar" ]; then
		"$ANOLE" build -q "$OUT/extra/gnu-sparse.tar" "$TMP/gs.img" || fail "$name: GNU sparse failed"
		"$ANOLE" mount "$TMP/gs.img" "$MNT" || fail "$name: GNU sparse: mount failed"
		# (tar made gnu/ itself, with the time of extraction)
		"$TREECMP" --ignore-root-mtime "$OUT/extra/gnu-sparse/gnu" "$MNT/gnu" ||
			fail "$name: GNU sparse members differ from GNU tar's extraction"
		"$ANOLE" umount "$MNT"
		rm -f "$TMP/gs.img"
	fi

	# One image per layer, stacked with overlayfs.
	"$ANOLE" build -q --layers=separate "oci:$L:v1" "$TMP/$name.sep" || fail "$name: separate failed"
	stack_matches "$TMP/$name.sep" "$TRUTH" "$name"

	# export -> tar -x reproduces the tree.
	"$ANOLE" export -q "$TMP/$name.img" -o "$TMP/$name.tar" || fail "$name: export failed"
	mkdir "$TMP/$name.x"
	tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -f "$TMP/$name.tar" \
		-C "$TMP/$name.x" 2>"$TMP/tar.err" || { cat "$TMP/tar.err"; fail "$name: tar -x failed"; }
	"$TREECMP" "$TRUTH" "$TMP/$name.x" >"$TMP/cmp.log" 2>&1 || {
		cat "$TMP/cmp.log"
		fail "$name: exported tar differs from umoci unpack"
	}
	rm -rf "$TMP/$name.x" "$TMP/$name.tar" "$TMP/$name".*img
}

run_image "$("$MKOCI" --small)" small
if FULL=$("$MKOCI" 2>"$TMP/mkoci.err"); then
	run_image "$FULL" full
else
	skip "full OCI image: $(tail -n 1 "$TMP/mkoci.err")"
fi
