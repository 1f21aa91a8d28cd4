#!/bin/bash
# anole extract as root in a directory another user controls, and when it
# fails or is killed. Another user's moves and the kill happen at a chosen
# step of the real process (tests/helpers/hook.c, LD_PRELOAD), every time:
# 1. DIR given as a symlink is refused with one line; what it points at is
#    untouched (older anole followed it).
# 2. DIR's parent belongs to another user, who swaps DIR for a symlink to a
#    root-owned directory right after anole first looks at DIR (older anole
#    opened it by name again, following the link, and extracted into the
#    victim, giving it the image root's owner and mode): the victim stays
#    as it was, for a DIR that did not exist and for an empty one.
# 3. A corrupt image (an entry late in the walk named with a '/'): a DIR
#    that did not exist still does not, an empty DIR (a mount point) stays
#    empty with its owner, mode and mtime, and nothing is left beside it.
# 4. Killed midway: a hidden .anole-extract.* is left; the next extract in
#    the same place removes it and succeeds, byte for byte as the source;
#    look-alikes another user planted stay.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_cmd setpriv
HOOK=$ROOT/${BUILD_DIR:-build}/tests/unit/libanole-hook.so
[ -f "$HOOK" ] || fail "no $HOOK (make builds it)"
hooked() { LD_PRELOAD=$HOOK ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 "$@"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
chmod 755 "$TMP"

# the tree: names sort a*, b*, ..., z*; the corrupt image's bad entry is z's
SRC=$TMP/src
mkdir -p "$SRC/a/deep/er" "$SRC/b" "$SRC/z"
for i in 1 2 3; do echo "file $i" >"$SRC/a/f$i"; echo "b $i" >"$SRC/b/b$i"; done
echo deep >"$SRC/a/deep/er/f"
ln -s ../a/f1 "$SRC/b/link"
ln "$SRC/a/f2" "$SRC/b/hard"
mkfifo "$SRC/b/fifo"
echo poison >"$SRC/z/poison-entry"
chown -R 1234:2345 "$SRC/a"
chmod 0750 "$SRC"
setfattr -n user.note -v kept "$SRC/a/f1" 2>/dev/null || true
touch -d '2001-02-03 04:05:06' "$SRC/a/deep" "$SRC"
"$ANOLE" build -q "$SRC" "$TMP/good.img" || fail "build failed"
# a '/' in the name: refused when z is read, after a and b were written
python3 - "$TMP/good.img" "$TMP/bad.img" <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
assert b.count(b'poison-entry') == 1, 'the name is not unique in the image'
open(sys.argv[2], 'wb').write(b.replace(b'poison-entry', b'poison/entry'))
PY

# the attacker's directory, and the victim: a root-owned, private one
U=$TMP/u V=$TMP/victim
mkdir -m 0755 "$U" && chown 65534:65534 "$U"
mkdir -m 0700 "$V"
vstat=$(stat -c '%u:%g %a %Y' "$V")
victim_ok() {
	[ "$(stat -c '%u:%g %a %Y' "$V")" = "$vstat" ] || fail "$1: the victim's owner, mode or mtime changed: $(stat -c '%u:%g %a %Y' "$V")"
	[ -z "$(ls -A "$V")" ] || fail "$1: extract wrote into the victim: $(ls -A "$V")"
}
no_work_left() {
	[ -z "$(find "$1" -maxdepth 1 -name '.anole-extract.*')" ] || fail "$2: a work directory is left: $(ls -A "$1")"
}

echo "== 1. DIR given as a symlink"
as_nobody ln -s "$V" "$U/lnk"
for d in "$U/lnk" "$U/lnk/"; do
	expect_fail "$ANOLE" extract "$TMP/good.img" "$d"
	grep -q "symbolic link" "$TMP/last.err" || fail "$d: no clear error: $(cat "$TMP/last.err")"
	[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "$d: more than one line: $(cat "$TMP/last.err")"
	victim_ok "DIR as a symlink ($d)"
done
no_work_left "$U" "DIR as a symlink"

echo "== 2. DIR swapped for a symlink while extract runs"
# a DIR that does not exist: the swap makes its name taken, so the
# extract must fail, leaving the victim and the parent as they were
rc=0
hooked env ANOLE_HOOK_SWAP="$U/new:$V" "$ANOLE" extract "$TMP/good.img" "$U/new" 2>"$TMP/swap.err" || rc=$?
[ -L "$U/new" ] || fail "the hook did not swap $U/new"
victim_ok "swap of a new DIR"
[ "$rc" = 1 ] || fail "extract over a swapped new DIR: exit $rc: $(cat "$TMP/swap.err")"
echo "new DIR swapped: $(cat "$TMP/swap.err")"
no_work_left "$U" "swap of a new DIR"
# an empty DIR: anole holds it open, so the tree lands in it, wherever
# the other user moved it
as_nobody mkdir "$U/ex"
hooked env ANOLE_HOOK_SWAP="$U/ex:$V" "$ANOLE" extract "$TMP/good.img" "$U/ex" ||
	fail "extract into an empty DIR swapped after it was opened failed"
[ -L "$U/ex" ] || fail "the hook did not swap $U/ex"
victim_ok "swap of an existing DIR"
"$TREECMP" "$SRC" "$U/ex.moved" || fail "the tree in the DIR anole opened differs from the source"
no_work_left "$U/ex.moved" "swap of an existing DIR"

echo "== 3. a corrupt image leaves DIR as it was"
X=$TMP/x
mkdir "$X"
expect_fail "$ANOLE" extract "$TMP/bad.img" "$X/new"
grep -q "invalid name" "$TMP/last.err" || fail "the error does not name the bad entry: $(cat "$TMP/last.err")"
[ -z "$(ls -A "$X")" ] || fail "a failed extract left: $(ls -A "$X")"
mktmpfs "$X/mp" 64m
chmod 0751 "$X/mp"
touch -d '2002-03-04 05:06:07' "$X/mp"
before=$(stat -c '%u:%g %a %y' "$X/mp")
expect_fail "$ANOLE" extract "$TMP/bad.img" "$X/mp"
[ -z "$(ls -A "$X/mp")" ] || fail "a failed extract into a mount point left: $(ls -A "$X/mp")"
[ "$(stat -c '%u:%g %a %y' "$X/mp")" = "$before" ] || fail "the mount point changed: $before -> $(stat -c '%u:%g %a %y' "$X/mp")"
# the same mount point takes a good image afterwards, exactly
"$ANOLE" extract "$TMP/good.img" "$X/mp" || fail "extract into the mount point failed"
"$TREECMP" "$SRC" "$X/mp" || fail "the extracted tree differs from the source"

echo "== 4. killed midway, cleaned by the next extract"
K=$TMP/k
mkdir -p "$K/d"
rc=0
hooked env ANOLE_HOOK_KILL=b2 "$ANOLE" extract "$TMP/good.img" "$K/new" 2>/dev/null || rc=$?
[ "$rc" = 137 ] || fail "the hook did not kill extract (exit $rc)"
[ ! -e "$K/new" ] || fail "a killed extract left DIR: $(ls -A "$K/new")"
left=$(find "$K" -maxdepth 1 -name '.anole-extract.*')
[ -n "$left" ] && [ -e "$left/root/a/f1" ] || fail "no hidden work directory with the partial tree: $(ls -A "$K")"
rc=0
hooked env ANOLE_HOOK_KILL=b2 "$ANOLE" extract "$TMP/good.img" "$K/d" 2>/dev/null || rc=$?
[ "$rc" = 137 ] || fail "the hook did not kill extract into an existing DIR (exit $rc)"
[ "$(find "$K/d" -mindepth 1 -maxdepth 1 -name '.anole-extract.*' | wc -l)" = 1 ] &&
	[ "$(find "$K/d" -mindepth 1 -maxdepth 1 | wc -l)" = 1 ] ||
	fail "a killed extract into an existing DIR left: $(ls -A "$K/d")"
# look-alikes another user planted, beside DIR: theirs, not ours
chown 65534:65534 "$K"
as_nobody mkdir -m 0700 "$K/.anole-extract.theirs"
as_nobody sh -c "echo kept >'$K/.anole-extract.theirs/f'"
as_nobody ln -s "$V" "$K/.anole-extract.link"
"$ANOLE" extract "$TMP/good.img" "$K/new" || fail "extract after a killed one failed"
"$TREECMP" "$SRC" "$K/new" || fail "the tree after a killed extract differs from the source"
[ ! -e "$left" ] || fail "the killed extract's work directory is still there"
[ "$(cat "$K/.anole-extract.theirs/f")" = kept ] || fail "another user's look-alike was touched"
[ -L "$K/.anole-extract.link" ] || fail "a look-alike symlink was removed"
victim_ok "stale work directories"
"$ANOLE" extract "$TMP/good.img" "$K/d" || fail "extract into a DIR a killed extract used failed"
"$TREECMP" "$SRC" "$K/d" || fail "the tree in a DIR a killed extract used differs from the source"
no_work_left "$K/d" "second extract into an existing DIR"
echo ok
