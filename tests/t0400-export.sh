#!/bin/bash
# anole export: the torture tree (plus a 9 GiB sparse file and ACLs naming
# ids past 2^31) through build -> export -> GNU tar -x must equal the
# source, except for what tar cannot hold (documented in docs/CLI.md);
# the tar is byte-identical whether written to a file or stdout, run twice
# or taken from a zstd image; errors are one line and leave no file; a
# corrupt image never crashes or hangs export; no leaks under valgrind.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_cmd tar python3
tar --version 2>/dev/null | head -n 1 | grep -q 'GNU tar' || skip "needs GNU tar"

SRC=$TMP/src OUT=$TMP/out
torture_tree "$SRC"
# Past the 8 GiB ustar size limit, with data straddling 2^33.
mkdir "$SRC/export"
python3 - "$SRC/export" <<'PY'
import os, struct, sys
d = sys.argv[1].encode()
fd = os.open(d + b'/9g', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.ftruncate(fd, 9 * 2**30 + 17)
os.pwrite(fd, b'head' * 1024, 0)
os.pwrite(fd, os.urandom(10000), 2**33 - 5000)
os.pwrite(fd, b'end of 9g', 9 * 2**30 + 8)
os.close(fd)
# An access ACL naming a uid and a gid above 2^31 - 1 (libarchive keeps
# ACL ids in an int).
def acl(entries):
    return struct.pack('<I', 2) + b''.join(struct.pack('<HHI', t, p, i & 0xffffffff)
                                           for t, p, i in entries)
f = d + b'/acl-bigid'
open(f, 'wb').write(b'acl with big ids\n')
os.setxattr(f, 'system.posix_acl_access', acl([
    (1, 6, -1), (2, 7, 3000000000), (4, 4, -1), (8, 5, 4294967294),
    (0x10, 7, -1), (0x20, 4, -1)]))
os.utime(f, ns=(1700000000123456789, 1700000000123456789))
PY

"$ANOLE" build -q "$SRC" "$TMP/a.img" || fail "build failed"
"$ANOLE" build -q -z zstd "$SRC" "$TMP/z.img" || fail "zstd build failed"

# To a file: the two sockets are left out with one warning line.
"$ANOLE" export "$TMP/a.img" -o "$TMP/a.tar" 2>"$TMP/export.err" || {
	cat "$TMP/export.err"; fail "export failed"; }
one_line() { [ "$(wc -l <"$1")" = 1 ] && grep -q -- "$2" "$1"; }	# one_line FILE PATTERN
one_line "$TMP/export.err" 'warning: left out 2 sockets' ||
	fail "expected one warning about 2 sockets, got: $(cat "$TMP/export.err")"
"$ANOLE" export -q "$TMP/a.img" -o "$TMP/again.tar" 2>"$TMP/export.err" || fail "second export failed"
[ ! -s "$TMP/export.err" ] || fail "-q still printed: $(cat "$TMP/export.err")"
cmp "$TMP/a.tar" "$TMP/again.tar" || fail "two exports of the same image differ"
"$ANOLE" export -q "$TMP/a.img" -o - >"$TMP/stdout.tar" || fail "export to stdout failed"
cmp "$TMP/a.tar" "$TMP/stdout.tar" || fail "export to stdout differs from export to a file"
"$ANOLE" export -q "$TMP/z.img" --output="$TMP/z.tar" || fail "export of the zstd image failed"
cmp "$TMP/a.tar" "$TMP/z.tar" || fail "zstd and uncompressed images export differently"
for f in "$TMP"/*anole-tmp*; do [ -e "$f" ] && fail "temporary file left behind: $f"; done
echo "tar: $(stat -c %s "$TMP/a.tar") bytes"

# GNU tar restores it. It warns about the time stamps of times/ (too old,
# in the future) and about pax keywords it does not know (hdrcharset for
# names that are not UTF-8, SCHILY.devminor); those are warnings only.
mktmpfs "$OUT"
tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -f "$TMP/a.tar" -C "$OUT" \
	2>"$TMP/tar.err" || { tail -n 20 "$TMP/tar.err"; fail "GNU tar could not extract the export"; }
rc=0
"$TREECMP" --max-report 1000 "$SRC" "$OUT" >"$TMP/cmp.out" 2>&1 || rc=$?
[ "$rc" -le 1 ] || { cat "$TMP/cmp.out"; fail "treecmp failed"; }
# The only differences: sockets, and mtimes between -1 s and 0 (pax as
# libarchive writes it cannot express them; they become -1 s).
grep '^DIFF' "$TMP/cmp.out" >"$TMP/cmp.diffs" || true
cat >"$TMP/cmp.expected" <<'EOF'
DIFF mtime times/dir-minus-1s: -1.000000001 != -1.000000000
DIFF mtime times/f-minus-1ns: -1.999999999 != -1.000000000
DIFF mtime times/f-minus-1s-with-ns: -1.250000000 != -1.000000000
DIFF mtime times/fifo-minus-1ns: -1.999999999 != -1.000000000
DIFF missing types/sock: only in A
DIFF missing xattrs/sock: only in A
EOF
diff -u "$TMP/cmp.expected" "$TMP/cmp.diffs" || fail "extracted tree differs from the source"
tail -n 1 "$TMP/cmp.out"
# Holes stayed holes (sparse entries), past 8 GiB too.
for f in sizes/sparse/5g export/9g; do
	blocks=$(stat -c %b "$OUT/$f")
	[ "$blocks" -lt 2000 ] || fail "$f is not sparse after extraction ($blocks blocks)"
done
[ "$(stat -c %s "$OUT/export/9g")" = $((9 * 1024 * 1024 * 1024 + 17)) ] || fail "9g: wrong size"

# Errors: one line, non-zero exit, no file left.
expect_fail "$ANOLE" export "$TMP/missing.img" -o "$TMP/m.tar"
one_line "$TMP/last.err" 'missing.img' ||
	fail "missing image: not one line naming it: $(cat "$TMP/last.err")"
[ ! -e "$TMP/m.tar" ] || fail "missing image: m.tar was created"
rc=0; "$ANOLE" export "$TMP/a.img" 2>"$TMP/last.err" || rc=$?
[ "$rc" = 2 ] || fail "missing -o: exit $rc, not 2"
one_line "$TMP/last.err" '-o FILE' ||
	fail "missing -o: not one line naming -o: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" export "$TMP/a.img" -o "$TMP/no/such/dir/x.tar"
[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "bad output dir: $(cat "$TMP/last.err")"
# A full disk: the existing file is kept, nothing else appears.
mktmpfs "$TMP/small" 1m
echo old >"$TMP/small/x.tar"
expect_fail "$ANOLE" export -q "$TMP/a.img" -o "$TMP/small/x.tar"
grep -q 'No space left' "$TMP/last.err" || fail "full disk: $(cat "$TMP/last.err")"
[ "$(cat "$TMP/small/x.tar")" = old ] || fail "full disk: the old x.tar was damaged"
[ "$(ls "$TMP/small")" = x.tar ] || fail "full disk: left behind: $(ls "$TMP/small")"

# A small image for the corruption and valgrind runs.
S=$TMP/s
mkdir -p "$S/d/sub" "$S/many"
for i in $(seq 1 300); do printf 'file %s\n' "$i" >"$S/many/entry-with-a-longish-name-$i"; done
head -c 100000 /dev/urandom >"$S/d/big"
echo tail >"$S/d/sub/small"
ln -s ../d/big "$S/link"
ln "$S/d/big" "$S/hard"
truncate -s 10M "$S/sparse" && echo x | dd of="$S/sparse" bs=1 seek=5000000 conv=notrunc status=none
mkfifo "$S/fifo"
setfattr -n user.a -v 1 "$S/d" 2>/dev/null || true
setfattr -n trusted.b -v 2 "$S/d/big" 2>/dev/null || true
"$ANOLE" build -q "$S" "$TMP/small.img" || fail "build of the small tree failed"

# Flipped metadata bytes: exit 0 or 1 with one line, never a signal or a
# hang, and a tar only on success.
meta=$("$ANOLE" inspect --json "$TMP/small.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["meta_blkaddr"])')
mkdir -p "$TMP/flips" "$TMP/ft"
python3 - "$TMP/small.img" "$meta" "$TMP/flips" <<'PY'
import random, sys
img, meta, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
good = open(img, 'rb').read()
rng = random.Random(4000)   # fixed seed: failures reproduce
for i in range(80):
    b = bytearray(good)
    off = rng.randrange(meta * 4096, len(b))
    b[off] ^= rng.randrange(1, 256)
    open(f"{out}/{i:03d}-{off}.img", 'wb').write(b)
PY
failed=0
for img in "$TMP"/flips/*.img; do
	t=$TMP/ft/$(basename "$img" .img).tar
	rc=0
	timeout 20 "$ANOLE" export -q "$img" -o "$t" >/dev/null 2>"$TMP/flip.err" || rc=$?
	[ "$rc" -le 1 ] || fail "export of $(basename "$img") died or hung (exit $rc): $(cat "$TMP/flip.err")"
	if [ "$rc" = 1 ]; then
		failed=$((failed + 1))
		[ "$(wc -l <"$TMP/flip.err")" = 1 ] || fail "$(basename "$img"): error not one line: $(cat "$TMP/flip.err")"
		[ ! -e "$t" ] || fail "$(basename "$img"): failed export left $t"
	fi
done
for f in "$TMP"/ft/*; do
	case $f in *.tar) ;; *) [ -e "$f" ] && fail "temporary file left: $f" ;; esac
done
echo "corrupt images: $failed of 80 refused, the rest exported"

if command -v valgrind >/dev/null 2>&1 && [[ "${BUILD_DIR:-build}" != *asan* ]]; then
	valgrind -q --leak-check=full --show-leak-kinds=definite,indirect,possible \
		--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
		"$ANOLE" export -q "$TMP/small.img" -o "$TMP/vg.tar" >"$TMP/vg.log" 2>&1 ||
		{ cat "$TMP/vg.log"; fail "valgrind: export"; }
	"$ANOLE" export -q "$TMP/small.img" -o "$TMP/plain.tar"
	cmp "$TMP/vg.tar" "$TMP/plain.tar" || fail "export under valgrind differs"
	echo "valgrind clean"
fi
