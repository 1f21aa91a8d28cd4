#!/bin/bash
# Compression matrix on the torture tree: every algorithm x (16 KiB, 1 MiB
# pcluster) x (dedupe off, on). The kernel decompresses each image and must
# show the source exactly; anole check reads every byte with its own
# decoders; anole extract must reproduce the source; fsck.erofs (Debian 1.5
# knows lz4 only) must accept the lz4 images. The same on a real root file
# system is t0301.
#
# The torture tree's 100,255 empty files in one directory cost most of each
# case's time (two tree walks, an extract) and hold no data, which is all
# compression changes: they are in the first case (zstd: fragments and
# dedupe on), the other 19 run without them.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/compress-case
. "$ROOT/tests/lib/compress-case"
need_root
need_erofs
need_cmd fsck.erofs

T=$TMP/torture
torture_tree "$T"
mktmpfs "$TMP/out"
# shellcheck disable=SC2034 # read by compress_case
CASE_EXTRACT=$TMP/out

compress_case zstd 16K torture "$T" --dedupe
[ "$(find "$T/many" -maxdepth 1 | wc -l)" -gt 100000 ] || fail "the torture tree has no big directory"
rm -rf "$T/many"

for algo in lz4 lz4hc deflate lzma zstd; do
	for pc in 16K 1M; do
		for dd in "" --dedupe; do
			[ "$algo $pc $dd" = "zstd 16K --dedupe" ] && continue
			compress_case "$algo" "$pc" torture-small "$T" $dd
		done
	done
done
