# shellcheck shell=bash
# Sourced by tests/tNNNN-*.sh:  . "$(dirname "$0")/lib/common.sh"
#
# Provides ROOT, ANOLE, TMP (removed on exit, after unmounting whatever was
# mounted below it) and helpers.  Exit status protocol, as tests/run expects:
# 0 pass, 77 skip (last output line = reason), anything else fail.
set -eu

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ANOLE=${ANOLE:-build/anole}
case $ANOLE in /*) ;; *) ANOLE=$ROOT/$ANOLE ;; esac
# shellcheck disable=SC2034  # for the tests that source us
TREECMP=$ROOT/tests/lib/treecmp
MKTORTURE=$ROOT/tests/lib/mktorture

TMP=$(mktemp -d "${TMPDIR:-/tmp}/anole-test.XXXXXX")
_MOUNTS=()	# mount points made by mktmpfs, also unmounted if outside $TMP

# Mount points at or below $1, deepest first (mountinfo field 5 is the
# mount point, octal-escaped; our paths contain no spaces).
_mounts_under() {
	awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r
}

_cleanup() {
	local rc=$? m
	set +e
	cd /
	# Repeat: mounts can be stacked on one mount point.
	for _ in 1 2 3 4 5; do
		local left=
		for m in $(_mounts_under "$TMP") "${_MOUNTS[@]}"; do
			grep -q " $m " /proc/self/mountinfo || continue
			left=1
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		done
		[ -z "$left" ] && break
	done
	if [ -n "$(_mounts_under "$TMP")" ]; then
		# Never rm -rf into something still mounted.
		echo "common.sh: cannot unmount below $TMP, leaving it" >&2
	else
		rm -rf --one-file-system "$TMP"
	fi
	exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

skip() { echo "$*" >&2; exit 77; }	# stderr: works inside $(...) too
fail() { echo "FAIL: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }

need_cmd() {
	local c
	for c; do
		command -v "$c" >/dev/null 2>&1 || skip "needs command: $c"
	done
}

need_erofs() {
	grep -qw erofs /proc/filesystems && return 0
	modprobe -q erofs 2>/dev/null || true	# it may just not be loaded yet
	grep -qw erofs /proc/filesystems || skip "kernel has no erofs support"
}

need_fanotify() {
	"$ROOT/tests/lib/fanotify-probe" || skip "this kernel has no fanotify pre-content events (FAN_PRE_ACCESS)"
}

# mktmpfs DIR [SIZE]: tmpfs (with user xattr support, kernel >= 6.6) at DIR.
mktmpfs() {
	need_root
	mkdir -p "$1"
	mount -t tmpfs -o "size=${2:-8g},mode=0755,huge=never" anole-test "$1"
	_MOUNTS+=("$(cd "$1" && pwd -P)")
}

# expect_fail CMD...: CMD must fail cleanly (exit 1..127, not a signal).
expect_fail() {
	local rc=0
	"$@" 2>"$TMP/last.err" || rc=$?
	[ "$rc" != 0 ] || fail "expected failure but succeeded: $*"
	[ "$rc" -lt 128 ] || fail "exit $rc (crash/signal?): $*; stderr: $(tail -n 5 "$TMP/last.err")"
}

# torture_tree DIR: fresh tmpfs at DIR holding the torture tree.
torture_tree() {
	mktmpfs "$1"
	"$MKTORTURE" "$1"
}

# rootfs: print the cached Debian minbase rootfs (also sets ROOTFS), or
# skip.  Use as `R=$(rootfs)` (a skip then exits the test with 77) or
# `rootfs >/dev/null; use "$ROOTFS"`.
rootfs() {
	ROOTFS=$("$ROOT/tests/lib/rootfs-cache" 2>"$TMP/rootfs.err") ||
		skip "no Debian rootfs: $(tail -n 1 "$TMP/rootfs.err")"
	echo "$ROOTFS"
}

# image_matches IMAGE TREE WHAT: mount IMAGE at $TMP/mnt (anole mount) and
# compare it with TREE through treecmp; fail with WHAT and the differences.
image_matches() {
	local mnt=$TMP/mnt
	mkdir -p "$mnt"
	"$ANOLE" mount "$1" "$mnt" || fail "$3: mount failed"
	"$TREECMP" "$2" "$mnt" >"$TMP/cmp.log" 2>&1 || {
		cat "$TMP/cmp.log"
		"$ANOLE" umount "$mnt"
		fail "$3: kernel view differs from $2"
	}
	"$ANOLE" umount "$mnt"
}

# stack_matches DIR TREE WHAT: the images DIR/*.erofs (0001.erofs at the
# bottom, as `build --layers=separate` writes them) stacked with overlayfs
# at $TMP/mnt equal TREE, link counts aside (overlayfs shows a lower
# layer's, not what is left of it). One image is compared alone:
# overlayfs needs two lower layers.
stack_matches() {
	local mnt=$TMP/mnt lower="" i
	set -- "$@" "$1"/*.erofs
	if [ $# = 4 ]; then
		image_matches "$4" "$2" "$3"
		return
	fi
	mkdir -p "$mnt"
	for i in "${@:4}"; do
		mkdir -p "$i.mnt"
		"$ANOLE" mount "$i" "$i.mnt" || fail "$3: mount $i failed"
		lower=$i.mnt${lower:+:$lower}
	done
	mount -t overlay overlay -o "lowerdir=$lower" "$mnt" || fail "$3: overlay mount failed"
	"$TREECMP" --no-nlink "$2" "$mnt" >"$TMP/cmp.log" 2>&1 || {
		cat "$TMP/cmp.log"
		umount "$mnt"
		fail "$3: overlayfs stack of separate layers differs from $2"
	}
	umount "$mnt"
	for i in "${@:4}"; do "$ANOLE" umount "$i.mnt"; done
}
