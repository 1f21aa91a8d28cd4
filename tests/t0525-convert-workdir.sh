#!/bin/bash
# Before a convert to a registry, anole removes the work directories
# (anole-convert.*) that killed converts left in its --work-dir, and
# nothing else. Here the work directory is world-writable and sticky like
# /var/tmp, and another user (nobody) has planted look-alikes: their own
# anole-convert.* directory with an unlocked .lock beside it (older anole
# deleted it, following whatever it held, as root), and a symlink named
# like one, pointing at a root-owned directory. Root has one that is not
# private (0755), one that a live process holds locked, one left by a
# convert killed at a chosen step (tests/helpers/hook.c) and one in the
# layout of older anole (a free NAME.lock beside it). After the convert:
# exactly the killed one and the older free one are gone, with their
# contents; everything else is byte for byte as it was.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry setpriv flock
HOOK=$ROOT/${BUILD_DIR:-build}/tests/unit/libanole-hook.so
[ -f "$HOOK" ] || fail "no $HOOK (make builds it)"
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
chmod 755 "$TMP"

SRC=$TMP/src
mkdir -p "$SRC/d"
for i in 1 2 3; do head -c $((i * 70000)) /dev/urandom >"$SRC/d/f$i"; done
registry_start
REF=docker://$REGISTRY/safety/conv:v1
WD=$TMP/wd V=$TMP/victim
mkdir -m 1777 "$WD"
mkdir -m 0700 "$V"
echo precious >"$V/file"

# a convert killed once its work directory exists (at its blobs/sha256)
rc=0
LD_PRELOAD=$HOOK ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 ANOLE_HOOK_KILL=sha256 \
	"$ANOLE" convert -q --work-dir="$WD" "$SRC" "$REF" >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "the hook did not kill convert (exit $rc)"
killed=$(find "$WD" -maxdepth 1 -type d -name 'anole-convert.*')
[ -d "$killed/blobs/sha256" ] || fail "the killed convert left no work directory: $(ls -A "$WD")"

# another user's look-alikes
as_nobody mkdir -m 0700 "$WD/anole-convert.evil" "$WD/anole-convert.evil/sub"
as_nobody sh -c "echo theirs >'$WD/anole-convert.evil/sub/f'; : >'$WD/anole-convert.evil.lock'"
as_nobody ln -s "$V" "$WD/anole-convert.link"
as_nobody sh -c ": >'$WD/anole-convert.link.lock'"
# root's, but not provably a dead convert's
mkdir -m 0755 "$WD/anole-convert.open"
echo kept >"$WD/anole-convert.open/f"
mkdir -m 0700 "$WD/anole-convert.live"
echo kept >"$WD/anole-convert.live/f"
# held by a process that lives until fd 8 closes (at the latest when the
# test ends); the fifo says when the lock is taken
mkfifo "$TMP/locked"
exec 8> >(flock -o "$WD/anole-convert.live" sh -c 'echo >"$1"; exec cat >/dev/null' sh "$TMP/locked")
read -r _ <"$TMP/locked"
! flock -n "$WD/anole-convert.live" true || fail "the live directory is not locked"
# older anole's layout, its lock free
mkdir -m 0700 "$WD/anole-convert.older"
echo stale >"$WD/anole-convert.older/f"
: >"$WD/anole-convert.older.lock"

snapshot() {	# everything but the ones meant to go, with owners, modes and contents
	(cd "$WD" && find . -path "./$(basename "$killed")" -prune -o -path './anole-convert.older*' -prune -o \
		-printf '%p %u %m %y %l\n' -exec sh -c '[ -f "$1" ] && [ ! -L "$1" ] && cat "$1"; true' sh {} \; | sort)
	(cd "$V" && find . -printf '%p %u %m\n' -exec cat {} \; 2>/dev/null | sort)
}
before=$(snapshot)
"$ANOLE" convert -q --work-dir="$WD" "$SRC" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
exec 8>&-
[ ! -e "$killed" ] || fail "the killed convert's work directory is still there"
[ ! -e "$WD/anole-convert.older" ] && [ ! -e "$WD/anole-convert.older.lock" ] ||
	fail "the older convert's work directory or lock is still there"
after=$(snapshot)
[ "$before" = "$after" ] || fail "convert changed what was not its own: $(diff <(echo "$before") <(echo "$after"))"
[ "$(cat "$WD/anole-convert.evil/sub/f")" = theirs ] || fail "another user's directory was touched"
[ "$(ls -A "$WD" | sort | tr '\n' ' ')" = "anole-convert.evil anole-convert.evil.lock anole-convert.link anole-convert.link.lock anole-convert.live anole-convert.open " ] ||
	fail "the work directory holds: $(ls -A "$WD")"
"$ANOLE" inspect "$REF" >/dev/null || fail "the converted image does not inspect"
echo ok
