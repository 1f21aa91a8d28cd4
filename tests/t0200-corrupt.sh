#!/bin/bash
# Corrupted images: anole check must answer exit 1 with one line for
# damage it can see (superblock, truncation, directory structure), and for
# any flipped metadata byte exit 0 or 1 -- never a signal, a hang, or a
# write outside the extraction target.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd python3

SRC=$TMP/src
mkdir -p "$SRC/d/sub" "$SRC/many"
for i in $(seq 1 400); do printf 'file %s\n' "$i" >"$SRC/many/entry-with-a-longish-name-$i"; done
head -c 100000 /dev/urandom >"$SRC/d/big"
echo tail >"$SRC/d/sub/small"
ln -s ../d/big "$SRC/link"
ln "$SRC/d/big" "$SRC/hard"
truncate -s 10M "$SRC/sparse" && echo x | dd of="$SRC/sparse" bs=1 seek=5000000 conv=notrunc status=none
setfattr -n user.a -v 1 "$SRC/d" 2>/dev/null || true
setfattr -n user.b -v 2 "$SRC/d/big" 2>/dev/null || true
setfattr -n user.b -v 2 "$SRC/d/sub/small" 2>/dev/null || true

"$ANOLE" build -q "$SRC" "$TMP/good.img" || fail "build failed"
"$ANOLE" check -q "$TMP/good.img" || fail "check rejected the good image"

# run_check IMG: exit status of anole check, failing the test on a signal
# or a hang; the error must be exactly one line.
run_check() {
	local rc=0
	timeout 20 "$ANOLE" check -q "$1" >"$TMP/out" 2>"$TMP/err" || rc=$?
	[ "$rc" -lt 124 ] || fail "check on $1 died or hung (exit $rc): $(cat "$TMP/err")"
	[ "$rc" -le 1 ] || fail "check on $1 exited $rc"
	if [ "$rc" = 1 ]; then
		[ "$(wc -l <"$TMP/err")" = 1 ] || fail "check error is not one line: $(cat "$TMP/err")"
	fi
	return "$rc"
}

corrupt() { # corrupt IMG OFFSET XOR -> new image
	python3 - "$@" <<'PY'
import sys
src, off, x, dst = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0), sys.argv[4]
b = bytearray(open(src, 'rb').read())
b[off] ^= x
open(dst, 'wb').write(b)
PY
}

# Known damage that must be caught.
for off in 1024 1025 1036 1060 1064; do
	corrupt "$TMP/good.img" $off 0x40 "$TMP/bad.img"
	run_check "$TMP/bad.img" && fail "superblock byte $off flipped: check said ok"
done
grep -q "checksum" "$TMP/err" || fail "superblock damage not reported as a checksum error: $(cat "$TMP/err")"
size=$(stat -c %s "$TMP/good.img")
for cut in 0 1000 4096 $((size / 2)) $((size - 4096)) $((size - 1)); do
	head -c "$cut" "$TMP/good.img" >"$TMP/bad.img"
	run_check "$TMP/bad.img" && fail "image truncated to $cut bytes: check said ok"
done

# Directory damage: the first dirent's nameoff of the multi-block dir.
blk=$("$ANOLE" inspect --json "$TMP/good.img" /many | python3 -c 'import json,sys; print(json.load(sys.stdin)["start_block"])')
corrupt "$TMP/good.img" $((blk * 4096 + 8)) 0x05 "$TMP/bad.img"
run_check "$TMP/bad.img" && fail "dirent nameoff corrupted: check said ok"

# Random flips across the metadata area: any answer but a crash.
meta=$("$ANOLE" inspect --json "$TMP/good.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["meta_blkaddr"])')
mkdir -p "$TMP/flips"
python3 - "$TMP/good.img" "$meta" "$TMP/flips" <<'PY'
import random, sys
img, meta, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
good = open(img, 'rb').read()
rng = random.Random(1234)   # fixed seed: failures reproduce
for i in range(150):
    b = bytearray(good)
    off = rng.randrange(meta * 4096, len(b))
    b[off] ^= rng.randrange(1, 256)
    open(f"{out}/{i:03d}-{off}.img", 'wb').write(b)
PY
mktmpfs "$TMP/x"
caught=0
for bad in "$TMP"/flips/*.img; do
	run_check "$bad" || caught=$((caught + 1))
	rc=0; timeout 20 "$ANOLE" inspect "$bad" /d >/dev/null 2>&1 || rc=$?
	[ "$rc" -lt 124 ] || fail "inspect died on $(basename "$bad") (exit $rc)"
	mkdir "$TMP/x/t"
	rc=0; timeout 20 "$ANOLE" extract --no-owner -q "$bad" "$TMP/x/t/out" >/dev/null 2>&1 || rc=$?
	[ "$rc" -lt 124 ] || fail "extract died on $(basename "$bad") (exit $rc)"
	[ "$(ls -A "$TMP/x/t")" = out ] || [ -z "$(ls -A "$TMP/x/t")" ] || fail "extract wrote outside its target"
	[ "$(ls -A "$TMP/x")" = t ] || fail "extract wrote outside its target"
	rm -rf "$TMP/x/t"
done
echo "random metadata flips: $caught of 150 detected, none crashed"

# Compressed images: corrupt compressed data is found by check (exit 1,
# naming the file) and never crashes any command.
for algo in zstd lz4 lzma deflate; do
	"$ANOLE" build -q -z $algo "$SRC" "$TMP/z.img" || fail "build -z $algo"
	"$ANOLE" check -q "$TMP/z.img" || fail "check rejected a good -z $algo image"
	zsize=$(stat -c %s "$TMP/z.img")
	mkdir -p "$TMP/zflips"
	python3 - "$TMP/z.img" "$TMP/zflips" $algo <<'PY'
import random, sys
img, out, algo = sys.argv[1], sys.argv[2], sys.argv[3]
good = open(img, 'rb').read()
rng = random.Random(algo)
for i in range(40):
    b = bytearray(good)
    off = rng.randrange(4096, len(b))
    b[off] ^= rng.randrange(1, 256)
    open(f"{out}/{algo}-{i:03d}-{off}.img", 'wb').write(b)
PY
	for bad in "$TMP"/zflips/$algo-*.img; do
		run_check "$bad" || true
		rc=0; timeout 20 "$ANOLE" extract --no-owner -q "$bad" "$TMP/x/zt" >/dev/null 2>&1 || rc=$?
		[ "$rc" -lt 124 ] || fail "extract died on $(basename "$bad") (exit $rc)"
		rm -rf "$TMP/x/zt"
	done
done
# zstd frames carry a checksum: a flipped byte in the first pcluster (that
# of a compressible file bigger than a pcluster, written first) is seen.
mkdir -p "$TMP/zsrc"
for i in $(seq 1 60000); do echo "line $i of a compressible file"; done >"$TMP/zsrc/text"
"$ANOLE" build -q -z zstd "$TMP/zsrc" "$TMP/z.img"
corrupt "$TMP/z.img" $((4096 + 4000)) 0x01 "$TMP/bad.img"
run_check "$TMP/bad.img" && fail "corrupt zstd data: check said ok"
grep -q "compressed" "$TMP/err" || fail "corrupt zstd data not named: $(cat "$TMP/err")"
cat "$TMP/err"
# The superblock's algorithms and their records, checked as Linux checks
# them: extents of an algorithm it does not list, a zstd window past a
# pcluster (the checksum made right, so the field is what is wrong).
resum() { # resum IMG OFFSET BYTE -> new image, superblock checksum redone
	python3 - "$@" <<'PY'
import sys
src, off, v, dst = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0), sys.argv[4]
b = bytearray(open(src, 'rb').read())
b[off] = v
crc = 0xffffffff
for i, c in enumerate(b[1024:4096]):
    crc ^= 0 if 4 <= i < 8 else c
    for _ in range(8):
        crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
b[1028:1032] = crc.to_bytes(4, 'little')
open(dst, 'wb').write(b)
PY
}
resum "$TMP/z.img" 1108 0 "$TMP/bad.img"
run_check "$TMP/bad.img" && fail "zstd extents in an image listing no algorithm: check said ok"
grep -q "algorithm 3 is not among the superblock's" "$TMP/err" ||
	fail "unlisted algorithm not named: $(cat "$TMP/err")"
resum "$TMP/z.img" 1155 11 "$TMP/bad.img"
run_check "$TMP/bad.img" && fail "a zstd window of 2 MiB: check said ok"
grep -q "zstd configuration" "$TMP/err" || fail "zstd window not named: $(cat "$TMP/err")"
resum "$TMP/z.img" 1155 10 "$TMP/good2.img"
run_check "$TMP/good2.img" || fail "the same image with its own checksum redone: $(cat "$TMP/err")"

# Hand-made sound images (tests/fixtures/crafted): two files share one
# interlaced plain pcluster at different offsets within a block; the second
# file must read the same whether or not the first was read just before
# (a cached decode of the pcluster is only good for the same offset).
C=$ROOT/tests/fixtures/crafted
"$ANOLE" extract -q "$C/interlaced-shared-ab.img" "$TMP/ab" || fail "extract of interlaced-shared-ab failed"
"$ANOLE" extract -q "$C/interlaced-shared-b.img" "$TMP/b" || fail "extract of interlaced-shared-b failed"
cmp "$TMP/ab/b" "$TMP/b/b" || fail "file b of one interlaced pcluster reads differently after file a"
