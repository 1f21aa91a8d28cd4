#!/bin/bash
# ANOLE_VM_MACHINE=q35 with Debian's full kernel (scripts/vm-kernel --full,
# the Kata-QEMU-like baseline of bench/sandbox): the same command, with
# stdin, env, workdir, stderr, a non-zero exit and a read-only volume,
# gives byte for byte the stdout, stderr and status it gives on the
# default microvm with the cloud kernel. Two boots, side by side: a q35
# boot under TCG takes 6 s on an idle 2-core host (SeaBIOS and PCI
# enumeration, emulated), microvm 2-3 s. An unknown machine is refused in
# one line, before any boot.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/vmguest
. "$ROOT/tests/lib/vmguest"
vm_need_kernel busybox
full=/var/cache/anole/vm/kernel-full
[ -f "$full/vmlinuz" ] || skip "no full guest kernel in $full (scripts/vm-kernel --full)"
[ -x /usr/lib/qemu/virtiofsd ] || skip "needs qemu-system-common's virtiofsd"
vm_scratch

tree=$TMP/tree
vm_busybox_tree "$tree" sh cat echo pwd
mkdir "$tree/mnt"
"$ANOLE" build -q -z lz4 "$tree" "$TMP/img.erofs" || fail "anole build"
mkdir "$TMP/vol"
echo "from the volume" >"$TMP/vol/f"

cmd='echo "out $GREETING $(pwd)"; cat /etc/motd /mnt/v/f; echo err >&2; cat
echo x >/mnt/v/g || echo "volume read-only"; exit 3'
printf 'line 1\nline 2\n' >"$TMP/in"
# boot NAME MACHINE KERNEL: NAME.out, NAME.err (without anole's log line,
# kept in NAME.log), NAME.st
boot() {
	local st=0
	ANOLE_VM_MACHINE=$2 ANOLE_VM_KERNEL=$3 "$ANOLE" run --vm -e GREETING=hi -w /tmp \
		-v "$TMP/vol:/mnt/v:ro" "$TMP/img.erofs" -- /bin/sh -c "$cmd" \
		<"$TMP/in" >"$TMP/$1.out" 2>"$TMP/$1.all" || st=$?
	echo "$st" >"$TMP/$1.st"
	grep '^  vm: ' "$TMP/$1.all" >"$TMP/$1.log" || true
	grep -v '^  vm: ' "$TMP/$1.all" >"$TMP/$1.err" || true
}
boot microvm "" "$kdir" &
boot q35 q35 "$full"
wait $!
for m in microvm q35; do cat "$TMP/$m.all"; done
grep -q "QEMU microvm, " "$TMP/microvm.log" || fail "microvm: log: $(cat "$TMP/microvm.log")"
grep -q "QEMU q35, .*guest kernel $(cat "$full/version")\$" "$TMP/q35.log" ||
	fail "q35: log: $(cat "$TMP/q35.log")"
[ "$(cat "$TMP/microvm.st")" = 3 ] || fail "microvm: status $(cat "$TMP/microvm.st")"
printf 'out hi /tmp\nfrom the image\nfrom the volume\nline 1\nline 2\nvolume read-only\n' |
	cmp - "$TMP/microvm.out" || fail "microvm: stdout: $(cat "$TMP/microvm.out")"
for f in out err st; do
	cmp "$TMP/microvm.$f" "$TMP/q35.$f" || fail "q35: $f differs from microvm's"
done
[ ! -e "$TMP/vol/g" ] || fail "the read-only volume was written"
[ -z "$(ls -A "$TMPDIR")" ] || fail "left in TMPDIR: $(ls -A "$TMPDIR")"

out=$(ANOLE_VM_MACHINE=pc "$ANOLE" run -q --vm "$TMP/img.erofs" -- /bin/true 2>&1) &&
	fail "ANOLE_VM_MACHINE=pc ran"
[ "$out" = "anole: ANOLE_VM_MACHINE=pc: microvm or q35" ] || fail "ANOLE_VM_MACHINE=pc: $out"
echo "t1105: q35 with the full kernel gives microvm's output, error and status"
