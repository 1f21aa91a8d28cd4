#!/bin/bash
# The test harness itself: mktorture builds a tree, a faithful copy of it
# compares equal under treecmp, and treecmp catches each kind of mutation
# (so later tests that rely on "treecmp says 0 differences" mean something).
#
# The copy uses `cp -a --sparse=always` from one tmpfs to another: as root
# GNU cp keeps all xattr namespaces (security.capability, security.selinux,
# trusted.*, ACLs), hard links of every inode type, ns mtimes of symlinks
# and devices, sockets, and holes -- the treecmp run below checks it.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
case "${BUILD_DIR:-build}" in *asan*) skip "the harness does not depend on the build: checked in the plain suite" ;; esac
need_cmd python3 setfattr cp dd

A=$TMP/a B=$TMP/b C=$TMP/c

torture_tree "$A"
mktmpfs "$B"
cp -a --sparse=always "$A/." "$B/"
"$TREECMP" "$A" "$B" || fail "copy of the torture tree differs"

# The copy stayed sparse (a few KiB of data in 5 GiB).
blocks=$(stat -c %b "$B/sizes/sparse/5g")
[ "$blocks" -lt 1000 ] || fail "5g file not sparse in copy ($blocks blocks)"

# mktorture is deterministic: a second run gives an identical tree.
torture_tree "$C"
"$TREECMP" "$A" "$C" || fail "two mktorture runs differ"

# Usage errors exit 2.
rc=0; "$TREECMP" "$A" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "treecmp with one argument exited $rc, not 2"
rc=0; "$TREECMP" "$A" "$TMP/nonexistent" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "treecmp on a missing dir exited $rc, not 2"

# mutate DESCRIPTION EXPECTED-LINE-PREFIX: after a mutation of $B, treecmp
# must exit 1 and report it.  Mutations accumulate, so match the specific
# line, not just the exit status.
mutate() {
	local rc=0
	"$TREECMP" --max-report 1000000 "$A" "$B" >"$TMP/cmp.out" 2>&1 || rc=$?
	[ "$rc" = 1 ] || { cat "$TMP/cmp.out"; fail "$1: treecmp exited $rc, not 1"; }
	grep -qF -- "$2" "$TMP/cmp.out" || { cat "$TMP/cmp.out"; fail "$1: no '$2'"; }
	echo "detected $1: $(grep -F -- "$2" "$TMP/cmp.out" | head -n 1)"
}

chmod 0600 "$B/modes/f0644"
mutate "chmod" "DIFF mode modes/f0644: 0100644 != 0100600"

touch -h -d '2001-02-03 04:05:06.7' "$B/types/sym-short"
mutate "touch -h on a symlink" "DIFF mtime types/sym-short: 1700000000.123456789 != 981173106.700000000"

setfattr -h -n user.b -v changed "$B/xattrs/many"
mutate "xattr value" "DIFF xattr xattrs/many: user.b value differs"

printf 'X' | dd of="$B/sizes/rand-4097" bs=1 seek=4096 conv=notrunc status=none
mutate "content byte" "DIFF content sizes/rand-4097: first difference at byte 4096"

# A byte written into a hole of A: B now has data there.
printf 'Y' | dd of="$B/sizes/sparse/5g" bs=1 seek=$((4 * 1024 ** 3 + 300 * 1024 ** 2)) conv=notrunc status=none
mutate "byte in a hole" "DIFF content sizes/sparse/5g: first difference at byte $((4 * 1024 ** 3 + 300 * 1024 ** 2))"

cp -a "$B/links/d2/hl-b" "$B/links/d2/hl-b.new"
mv "$B/links/d2/hl-b.new" "$B/links/d2/hl-b"
mutate "broken hard link" "DIFF hardlinks links/d1/hl-a: {links/d1/hl-a, links/d2/hl-b, links/d2/sub/hl-c} != {links/d1/hl-a, links/d2/sub/hl-c}"

echo "harness ok"
