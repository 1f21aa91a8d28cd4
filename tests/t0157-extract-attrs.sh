#!/bin/bash
# anole extract gives every file its owner, mode and times whoever sets
# them: the pool finishes most regular files itself, and every entry
# skips the chown and chmod that creating it already made true. Files of
# every mode class (plain, no permissions, read-only, setuid, setgid,
# sticky) and of several owners, small (created by the pool) and big
# (created by the walk), hard-linked and with xattrs; directories,
# symlinks and FIFOs of several modes and owners; in an uncompressed and
# an lz4 image, extracted under umasks 022, 077 and 000, into a new directory,
# into an empty set-group-ID directory of another group and into one with
# a default ACL that takes group and others' bits away (it replaces the
# umask): every tree equals the source (treecmp: mode, owner, times,
# contents).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_cmd setfacl

S=$TMP/src
mkdir -p "$S/d1/d2" "$S/ro"
i=0
for m in 0644 0755 0600 0444 0000 0664 0640 0777 4755 2755 1644 6711 0705; do
	for o in 0:0 1000:1000 0:1000 1000:0; do
		i=$((i + 1))
		f=$S/d1/f-$m-${o/:/-}
		printf 'file %s %s\n' "$m" "$o" >"$f"
		[ $((i % 5)) = 0 ] && head -c 300000 /dev/urandom >>"$f" # big: the walk makes it
		[ $((i % 7)) = 0 ] && setfattr -n user.tag -v "v$i" "$f"
		chown "$o" "$f"
		chmod "$m" "$f"
		touch -d "@$((1000000000 + i * 1001))" "$f"
	done
done
# directories, symlinks and FIFOs of several modes and owners: made with
# their final mode and owner where creating them gives those
for m in 0755 0700 0555 0750 1777 0711 0500 3775; do
	for o in 0:0 1000:1000; do
		dd=$S/dirs/d-$m-${o/:/-}
		mkdir -p "$dd" && echo x >"$dd/in" && ln -s ../in "$dd/ln" && mkfifo "$dd/fifo"
		chown -h "$o" "$dd" "$dd/ln" "$dd/fifo"
		chmod "${m#0}" "$dd/fifo" 2>/dev/null || chmod 0640 "$dd/fifo"
		chmod "$m" "$dd"
		touch -h -d @1200000000 "$dd/ln"
		touch -d @1200000000 "$dd/fifo" "$dd"
	done
done
touch -d @1200000000 "$S/dirs"
ln "$S/d1/f-0755-0-0" "$S/d1/d2/link"
cp -a "$S/d1/f-0644-1000-1000" "$S/d1/d2/copy"
chmod 0555 "$S/ro"
chown 1000:1000 "$S/d1/d2"
chmod 2775 "$S/d1/d2"
touch -d @1100000000 "$S/d1/d2" "$S/d1" "$S/ro"

"$ANOLE" build -q "$S" "$TMP/plain.img" || fail "build (plain) failed"
"$ANOLE" build -q -z lz4 --pcluster=8K "$S" "$TMP/lz4.img" || fail "build (lz4) failed"

check() { # NAME OUT
	"$TREECMP" --ignore-root-mtime "$S" "$2" >"$TMP/cmp.log" 2>&1 ||
		{ cat "$TMP/cmp.log"; fail "$1: the tree differs from the source"; }
}

for img in plain lz4; do
	for um in 022 077 000; do
		out=$TMP/out-$img-$um
		(umask "$um" && exec "$ANOLE" extract -q "$TMP/$img.img" "$out") ||
			fail "$img, umask $um: extract failed"
		check "$img, umask $um" "$out"
		rm -rf "$out"
	done

	# an empty set-group-ID directory of group 4321
	out=$TMP/sgid-$img
	mkdir "$out" && chown 0:4321 "$out" && chmod 2777 "$out"
	"$ANOLE" extract -q "$TMP/$img.img" "$out" || fail "$img, setgid target: extract failed"
	check "$img, setgid target" "$out"
	rm -rf "$out"

	# a default ACL on the target: new files take their mode from it, not
	# from the umask (its minimal entries, which take group and others'
	# bits away, give them no ACL of their own;
	# the directories inherit it, as with any tool that makes them)
	out=$TMP/acl-$img
	mkdir "$out"
	setfacl -d -m u::rwx,g::---,o::--- "$out" || skip "setfacl -d failed: no ACLs on $TMP"
	(umask 022 && exec "$ANOLE" extract -q "$TMP/$img.img" "$out") ||
		fail "$img, default ACL: extract failed"
	"$TREECMP" --ignore-root-mtime "$S" "$out" >"$TMP/cmp.log" 2>&1 || true
	if grep -v -e 'system.posix_acl_default only in B' -e '^treecmp: ' "$TMP/cmp.log" | grep -q .; then
		cat "$TMP/cmp.log"
		fail "$img, default ACL: the tree differs from the source"
	fi
	rm -rf "$out"
done
