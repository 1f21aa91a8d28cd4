#!/bin/bash
# Bad input everywhere: one clear line on stderr, a non-zero exit, never a
# crash, and a failed build leaves no output file behind.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

mkdir -p "$TMP/src/d" "$TMP/out"
echo hi >"$TMP/src/d/f"

# expect_error EXPECTED-STATUS PATTERN CMD...: the exit status, one line on
# stderr containing PATTERN.
expect_error() {
	local want=$1 pat=$2 rc=0
	shift 2
	"$@" >"$TMP/stdout" 2>"$TMP/stderr" || rc=$?
	[ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$TMP/stderr")"
	[ "$(wc -l <"$TMP/stderr")" -le 1 ] || [ "$want" = 2 ] ||
		fail "'$*' printed more than one error line: $(cat "$TMP/stderr")"
	grep -q -- "$pat" "$TMP/stderr" || fail "'$*' error lacks '$pat': $(cat "$TMP/stderr")"
}

expect_error 2 "usage" "$ANOLE"
expect_error 2 "unknown command" "$ANOLE" frobnicate
expect_error 2 "usage" "$ANOLE" build "$TMP/src"
expect_error 2 "usage" "$ANOLE" build --bogus "$TMP/src" "$TMP/x.img"
expect_error 1 "cannot create output" "$ANOLE" build "$TMP/src" ""
expect_error 2 "not a UUID" "$ANOLE" build --uuid=xyz "$TMP/src" "$TMP/x.img"
expect_error 2 "longer than 16" "$ANOLE" build -L 12345678901234567 "$TMP/src" "$TMP/x.img"
expect_error 1 "choose lz4, lz4hc" "$ANOLE" build -z brotli "$TMP/src" "$TMP/x.img"
expect_error 1 "choose 1..22" "$ANOLE" build -z zstd:99 "$TMP/src" "$TMP/x.img"
expect_error 1 "choose 1..22" "$ANOLE" build -z zstd: "$TMP/src" "$TMP/x.img"
expect_error 1 "takes no level" "$ANOLE" build -z lz4:3 "$TMP/src" "$TMP/x.img"
expect_error 1 "pcluster size" "$ANOLE" build -z zstd --pcluster 3000 "$TMP/src" "$TMP/x.img"
expect_error 1 "pcluster size" "$ANOLE" build -z zstd --pcluster 4M "$TMP/src" "$TMP/x.img"
expect_error 2 "not a size" "$ANOLE" build -z zstd --pcluster lots "$TMP/src" "$TMP/x.img"
expect_error 2 "thread count" "$ANOLE" build -z zstd -j 0 "$TMP/src" "$TMP/x.img"
SOURCE_DATE_EPOCH=abc expect_error 2 "SOURCE_DATE_EPOCH" "$ANOLE" build "$TMP/src" "$TMP/x.img"

expect_error 1 "$TMP/nonexistent" "$ANOLE" build "$TMP/nonexistent" "$TMP/out/x.img"
expect_error 1 "not readable as a tar archive" "$ANOLE" build "$TMP/src/d/f" "$TMP/out/x.img"
expect_error 1 "cannot create output" "$ANOLE" build "$TMP/src" "$TMP/nodir/x.img"
[ -z "$(ls -A "$TMP/out")" ] || fail "failed builds left files: $(ls -A "$TMP/out")"

# An unreadable file makes the build fail (as root, simulate with a fifo
# turned file? use a directory we cannot read when not root).
if [ "$(id -u)" != 0 ]; then
	chmod 000 "$TMP/src/d"
	expect_error 1 "Permission denied" "$ANOLE" build "$TMP/src" "$TMP/out/x.img"
	chmod 755 "$TMP/src/d"
	[ -z "$(ls -A "$TMP/out")" ] || fail "failed build left files"
fi

# A previous image survives a failed build under the same name.
"$ANOLE" build -q "$TMP/src" "$TMP/out/keep.img"
cp "$TMP/out/keep.img" "$TMP/keep.orig"
expect_error 1 "not readable as a tar archive" "$ANOLE" build "$TMP/src/d/f" "$TMP/out/keep.img"
cmp "$TMP/out/keep.img" "$TMP/keep.orig" || fail "a failed build damaged the old image"

# Non-images and missing files.
head -c 8192 /dev/urandom >"$TMP/junk"
expect_error 1 "bad magic" "$ANOLE" check "$TMP/junk"
expect_error 1 "too small" "$ANOLE" check /dev/null
expect_error 1 "No such file" "$ANOLE" check "$TMP/nonexistent.img"
expect_error 1 "is a directory" "$ANOLE" check "$TMP/src"
expect_error 1 "bad magic" "$ANOLE" inspect "$TMP/junk"
expect_error 1 "no such file" "$ANOLE" inspect "$TMP/out/keep.img" /d/missing
expect_error 1 "not a directory" "$ANOLE" inspect "$TMP/out/keep.img" /d/f/x
expect_error 1 "bad magic" "$ANOLE" extract "$TMP/junk" "$TMP/ex"
expect_error 1 "bad magic" "$ANOLE" mount "$TMP/junk" "$TMP/src"

# extract refuses a non-empty target.
expect_error 1 "not empty" "$ANOLE" extract "$TMP/out/keep.img" "$TMP/src"

# mount needs a directory as the mount point.
expect_error 1 "not a directory" "$ANOLE" mount "$TMP/out/keep.img" "$TMP/src/d/f"
expect_error 1 "" "$ANOLE" umount "$TMP/src"

# libcurl and libarchive are loaded on first use: without them, what needs
# them fails with one line naming the library; the rest works.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	libpath() { ldconfig -p | awk -v l="$1" '$1 == l { print $NF; exit }'; }
	curl_so=$(libpath libcurl.so.4) archive_so=$(libpath libarchive.so.13)
	[ -n "$curl_so" ] && [ -n "$archive_so" ] || fail "ldconfig knows no libcurl.so.4 or libarchive.so.13"
	without_libs() {	# CMD... with both libraries an empty file
		unshare -m sh -c 'mount --bind /dev/null "$1" && mount --bind /dev/null "$2" && shift 2 && exec "$@"' \
			sh "$curl_so" "$archive_so" "$@"
	}
	expect_error 1 "libarchive.so.13" without_libs "$ANOLE" build "$TMP/src/d/f" "$TMP/out/nolib.img"
	expect_error 1 "libarchive.so.13" without_libs "$ANOLE" export "$TMP/out/keep.img" -o "$TMP/out/nolib.tar"
	expect_error 1 "libcurl.so.4" without_libs "$ANOLE" pull docker://127.0.0.1:9/x/y "$TMP/out/nolib"
	[ ! -e "$TMP/out/nolib.img" ] && [ ! -e "$TMP/out/nolib.tar" ] || fail "a failed load left output"
	without_libs "$ANOLE" build -q "$TMP/src" "$TMP/out/nolib.img" || fail "build from a directory needs no libarchive"
fi
echo ok
