#!/bin/bash
# Compression on real files: the Debian minbase rootfs (206 MB: ELF
# binaries and libraries, text, gzip'd man pages, .deb archives) built with
# every algorithm, once with 16 KiB pclusters and once with 1 MiB
# pclusters and dedupe; the kernel decompresses each image and must show
# the source exactly, anole check must read every byte, fsck.erofs must
# accept the lz4 images. Every combination of pcluster size and dedupe runs
# on the torture tree in t0300.
#
# lzma runs on a 42 MB sample of the rootfs (usr/bin, usr/sbin,
# usr/share/man, usr/share/doc, etc: the same kinds of files): it
# compresses about 20 times slower than the others, and the whole rootfs
# would prove nothing more at 1 MiB than the sample does.
#
# Last, the same bytes whatever the number of threads (zstd, dedupe).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/compress-case
. "$ROOT/tests/lib/compress-case"
need_root
need_erofs
need_cmd fsck.erofs
R=$(rootfs)

S=$TMP/sample
mktmpfs "$S" 1g
for d in usr/bin usr/sbin usr/share/man usr/share/doc etc; do
	mkdir -p "$S/$(dirname "$d")"
	cp -a "$R/$d" "$S/$d" || fail "cannot copy $R/$d"
done

for algo in lz4 lz4hc deflate lzma zstd; do
	src=$R name=rootfs
	[ $algo = lzma ] && src=$S name=sample
	compress_case "$algo" 16K "$name" "$src"
	compress_case "$algo" 1M "$name" "$src" --dedupe -j3
done

# (the last case was zstd 1M --dedupe -j3)
"$ANOLE" build -q -j1 -z zstd --pcluster 1M --dedupe "$R" "$TMP/j1.img" || fail "build -j1 failed"
cmp "$TMP/j1.img" "$CASE_IMG" || fail "-j1 and -j3 images differ"
echo "zstd 1M --dedupe: -j1 and -j3 give the same bytes"
