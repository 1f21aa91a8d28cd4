#!/bin/bash
# anole run --vm REF: a busybox image with a config (Cmd, Env, WorkingDir
# and a User by name) converted with -z lz4 into a local registry, and
# into a local layout, runs in a QEMU microvm (TCG where there is no
# /dev/kvm) from the lazy mount's own files: its metadata image and blob
# files as read-only disks. The same image run with `anole run` (runc)
# gives the same stdout and exit status: the config's command, env, user
# (names resolved in the image's /etc/passwd and /etc/group) and workdir;
# a command given with -e on top; stdin piped; volumes (virtio-fs). A
# zstd image is refused with one line before any boot, and so is a mount
# the daemon serves through FUSE. Two boots in all; nothing left mounted.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd qemu-system-x86_64 docker-registry python3 runc
need_fanotify
# shellcheck source=lib/vmguest
. "$ROOT/tests/lib/vmguest"
vm_need_kernel busybox
# shellcheck source=lib/daemonstate
. "$ROOT/tests/lib/daemonstate"

tree=$TMP/tree
vm_busybox_tree "$tree" sh cat echo id pwd
mkdir -p "$tree/home/app"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:99:app:/home/app:/bin/sh\n' >"$tree/etc/passwd"
printf 'root:x:0:\ngrp:x:56:\n' >"$tree/etc/group"
# never read: its ranges stay missing, so the blob stays partial
head -c 8M /dev/urandom >"$tree/unread"
chown 1234:99 "$tree/home/app"
tar --numeric-owner -C "$tree" -cf "$TMP/layer.tar" .
layout=$TMP/oci
"$ROOT/tests/lib/ocitool" init "$layout"
"$ROOT/tests/lib/ocitool" new "$layout" v1 --config \
	'{"Env":["PATH=/bin","GREETING=hello"],"Entrypoint":["/bin/sh","-c"],"Cmd":["echo \"$GREETING $(id -u):$(id -g) $(pwd)\"; cat /etc/motd; exit 3"],"WorkingDir":"/home/app","User":"app:grp"}'
"$ROOT/tests/lib/ocitool" add-layer "$layout" v1 "$TMP/layer.tar" --compress none >/dev/null
registry_start
REF=docker://$REGISTRY/vm/bb:v1
"$ANOLE" convert -q -z lz4 "oci:$layout:v1" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert: $(tail -n 3 "$TMP/convert.out")"
"$ANOLE" convert -q -z lz4 "oci:$layout:v1" "oci:$TMP/lazy:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert to a layout: $(tail -n 3 "$TMP/convert.out")"

# run_both NAME ARGS...: anole run --vm, then anole run, their stdout and
# status compared byte for byte (stdin: $TMP/in); the VM first, on what
# the cache lacks
run_both() {
	local name=$1 st
	shift
	st=0
	"$ANOLE" run -q --vm "$@" <"$TMP/in" >"$TMP/$name.vm" 2>"$TMP/$name.vm.err" || st=$?
	echo "$st" >"$TMP/$name.vm.st"
	cat "$TMP/$name.vm.err"
	[ -z "$(left_mounts)" ] || fail "$name: left mounted: $(left_mounts)"
	"$ANOLE" cache ls --json >"$TMP/$name.cache"
	st=0
	"$ANOLE" run -q "$@" <"$TMP/in" >"$TMP/$name.runc" 2>"$TMP/$name.runc.err" || st=$?
	echo "$st" >"$TMP/$name.runc.st"
	cmp "$TMP/$name.runc" "$TMP/$name.vm" ||
		fail "$name: stdout: runc '$(cat "$TMP/$name.runc")', vm '$(cat "$TMP/$name.vm")'"
	cmp "$TMP/$name.runc.st" "$TMP/$name.vm.st" ||
		fail "$name: status: runc $(cat "$TMP/$name.runc.st"), vm $(cat "$TMP/$name.vm.st")"
	[ -z "$(left_mounts)" ] || fail "$name: left mounted: $(left_mounts)"
}

[ "$("$ANOLE" cache ls --json)" = "[]" ] || fail "the cache is not empty before the runs"
echo "== 1. the config's command, env, user by name and workdir (registry)"
printf 'line 1\nline 2\n' >"$TMP/in"
run_both config "$REF"
printf 'hello 1234:56 /home/app\nfrom the image\n' | cmp - "$TMP/config.vm" ||
	fail "config: $(cat "$TMP/config.vm")"
[ "$(cat "$TMP/config.vm.st")" = 3 ] || fail "config: status $(cat "$TMP/config.vm.st")"
# the guest read busybox from a blob fetched only as it was read: after
# its run the data blob holds data and is still partial (/unread is not
# there), so the guest's reads of missing ranges were served
python3 -c '
import json, sys
blobs = json.load(open(sys.argv[1]))
part = [b for b in blobs if b["partial"] and b["disk"] > 0]
sys.exit(0 if part else "no partial blob with data after the VM run: %s" % blobs)
' "$TMP/config.cache" || fail "the cache after the VM: $(cat "$TMP/config.cache")"

echo "== 2. a command (Entrypoint kept), -e on top, -u root, stdin, volumes (local layout)"
# volumes through virtio-fs: a read-only one stays read-only even after
# the guest's root remounts it read-write (runc's container may not
# remount: the same output), a read-write one takes a write
mkdir -p "$TMP/ro" "$TMP/rw"
echo "from the host" >"$TMP/ro/f"
run_both cmd -e GREETING=hi -u root -v "$TMP/ro:/data/ro:ro" -v "$TMP/rw:/data/rw" "oci:$TMP/lazy:v1" -- \
	'echo "$GREETING $PATH"; cat; cat /data/ro/f; /bin/busybox mount -o remount,rw /data/ro
	echo x >/data/ro/new || echo "ro: refused"; echo "$GREETING" >>/data/rw/g; exit 5'
printf 'hi /bin\nline 1\nline 2\nfrom the host\nro: refused\n' | cmp - "$TMP/cmd.vm" ||
	fail "cmd: $(cat "$TMP/cmd.vm")"
[ "$(ls "$TMP/ro")" = f ] || fail "the read-only volume was written: $(ls "$TMP/ro")"
printf 'hi\nhi\n' | cmp - "$TMP/rw/g" || fail "the read-write volume: $(cat "$TMP/rw/g")"
! pgrep -f "source=$TMP/" >/dev/null || fail "a virtiofsd is left: $(pgrep -af "source=$TMP/")"
[ "$(cat "$TMP/cmd.vm.st")" = 5 ] || fail "cmd: status $(cat "$TMP/cmd.vm.st")"

echo "== 3. a codec the guest kernel cannot read: one line, no boot"
"$ANOLE" convert -q -z zstd "oci:$layout:v1" "oci:$TMP/zstd:v1" >/dev/null 2>&1 ||
	fail "convert zstd"
out=$("$ANOLE" run -q --vm "oci:$TMP/zstd:v1" -- true 2>&1) && fail "zstd: ran"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "zstd: more than one line: $out"
[[ $out == *"compressed with zstd"*"convert it with -z lz4"* ]] || fail "zstd: $out"
[ -z "$(left_mounts)" ] || fail "zstd: left mounted: $(left_mounts)"
echo "== 4. a cache without pre-content events (tmpfs: FUSE): one line, no boot"
daemon_kill
export ANOLE_RUNTIME_DIR=$TMP/run-fuse ANOLE_CACHE_DIR=$TMP/tmpfs/cache
mktmpfs "$TMP/tmpfs" 64m
out=$("$ANOLE" run -q --vm "oci:$TMP/lazy:v1" -- true 2>&1) && fail "FUSE: ran"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "FUSE: more than one line: $out"
[[ $out == *"through FUSE"*"--vm needs the kernel path"* ]] || fail "FUSE: $out"
[ -z "$(left_mounts)" ] || fail "FUSE: left mounted: $(left_mounts)"
echo "t1110: anole run --vm REF matches anole run: config, command, stdin, status"
