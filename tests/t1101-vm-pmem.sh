#!/bin/bash
# ANOLE_VM_DISK=pmem: the image on virtio-pmem, read by the guest's EROFS
# with DAX (a q35 guest; docs/DESIGN-vm.md, "Disks"). The same command,
# with stdin, env, workdir, stderr and a non-zero exit, gives byte for
# byte the output and status it gives on virtio-blk; the guest's root is
# /dev/pmem0 mounted dax=always there and a virtio-blk disk otherwise. An
# image whose size is not a multiple of 2 MiB stays on virtio-blk (the
# log line says why): that run is the reference. Neither image is
# written to. Two boots, side by side (q35 under TCG: 3-6 s). An unknown
# ANOLE_VM_DISK is refused in one line, before any boot.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/vmguest
. "$ROOT/tests/lib/vmguest"
vm_need_kernel busybox
vm_scratch

tree=$TMP/tree
vm_busybox_tree "$tree" sh cat echo grep md5sum pwd
"$ANOLE" build -q -z lz4 "$tree" "$TMP/img.erofs" || fail "anole build"
size=$(stat -c %s "$TMP/img.erofs")
[ $((size % 2097152)) != 0 ] || fail "the test image is a multiple of 2 MiB: pad it otherwise"
# zeros past the file system's end: the same image, a size pmem takes
cp "$TMP/img.erofs" "$TMP/img2m.erofs"
truncate -s $(((size + 2097151) / 2097152 * 2097152)) "$TMP/img2m.erofs"
sum=$(cat "$TMP/img.erofs" "$TMP/img2m.erofs" | sha256sum)

# the last line of stdout: how the guest's init mounted the image
# shellcheck disable=SC2016 # expanded by the guest's shell
cmd='echo "out $GREETING $(pwd)"; cat /etc/motd; md5sum /bin/busybox; echo err >&2; cat
grep " /mnt/lower " /proc/1/mounts; exit 3'
printf 'line 1\nline 2\n' >"$TMP/in"
for w in blk pmem; do
	img=$TMP/img.erofs
	[ $w = blk ] || img=$TMP/img2m.erofs
	(
		st=0
		ANOLE_VM_DISK=pmem "$ANOLE" run --vm -e GREETING=hi -w /tmp "$img" -- /bin/sh -c "$cmd" \
			<"$TMP/in" >"$TMP/$w.out" 2>"$TMP/$w.log" || st=$?
		echo "$st" >"$TMP/$w.st"
	) &
done
wait
for w in blk pmem; do
	[ "$(cat "$TMP/$w.st")" = 3 ] || fail "$w: status $(cat "$TMP/$w.st"): $(cat "$TMP/$w.log")"
	grep -v '^  vm: ' "$TMP/$w.log" >"$TMP/$w.err" || true
	head -n -1 "$TMP/$w.out" >"$TMP/$w.body"
	tail -n 1 "$TMP/$w.out" >"$TMP/$w.mount"
done
grep -q "^  vm: ANOLE_VM_DISK=pmem: .*img.erofs is $size bytes, not a multiple of 2 MiB: virtio-blk instead$" \
	"$TMP/blk.log" || fail "blk: no line saying why: $(cat "$TMP/blk.log")"
grep -q '^  vm: QEMU microvm,' "$TMP/blk.log" || fail "blk: not microvm: $(cat "$TMP/blk.log")"
grep -q '^  vm: QEMU q35,' "$TMP/pmem.log" || fail "pmem: not q35: $(cat "$TMP/pmem.log")"
grep -q '^/dev/vd[a-z] /mnt/lower erofs ro,' "$TMP/blk.mount" || fail "blk: mounted $(cat "$TMP/blk.mount")"
grep -q '^/dev/pmem0 /mnt/lower erofs ro,.*dax=always' "$TMP/pmem.mount" ||
	fail "pmem: mounted $(cat "$TMP/pmem.mount")"
{
	printf 'out hi /tmp\nfrom the image\n'
	(cd "$tree" && md5sum bin/busybox | sed 's| bin/| /bin/|')
	printf 'line 1\nline 2\n'
} | cmp - "$TMP/blk.body" || fail "blk: stdout: $(cat "$TMP/blk.body")"
cmp "$TMP/blk.body" "$TMP/pmem.body" || fail "pmem: stdout differs from blk's: $(cat "$TMP/pmem.body")"
echo err | cmp - "$TMP/blk.err" || fail "blk: stderr: $(cat "$TMP/blk.err")"
cmp "$TMP/blk.err" "$TMP/pmem.err" || fail "pmem: stderr differs from blk's: $(cat "$TMP/pmem.err")"
[ "$(cat "$TMP/img.erofs" "$TMP/img2m.erofs" | sha256sum)" = "$sum" ] || fail "an image changed"
[ -z "$(ls -A "$TMPDIR")" ] || fail "left in TMPDIR: $(ls -A "$TMPDIR")"

out=$(ANOLE_VM_DISK=nvme "$ANOLE" run -q --vm "$TMP/img.erofs" -- /bin/true 2>&1) &&
	fail "ANOLE_VM_DISK=nvme: succeeded"
[ "$out" = "anole: ANOLE_VM_DISK=nvme: expected blk or pmem" ] || fail "ANOLE_VM_DISK=nvme: $out"
echo "t1101: virtio-pmem with DAX gives the output virtio-blk gives"
