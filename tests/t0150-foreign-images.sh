#!/bin/bash
# Images made by other tools: mkfs.erofs 1.9.3 in every layout the kernel
# reads (tests/fixtures/erofs: committed, as CI has only Debian's 1.5; see
# COMMANDS there), and images this test makes with Debian's mkfs.erofs 1.5.
# Each is mounted by the kernel, file-backed with its extra devices as
# device= files (tests/lib/fmount), and that view is the truth: `anole
# check` must accept the image; `anole extract`, `anole export` (untarred
# by GNU tar with xattrs, as root) and `anole mount --fuse` (anole's own
# reader behind the daemon) must each give the kernel's tree, entry by
# entry and byte by byte (treecmp). Extra devices are passed to anole in
# device-table order with --device=PATH. One line per image; on failure
# the differences follow it. An image the kernel here does not mount is
# skipped with a line saying so. (The kernel mounts them all in one
# process and one treecmp run compares the three trees of an image: a
# Python start costs more than the comparison.)
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

# What today's reader cannot do yet: NAME (every step) or NAME:STEP, shell
# patterns; steps are check extract export fuse. A listed step that fails
# is logged as known; one that passes is logged too, to be taken off. Of an
# image listed whole whose check fails, the rest is not run. The reader
# work removes this list.
# metabox images: the kernel's view is wrong there, so the comparison with
# it fails and the source tree is the truth (checked below). mkfs.erofs
# 1.9.3 keeps their shared xattrs in block 0 of the image (no
# SHARED_EA_IN_METABOX flag), and Linux 6.18 does not list the shared
# security.selinux of `a` and `big.txt` (and its hard link a/hard-big),
# which the tree (fixtures/erofs/mktree) gives them; it lists that of
# a/head.txt. (Likely: for an inode kept in the metabox it looks the
# shared entry up in the metabox page it already holds, of the same
# index.) anole reads block 0 of the image, as the format says.
KNOWN_FAIL="metabox:extract metabox:export metabox:fuse metabox-lz4:extract metabox-lz4:export metabox-lz4:fuse"

need_root
need_erofs
need_cmd zstd tar python3 getfattr
tar --version 2>/dev/null | head -n 1 | grep -q 'GNU tar' || skip "needs GNU tar"
FMOUNT=$ROOT/tests/lib/fmount
FIX=$ROOT/tests/fixtures/erofs

I=$TMP/images K=$TMP/kernel F=$TMP/fuse W=$TMP/work
# A daemon for the FUSE mounts, with its state under $TMP; it ends once
# nothing is mounted, and surely on any exit.
export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
daemon_kill() {
	local m f pid pids=()
	for m in $(_mounts_under "$F"); do "$ANOLE" umount "$m" 2>/dev/null; done
	# all at once (a daemon process left alive may restart the others), and
	# ours only: a stale file may name a pid taken since
	for f in keeper.pid holder.pid daemon.pid; do
		pid=$(cat "$ANOLE_RUNTIME_DIR/$f" 2>/dev/null) || continue
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q anole && pids+=("$pid")
	done
	[ ${#pids[@]} = 0 ] || kill -9 "${pids[@]}" 2>/dev/null
}
on_exit() {
	local rc=$?
	set +e
	daemon_kill
	(exit $rc)
	_cleanup
}
trap on_exit EXIT

mkdir -p "$I" "$K" "$F"
mktmpfs "$W" 1g	# extract and tar need xattrs of every namespace
zstd -dc --long=27 "$FIX/images.tar.zst" | tar -x -C "$I" || fail "cannot unpack $FIX/images.tar.zst"

# NAME<TAB>WHAT for every image, in order
list=$TMP/list
# (the options: what follows the UUID, up to the image's name)
sed -n 's/^\([A-Za-z0-9-]*\): .* -U [0-9a-f-]* \(.*\)\1\.img.*$/\1\tmkfs.erofs 1.9.3 \2/p' \
	"$FIX/COMMANDS" | sed 's/ *$//' >"$list"
[ "$(wc -l <"$list")" = "$(grep -c '^[A-Za-z0-9-]*: ' "$FIX/COMMANDS")" ] || fail "cannot read $FIX/COMMANDS"
while IFS=$'\t' read -r name _; do
	[ -f "$I/$name.img" ] || fail "$name: in COMMANDS, not in images.tar.zst"
done <"$list"

# Debian's mkfs.erofs 1.5 on a tree of the same kind, with the options it has.
M15=/usr/bin/mkfs.erofs
if [ -x "$M15" ]; then
	mktmpfs "$TMP/tree" 64m
	"$FIX/mktree" --mkfs15 "$TMP/tree" || fail "mktree failed"
	v15() {	# v15 NAME OPTIONS...
		local name=v15-$1 o e
		shift
		# it ignores -E options it does not know: look for their names
		for o in "$@"; do
			[[ $o == -E* ]] || continue
			o=${o#-E}
			for e in ${o//,/ }; do
				grep -qaw -- "${e#^}" "$M15" ||
					{ echo "$name: skipped, mkfs.erofs 1.5 has no -E$e"; return 0; }
			done
		done
		if "$M15" -T1700000000 --preserve-mtime -U 6c0b3e2a-5f5d-4b1e-9d4e-0a1b2c3d4e5f "$@" \
			"$I/$name.img" "$TMP/tree" >"$TMP/mkfs.log" 2>&1; then
			printf '%s\tmkfs.erofs 1.5 %s\n' "$name" "$*" >>"$list"
		else
			fail "mkfs.erofs 1.5 $* failed: $(tr '\r' '\n' <"$TMP/mkfs.log" | grep -v '^ *$' | tail -n 1)"
		fi
	}
	v15 plain
	v15 lz4 -zlz4
	v15 lz4hc -zlz4hc
	v15 lz4hc-ztail -zlz4hc -Eztailpacking
	v15 lz4-dedupe -zlz4 -Ededupe
	v15 lz4-legacy -zlz4 -Elegacy-compress
	v15 lz4hc-64k -zlz4hc -C65536
	v15 chunk --chunksize=4096
else
	echo "mkfs.erofs 1.5: skipped, $M15 is missing"
fi

known() {	# known NAME STEP: listed in KNOWN_FAIL
	local e
	for e in $KNOWN_FAIL; do
		# shellcheck disable=SC2053 # the entries are patterns
		[[ $1 == $e || $1:$2 == $e ]] && return 0
	done
	return 1
}

# The kernel's mounts, all at once (one process): $K/NAME.
while IFS=$'\t' read -r im _; do
	mkdir "$K/$im"
	dev=''
	[ -f "$I/$im.dev1" ] && dev=$I/$im.dev1
	echo "$I/$im.img $K/$im $dev"
done <"$list" | "$FMOUNT" - 2>"$TMP/kmount.err" || true

# The steps: each leaves its output in $TMP/STEP.out, its exit status in
# ST[STEP], and extract, export and FUSE their trees at TREE[STEP].
declare -A ST TREE=([extract]=$W/x [export]=$W/t [fuse]=$F)
run() {	# run STEP CMD...
	local s=$1
	shift
	ST[$s]=0
	"$@" >"$TMP/$s.out" 2>&1 || ST[$s]=$?
	sed -i "s|$I/||g" "$TMP/$s.out"
}
do_check() { "$ANOLE" check -q "${DEV[@]}" "$img"; }
do_extract() { "$ANOLE" extract -q "${DEV[@]}" "$img" "$W/x"; }
do_export() {
	"$ANOLE" export -q "${DEV[@]}" "$img" -o "$W/t.tar" && mkdir "$W/t" &&
		tar -x --xattrs --xattrs-include='*' --acls --numeric-owner -p -f "$W/t.tar" -C "$W/t"
}
do_fuse() { "$ANOLE" mount --fuse "${DEV[@]}" "$img" "$F"; }

# compare NAME: the trees of the steps that succeeded against the kernel's,
# in one treecmp run; a step whose tree differs fails with the differences.
compare() {
	local name=$1 s bs=()
	for s in extract export fuse; do
		[ "${ST[$s]:-1}" = 0 ] && bs+=("${TREE[$s]}")
	done
	[ ${#bs[@]} -gt 0 ] || return 0
	"$TREECMP" --max-report 20 "$K/$name" "${bs[@]}" >"$TMP/cmp.out" 2>&1 || true
	rm -f "$TMP"/*.cmp
	# (one tree: no header line before its report)
	awk -v d="$TMP" -v x="${TREE[extract]}" -v t="${TREE[export]}" -v f="${TREE[fuse]}" -v one="${bs[0]}" '
		NR == 1 && $0 != "treecmp: " one { o = (one == x ? "extract" : one == t ? "export" : "fuse") }
		$0 == "treecmp: " x { o = "extract"; next }
		$0 == "treecmp: " t { o = "export"; next }
		$0 == "treecmp: " f { o = "fuse"; next }
		{ print > (d "/" o ".cmp") }' "$TMP/cmp.out"
	for s in extract export fuse; do
		[ "${ST[$s]:-1}" = 0 ] || continue
		tail -n 1 "$TMP/$s.cmp" | grep -q '^treecmp: 0 differences' && continue
		ST[$s]=1
		cp "$TMP/$s.cmp" "$TMP/$s.out"
	done
}

# verdict NAME STEP: what came of a step, in $line; an unexpected failure
# in $bad and $details, the first known failure's message in $why
verdict() {
	local name=$1 s=$2
	if [ -z "${ST[$s]:-}" ]; then
		return
	elif [ "${ST[$s]}" = 0 ]; then
		known "$name" "$s" && { line+=" $s:ok(listed)"; newpass+=" $name:$s"; return; }
		line+=" $s:ok"
	elif known "$name" "$s"; then
		line+=" $s:known"
		[ -n "$why" ] || why="$s: $(grep -v '^$' "$TMP/$s.out" | tail -n 1 | cut -c1-160)"
	else
		line+=" $s:FAILED"
		bad+=" $name:$s"
		details+=$(printf '\n%s %s (exit %s):\n%s' "$name" "$s" "${ST[$s]}" \
			"$(head -n 25 "$TMP/$s.out" | sed 's/^/    /')")
	fi
}

bad='' newpass='' details='' knownlog='' why=''
n=0 skipped=0
while IFS=$'\t' read -r name what <&3; do	# (the steps keep stdin)
	img=$I/$name.img
	DEV=()
	[ -f "$I/$name.dev1" ] && DEV=("--device=$I/$name.dev1")
	if ! mountpoint -q "$K/$name"; then
		echo "$name: skipped, the kernel does not mount it: $(grep -F "$img on" "$TMP/kmount.err" | sed 's/^fmount: //') ($what)"
		skipped=$((skipped + 1))
		continue
	fi
	ST=() line='' why=''
	run check do_check
	# an image the reader refuses as a whole: the rest would only fail too
	if [ "${ST[check]}" = 0 ] || ! known "$name" extract || ! known "$name" export ||
		! known "$name" fuse; then
		run extract do_extract
		run export do_export
		run fuse do_fuse
		compare "$name"
		[ -z "$(_mounts_under "$F")" ] || "$ANOLE" umount "$F" || fail "$name: anole umount of the FUSE mount failed"
	fi
	for s in check extract export fuse; do verdict "$name" $s; done
	[ -n "${ST[extract]:-}" ] || line+=" (the rest not run)"
	umount "$K/$name" || fail "$name: cannot unmount the kernel's mount"
	rm -rf "${W:?}"/*
	printf '%-22s%s   (%s, %s bytes)\n' "$name" "$line" "$what" "$(stat -c %s "$img")"
	[ -z "$why" ] || knownlog+=$(printf '\n  %-20s %s' "$name" "$why")
	n=$((n + 1))
done 3<"$list"

# Through the daemon a local image goes with --fuse only; a file that is no
# image is refused with one line, nothing mounted.
expect_fail "$ANOLE" mount --lazy "$I/plain.img" "$F"
grep -q -- "--fuse" "$TMP/last.err" || fail "mount --lazy of a local image: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" mount --fuse "$FIX/COMMANDS" "$F"
grep -q "not an EROFS image" "$TMP/last.err" || fail "mount --fuse of a text file: $(cat "$TMP/last.err")"
[ -z "$(_mounts_under "$F")" ] || fail "a refused mount left a mount at $F"

# The metabox images against the source tree where the kernel is wrong:
# anole shows the shared xattr on every inode that has it.
for name in metabox metabox-lz4; do
	[ -f "$I/$name.img" ] || continue
	rm -rf "$W/x"
	"$ANOLE" extract -q "$I/$name.img" "$W/x" || fail "$name: extract failed"
	for p in a big.txt a/hard-big a/head.txt; do
		v=$(getfattr -h --only-values -n security.selinux "$W/x/$p" 2>/dev/null | tr -d '\0')
		[ "$v" = system_u:object_r:usr_t:s0 ] ||
			fail "$name: $p lacks the source tree's security.selinux (got '$v')"
	done
	echo "$name: the shared security.selinux the kernel does not list is on a, big.txt, a/hard-big"
done
rm -rf "${W:?}/x"

[ -z "$knownlog" ] || echo "known failures (KNOWN_FAIL), the first step's message:$knownlog"
[ -z "$newpass" ] || echo "listed in KNOWN_FAIL but passing now, take them off:$newpass"
echo "$n images compared with the kernel's view, $skipped skipped"
[ $n -gt 0 ] || fail "no image was compared"
[ -z "$bad" ] || { echo "differences:$details"; fail "steps that failed:$bad"; }
