#!/bin/bash
# Compression matrix: every algorithm x (small, large pcluster) x (dedupe
# on, off) on the torture tree and the minbase rootfs. The kernel decompresses each image
# and must show the source exactly; anole check reads every byte with its
# own decoders; anole extract (torture tree) must reproduce the source;
# fsck.erofs (Debian 1.5 knows lz4 only) must accept the lz4 images.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
need_cmd fsck.erofs
R=$(rootfs)

T=$TMP/torture MNT=$TMP/mnt OUT=$TMP/out
torture_tree "$T"
mkdir -p "$MNT"
mktmpfs "$OUT"

one() { # ALGO PCLUSTER NAME SRC [--dedupe]
	local img=$TMP/$3-$1-$2.img
	"$ANOLE" build -q -z "$1" --pcluster "$2" ${5:-} "$4" "$img" || fail "build -z $1 --pcluster $2 ${5:-} $3"
	"$ANOLE" check -q "$img" || fail "check rejected -z $1 --pcluster $2 $3"
	case $1 in lz4*)
		fsck.erofs "$img" >"$TMP/fsck.log" 2>&1 || { cat "$TMP/fsck.log"; fail "fsck.erofs rejected -z $1 $2 $3"; } ;;
	esac
	"$ANOLE" mount "$img" "$MNT" || fail "mount -z $1 --pcluster $2 $3"
	"$TREECMP" "$4" "$MNT" || fail "kernel view differs: -z $1 --pcluster $2 $3"
	"$ANOLE" umount "$MNT"
	if [ "$3" = torture ]; then
		"$ANOLE" extract "$img" "$OUT/x" || fail "extract -z $1 $2"
		"$TREECMP" "$4" "$OUT/x" || fail "extract differs: -z $1 --pcluster $2"
		rm -rf "$OUT/x"
	fi
	printf '%-8s %-5s %-8s %-8s %12d bytes\n' "$1" "$2" "$3" "${5:-}" "$(stat -c %s "$img")"
	rm -f "$img"
}

for algo in lz4 lz4hc deflate lzma zstd; do
	for pc in 16K 1M; do
		for dd in "" --dedupe; do
			one "$algo" "$pc" torture "$T" $dd
			one "$algo" "$pc" rootfs "$R" $dd
		done
	done
done

# The same bytes whatever the number of threads, with every feature on.
"$ANOLE" build -q -j1 -z zstd --dedupe "$R" "$TMP/j1.img"
"$ANOLE" build -q -j3 -z zstd --dedupe "$R" "$TMP/j3.img"
cmp "$TMP/j1.img" "$TMP/j3.img" || fail "-j1 and -j3 images differ"
