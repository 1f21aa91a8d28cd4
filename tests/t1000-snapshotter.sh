#!/bin/bash
# The containerd snapshotter through Debian's containerd 1.6 and ctr: a
# containerd of the test's own (own root, state and sockets, a proxy
# plugin naming our socket, never the system's) and `anole snapshotter`.
# ctr's prepare/commit/view/mounts/rm build a two-layer chain; the mounts
# it hands out are mounted by the kernel and hold what was written
# through them; every misuse gets containerd's error; the list survives a
# restart of the snapshotter; removing everything leaves no directory.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/containerd
. "$ROOT/tests/lib/containerd"
need_root
need_cmd containerd ctr
[ -x "$(dirname "$ANOLE")/anole-snapshotter" ] || skip "anole was built without gRPC"

D=$TMP/ctd
mkdir -p "$D"
"$ANOLE" snapshotter --print-config --socket "$D/snap.sock" >"$D/config.toml"
grep -q '^ *address = "'"$D"'/snap.sock"$' "$D/config.toml" || fail "--print-config: $(cat "$D/config.toml")"
# our own paths first: version, root, state and sockets; the plugins
# containerd would put outside them are off; the garbage collector runs
# only when the test asks (`ctr snapshots view` sets no gc.root label, so
# a collection at a moment of its own choosing would remove the view)
{ containerd_config "$D"; cat - "$D/config.toml"; } >"$D/full.toml" <<EOT
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 0
  mutation_threshold = 1000000
  startup_delay = "1000h"
EOT
# `version` must come first in the file
{ grep '^version' "$D/config.toml"; grep -v '^version' "$D/full.toml"; } >"$D/containerd.toml"

GC=$(dirname "$ANOLE")/grpc-call
M=/containerd.services.snapshots.v1.Snapshots
SNAP_PID= CTD_PID=
stop_all() {
	[ -z "$CTD_PID" ] || { kill "$CTD_PID" 2>/dev/null; wait "$CTD_PID" 2>/dev/null; }
	[ -z "$SNAP_PID" ] || { kill "$SNAP_PID" 2>/dev/null; wait "$SNAP_PID" 2>/dev/null; }
	return 0
}
trap 'rc=$?; stop_all; (exit $rc); _cleanup' EXIT

start_snapshotter() {
	"$ANOLE" snapshotter --socket "$D/snap.sock" --root "$D/snaproot" 2>>"$D/snap.log" &
	SNAP_PID=$!
	# the socket file appears at bind(), before listen(): wait for an
	# answer (a Stat's NOT_FOUND), not for the file
	for _ in $(seq 300); do
		case $("$GC" "$D/snap.sock" "$M/Stat" "" 2>/dev/null | head -n 1) in 5\ *) return ;; esac
		sleep 0.1
	done
	fail "the snapshotter does not answer: $(cat "$D/snap.log")"
}
start_snapshotter
containerd --config "$D/containerd.toml" >"$D/containerd.log" 2>&1 &
CTD_PID=$!
C=(ctr --address "$D/containerd.sock")
S=("${C[@]}" snapshots --snapshotter anole)
for _ in $(seq 300); do "${C[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${C[@]}" plugins ls | grep -q 'io.containerd.snapshotter.v1 *anole .* ok' ||
	fail "containerd did not load the proxy plugin: $("${C[@]}" plugins ls 2>&1 | grep anole)"

# ls as KEY PARENT KIND lines, sorted
ls_is() {
	local got
	got=$("${S[@]}" ls | tail -n +2 | awk '{ if (NF == 2) print $1, "-", $2; else print $1, $2, $3 }' | sort)
	[ "$got" = "$1" ] || fail "$2: ls says
$got
expected
$1"
}
# mount_snap KEY DIR: mount what `ctr snapshots mounts` hands out
mount_snap() {
	mkdir -p "$2"
	local m
	m=$("${S[@]}" mounts "$2" "$1") || fail "mounts $1"
	# shellcheck disable=SC2086  # ctr prints a mount command line
	$m || fail "mounting $1 ($m) failed"
}
# expect_err WHAT ERROR CMD...: CMD fails with containerd's error text
expect_err() {
	local what=$1 want=$2
	shift 2
	expect_fail "$@"
	grep -q "$want" "$TMP/last.err" || fail "$what: expected '$want', got: $(cat "$TMP/last.err")"
}

ls_is "" "a fresh snapshotter"
"${S[@]}" prepare a
ls_is "a - Active" "after prepare"
mount_snap a "$TMP/ma"
echo one >"$TMP/ma/f1"
mkdir "$TMP/ma/d"
umount "$TMP/ma"
"${S[@]}" commit c1 a
ls_is "c1 - Committed" "after commit"
"${S[@]}" prepare b c1
mount_snap b "$TMP/mb"
[ "$(cat "$TMP/mb/f1")" = one ] || fail "the child does not see its parent's file"
echo two >"$TMP/mb/d/f2"
umount "$TMP/mb"
"${S[@]}" commit c2 b
"${S[@]}" view v c2
ls_is "c1 - Committed
c2 c1 Committed
v c2 View" "after the second commit and a view"
mount_snap v "$TMP/mv"
printf 'd\nd/f2\nf1\n' >"$TMP/want"
(cd "$TMP/mv" && find . -mindepth 1 | sed 's|^\./||' | sort) >"$TMP/got"
cmp "$TMP/want" "$TMP/got" || fail "the view holds $(cat "$TMP/got")"
[ "$(cat "$TMP/mv/d/f2")" = two ] || fail "the view lost f2"
expect_fail touch "$TMP/mv/f3"
umount "$TMP/mv"
"${S[@]}" info c2 | grep -q '"Kind": "Committed"' || fail "info c2: $("${S[@]}" info c2)"

# Usage measures the snapshot's own directory as du does (c1 is the
# first snapshot made: directory 1); Update reaches us for the labels
# containerd hands down (containerd.io/snapshot/*)
c1dir=$D/snaproot/snapshots/1/fs
[ "$(cat "$c1dir/f1")" = one ] || fail "c1 is not in directory 1"
bytes=$(du -s --block-size=1 "$c1dir" | cut -f1)
want="c1 $((bytes / 1024)).0 KiB $(find "$c1dir" | wc -l)"
got=$("${S[@]}" usage c1 | tail -n 1 | awk '{ print $1, $2, $3, $4 }')
[ "$got" = "$want" ] || fail "usage says '$got', du and find '$want'"
"${S[@]}" label c2 containerd.io/snapshot/anole.test=yes
python3 - "$D/snaproot/metadata.json" <<'EOP' || fail "the label did not reach the snapshotter"
import json, sys
snaps = json.load(open(sys.argv[1]))["snapshots"]
(c2,) = [v for k, v in snaps.items() if k.endswith("/c2")]
sys.exit(c2["labels"] != {"containerd.io/snapshot/anole.test": "yes"})
EOP

# containerd's errors, and the snapshotter keeps serving
expect_err "prepare an existing key" "already exists" "${S[@]}" prepare c2
expect_err "a missing parent" "not found" "${S[@]}" prepare x nope
"${S[@]}" prepare act c2
expect_err "an active parent" "invalid argument" "${S[@]}" prepare y act
expect_err "commit onto an existing name" "already exists" "${S[@]}" commit c1 act
expect_err "commit a committed one" "failed precondition" "${S[@]}" commit c9 c2
expect_err "remove a parent" "failed precondition" "${S[@]}" rm c1
expect_err "remove a missing one" "not found" "${S[@]}" rm nope
expect_err "info of a missing one" "not found" "${S[@]}" info nope
expect_err "mounts of a committed one" "failed precondition" "${S[@]}" mounts "$TMP/mc" c2
"${S[@]}" rm act

# The snapshotter's own answers, straight on its socket (containerd's
# metadata store answers most misuses before they reach it): each is
# the code containerd expects, and the server goes on serving.
# shellcheck source=lib/snapraw
. "$ROOT/tests/lib/snapraw"
# raw METHOD HEX CODE WHAT: the call ends with gRPC status CODE
raw() {
	local got
	got=$("$GC" "$D/snap.sock" "$M/$1" "$2" | head -n 1) || fail "$4: the call failed"
	[ "${got%% *}" = "$3" ] || fail "$4: status '$got', expected code $3"
}
raw Stat "$(pb 2 nope)" 5 "Stat of a missing key"
raw Prepare "$(pb 2 rk 3 nope)" 5 "Prepare over a missing parent"
raw Prepare "$(pb 2 ra)" 0 "Prepare"
raw Prepare "$(pb 2 ra)" 6 "Prepare of an existing key"
raw Prepare "$(pb 2 rb 3 ra)" 3 "Prepare over an active parent"
raw Commit "$(pb 2 rc 3 nope)" 5 "Commit of a missing key"
raw Commit "$(pb 2 rc 3 ra)" 0 "Commit"
raw Commit "$(pb 2 rd 3 rc)" 9 "Commit of a committed one"
raw Mounts "$(pb 2 rc)" 9 "Mounts of a committed one"
raw View "$(pb 2 rv 3 rc)" 0 "View"
raw Remove "$(pb 2 rc)" 9 "Remove of a parent"
raw Remove "$(pb 2 nope)" 5 "Remove of a missing key"
raw Update "$(pbm 2 "$(pb 1 nope)")" 5 "Update of a missing key"
raw Update "$(pbm 2 "$(pb 1 rc)")$(pbm 3 "$(pb 1 parent)")" 3 "Update of the parent"
raw Usage "$(pb 2 nope)" 5 "Usage of a missing key"
raw Stat ffffffff 3 "a malformed request"
# checked before the store sees them (request.c): nothing is made
raw Prepare "12036bfffe" 3 "Prepare of a key that is not UTF-8"
raw Prepare "$(pb 2 rl)$(pbm 4 0a016b1201ff)" 3 "Prepare with a label value that is not UTF-8"
raw Stat "$(pb 2 rl)" 5 "Stat after the refused Prepare"
raw Commit "$(pb 3 ra)" 3 "Commit without a name"
raw Stat "$(pb 2 rc)ff" 3 "a truncated request"
raw Bogus "" 12 "an unknown method"
raw Remove "$(pb 2 rv)" 0 "Remove of the view"
raw Remove "$(pb 2 rc)" 0 "Remove"
raw Stat "$(pb 2 rc)" 5 "Stat after Remove"
ls_is "c1 - Committed
c2 c1 Committed
v c2 View" "after the raw calls"

# a restarted snapshotter finds its snapshots again
kill "$SNAP_PID"
wait "$SNAP_PID" || fail "the snapshotter did not stop cleanly on SIGTERM: $(cat "$D/snap.log")"
SNAP_PID=
[ ! -e "$D/snap.sock" ] || fail "the snapshotter left its socket behind"
start_snapshotter
ls_is "c1 - Committed
c2 c1 Committed
v c2 View" "after a restart"

# An ordinary image of three layers made by umoci (a tree; then a
# whiteout, an opaque directory, a hard link, a new file): containerd's
# differ applies them through our mounts, and the image mounted by ctr
# equals, byte for byte and time for time, the same image through
# containerd's own overlayfs snapshotter (which gives umoci's tree). (tests/lib/mkoci's image has a hard link to a
# lower layer's file, which containerd 1.6's differ cannot apply, with
# its own overlayfs snapshotter as with ours.)
if command -v umoci >/dev/null; then
	O=$TMP/oci B=$TMP/bundle
	umoci init --layout "$O"
	umoci new --image "$O:t"
	umoci unpack --image "$O:t" "$B"
	cp -a "$ROOT/lib" "$B/rootfs/lib"
	mkdir -p "$B/rootfs/d/sub" "$B/rootfs/o"
	echo gone >"$B/rootfs/d/gone"
	echo kept >"$B/rootfs/d/kept"
	echo old >"$B/rootfs/o/old"
	umoci repack --refresh-bundle --image "$O:t" "$B"
	rm "$B/rootfs/d/gone" "$B/rootfs/lib/util/util.c"
	rm -r "$B/rootfs/o" && mkdir "$B/rootfs/o" && echo new >"$B/rootfs/o/new"
	ln "$B/rootfs/d/kept" "$B/rootfs/d/link"
	umoci repack --refresh-bundle --image "$O:t" "$B"
	echo three >"$B/rootfs/d/sub/three"
	umoci repack --refresh-bundle --image "$O:t" "$B"
	tar -C "$O" -cf "$TMP/img.tar" .
	# the truth: the same image through containerd's own overlayfs
	# snapshotter (umoci's unpacking differs in directory times)
	"${C[@]}" images import --snapshotter overlayfs --base-name anole.test/u "$TMP/img.tar" >/dev/null
	mkdir -p "$TMP/truth"
	"${C[@]}" images mount --snapshotter overlayfs anole.test/u:t "$TMP/truth" >/dev/null
	"$TREECMP" --no-nlink-dirs --max-report 1000 "$B/rootfs" "$TMP/truth" >"$TMP/cmp.log" 2>&1 || true
	if grep '^DIFF' "$TMP/cmp.log" | grep -v '^DIFF mtime'; then
		fail "containerd's own snapshotter does not give umoci's tree (times aside)"
	fi
	"${C[@]}" images import --snapshotter anole --base-name anole.test/u "$TMP/img.tar" >/dev/null
	mkdir -p "$TMP/root"
	"${C[@]}" images mount --snapshotter anole anole.test/u:t "$TMP/root" >/dev/null
	# overlayfs counts a merged directory's links its own way
	"$TREECMP" "$TMP/truth" "$TMP/root" >"$TMP/cmp.log" 2>&1 || {
		cat "$TMP/cmp.log"
		fail "the image through anole differs from it through containerd's overlayfs"
	}
	"${C[@]}" images unmount --rm "$TMP/root"
	"${C[@]}" images unmount --rm "$TMP/truth"
	"${C[@]}" images rm anole.test/u:t >/dev/null
else
	echo "no umoci: image import not checked"
fi

# ctr's rm removes containerd's record; its garbage collector then finds
# our snapshots (List) and removes each (Remove), children first; the
# removed image's layers go the same way
"${S[@]}" rm v
"${S[@]}" rm c2
"${S[@]}" rm c1
# what a crash between a mkdir and the record's write leaves: the
# collection's Cleanup removes it, and only it
mkdir -p "$D/snaproot/snapshots/999/fs" "$D/snaproot/snapshots/keep"
lease=$("${C[@]}" leases create | awk '{ print $1 }')
"${C[@]}" leases delete --sync "$lease" >/dev/null
ls_is "" "after removing everything"
[ -d "$D/snaproot/snapshots/keep" ] || fail "Cleanup removed a directory that is no snapshot's"
rmdir "$D/snaproot/snapshots/keep"
left=$(find "$D/snaproot/snapshots" -mindepth 1)
[ -z "$left" ] || fail "left behind: $left"
# a clean stop (sanitizer builds report leaks here), and a log with
# only the one-line errors of the misuses above
kill "$SNAP_PID"
wait "$SNAP_PID" || fail "the snapshotter did not stop cleanly: $(cat "$D/snap.log")"
SNAP_PID=
if grep -v '^anole-snapshotter: /containerd.services.snapshots.v1.Snapshots/[A-Za-z]*: ' "$D/snap.log"; then
	fail "the snapshotter logged more than its one-line errors"
fi
echo "t1000: prepare/commit/view/mounts/usage/label/rm/info, raw calls, an imported image through containerd 1.6 $("${C[@]}" version | awk '/Version/ { print $2; exit }')"
