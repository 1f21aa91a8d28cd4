#!/bin/bash
# anole run --vm: a busybox tree built into an lz4 image runs in a QEMU
# microvm (TCG where there is no /dev/kvm). Its stdout, stderr and exit
# status match the same command run by chroot on the host, stdin is piped
# through, env, workdir and user come from the command line, the image is
# not written to, SIGTERM to anole goes to the command (which traps it and
# exits 7: anole's status), and SIGTERM or SIGKILL to anole leaves no QEMU process,
# no file and no run.PID cgroup behind (QEMU ran in its run's cgroup). Images
# the guest kernel cannot read are refused with one line, and so are a
# missing QEMU and a guest kernel panic. Six boots in all: each takes
# seconds under TCG.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/vmcgroup
. "$ROOT/tests/lib/vmcgroup"
# shellcheck source=lib/vmguest
. "$ROOT/tests/lib/vmguest"
need_cmd chroot
vm_need_kernel busybox
# the sockets' directory and the unnamed initramfs go here: checked empty
vm_scratch

tree=$TMP/tree
vm_busybox_tree "$tree" sh cat echo id kill pwd sleep touch
"$ANOLE" build -q -z lz4 "$tree" "$TMP/img.erofs" || fail "anole build"
sum=$(sha256sum <"$TMP/img.erofs")

# left_behind [ANOLE_PID...]: also no cgroup of these runs
left_behind() {
	[ -z "$(ls -A "$TMPDIR")" ] || fail "left in TMPDIR: $(ls -A "$TMPDIR")"
	[ $# = 0 ] || vm_cgroup_gone "left behind" "$@"
}

# 1. output, status, stdin, env, workdir; the same command under chroot.
# A dead run's cgroup (v1: run.PID, empty, its lock free; a number no pid
# reaches) is taken back by this run, or by one beside it.
stale=
if vm_cgroup_v1; then
	stale=$((4194304 + $$))
	mkdir -p "/sys/fs/cgroup/memory/anole-vm/run.$stale"
	[ ! -d /sys/fs/cgroup/pids ] || mkdir -p "/sys/fs/cgroup/pids/anole-vm/run.$stale"
fi
cmd='echo "out $GREETING $(pwd)"; cat /etc/motd; echo err >&2; cat; echo x >/etc/motd; exit 3'
printf 'line 1\nline 2\n' >"$TMP/in"
st=0
"$ANOLE" run -q --vm -e GREETING=hi -w /tmp "$TMP/img.erofs" -- /bin/sh -c "$cmd" \
	<"$TMP/in" >"$TMP/vm.out" 2>"$TMP/vm.err" &
first=$!
wait $first || st=$?
cat "$TMP/vm.err"
[ "$st" = 3 ] || fail "exit status $st, expected 3"
cp -a "$tree" "$TMP/ref"
st=0
env -i GREETING=hi PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	chroot "$TMP/ref" /bin/sh -c 'cd /tmp && exec /bin/sh -c "$0"' "$cmd" \
	<"$TMP/in" >"$TMP/ref.out" 2>"$TMP/ref.err" || st=$?
[ "$st" = 3 ] || fail "chroot reference: exit status $st"
printf 'out hi /tmp\nfrom the image\nline 1\nline 2\n' | cmp - "$TMP/vm.out" ||
	fail "stdout: $(cat "$TMP/vm.out")"
cmp "$TMP/ref.out" "$TMP/vm.out" || fail "stdout differs from chroot's"
cmp "$TMP/ref.err" "$TMP/vm.err" || fail "stderr differs from chroot's"
[ "$(sha256sum <"$TMP/img.erofs")" = "$sum" ] || fail "the image changed"
left_behind $first $stale

# 2-5. SIGTERM, SIGKILL, SIGHUP and SIGINT (a terminal's Ctrl-C) to anole
# while the command runs (as a user of its own: it cannot write to the
# image's root-owned /etc); the four guests boot side by side. SIGTERM
# goes to the command, which traps it: its output and its status are
# anole's. A command that goes on after SIGHUP is powered off by the
# second: 128 + 1. SIGINT, not trapped, ends the command: 128 + 2
declare -A pid
for sig in TERM KILL HUP INT; do
	"$ANOLE" run -q --vm -u 1234:56 "$TMP/img.erofs" -- \
		/bin/sh -c 'trap "echo got TERM; exit 7" TERM; trap "echo got HUP" HUP
		touch /etc/nope 2>/dev/null && echo wrote; echo "$(id -u):$(id -g)"
		sleep 600 & while :; do wait; done' \
		</dev/null >"$TMP/$sig.out" &
	pid[$sig]=$!
done
for sig in TERM KILL HUP INT; do
	for _ in $(seq 900); do [ -s "$TMP/$sig.out" ] && break; sleep 0.1; done
	[ "$(cat "$TMP/$sig.out")" = 1234:56 ] || fail "$sig: user: $(cat "$TMP/$sig.out")"
	qemu=$(pgrep -P "${pid[$sig]}" qemu-system) || fail "$sig: no QEMU under anole"
	vm_cgroup_in "$sig: QEMU" "$qemu" "${pid[$sig]}"
	kill -"$sig" "${pid[$sig]}"
	if [ $sig = HUP ]; then
		# the second: (were both pending at once, they would be one, and
		# the grace period would end the guest: the same status)
		for _ in $(seq 100); do [ "$(wc -l <"$TMP/$sig.out")" = 2 ] && break; sleep 0.1; done
		kill -HUP "${pid[$sig]}"
	fi
	st=0
	wait "${pid[$sig]}" 2>/dev/null || st=$?
	case $sig in TERM) want=7 ;; KILL) want=137 ;; HUP) want=129 ;; INT) want=130 ;; esac
	[ "$st" = "$want" ] || fail "SIG$sig: status $st, expected $want"
	case $sig in
	TERM|HUP) printf '1234:56\ngot %s\n' $sig ;;
	INT) echo 1234:56 ;;
	KILL) cat "$TMP/$sig.out" ;;
	esac | cmp - "$TMP/$sig.out" || fail "SIG$sig: output: $(cat "$TMP/$sig.out")"
	for _ in $(seq 100); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$qemu" 2>/dev/null || fail "SIG$sig: QEMU $qemu still runs"
done
left_behind "${pid[@]}"

# refused before a boot, one line each: refused TEXT CMD...
refused() {
	local text=$1 out
	shift
	out=$("$@" 2>&1) && fail "succeeded: $*"
	[ "$(echo "$out" | wc -l)" = 1 ] || fail "more than one line: $out"
	[[ $out == *"$text"* ]] || fail "expected '$text': $out"
}
"$ANOLE" build -q -z zstd "$tree" "$TMP/zstd.erofs"
refused "compressed with zstd" "$ANOLE" run -q --vm "$TMP/zstd.erofs" -- /bin/true
ANOLE_VM_KERNEL=$TMP/none refused "no guest kernel" "$ANOLE" run -q --vm "$TMP/img.erofs" -- /bin/true
# the codecs come from the guest kernel's config: without lz4 in it (here
# no config at all) even an lz4 image is refused
mkdir "$TMP/noconf"
ln -s "$kdir/vmlinuz" "$TMP/noconf/vmlinuz"
cp "$kdir/version" "$TMP/noconf/"
ANOLE_VM_KERNEL=$TMP/noconf refused "compressed with lz4: the guest kernel ($(cat "$kdir/version")) reads no compressed data" \
	"$ANOLE" run -q --vm "$TMP/img.erofs" -- /bin/true
refused "qemu-system-x86_64 not found" env PATH="$TMP/none" "$ANOLE" run -q --vm "$TMP/img.erofs" -- /bin/true
# a guest kernel panic (an init the kernel cannot execute: "No working init
# found") is one line with the panic's message, QEMU gone with the guest
printf '#!/bin/none\n' >"$TMP/badinit"
chmod +x "$TMP/badinit"
ANOLE_VM_INIT=$TMP/badinit refused "Kernel panic - not syncing: No working init found" \
	"$ANOLE" run -q --vm "$TMP/img.erofs" -- /bin/true
refused "no command" "$ANOLE" run -q --vm "$TMP/img.erofs"
# a guest that does not reach its init in time is stopped: one line
# (without -q: after the accelerator's line, the one saying QEMU runs
# without a cgroup, asked for here)
out=$(ANOLE_VM_BOOT_TIMEOUT=0.3 ANOLE_VM_CGROUP=none "$ANOLE" run --vm "$TMP/img.erofs" -- /bin/true 2>&1) &&
	fail "a boot stopped at 0.3 s succeeded"
printf '%s\n' "$out" | grep -v '^  vm: QEMU microvm, accelerator ' |
	sed 's/(accelerator [a-z]*;/(accelerator A;/' | cmp - <(
	echo "  vm: no cgroup for QEMU (ANOLE_VM_CGROUP=none): it runs without a memory limit"
	echo "anole: the guest did not start its init within 0.3 s (accelerator A; ANOLE_VM_BOOT_TIMEOUT sets the limit)"
) || fail "a boot stopped at 0.3 s without a cgroup: $out"
# a lazy REF is mounted as anole run mounts it (t1110): an unreachable
# registry is one line, before any boot
export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
daemon_kill() {
	# shellcheck disable=SC2046
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT
refused "localhost:1" "$ANOLE" run -q --vm docker://localhost:1/none -- /bin/true
refused "takes numbers" "$ANOLE" run -q --vm -u root "$TMP/img.erofs" -- /bin/true
left_behind
# the pool: anole vm pool N makes free ones (anole-vm's only)
if vm_cgroup_expected; then
	out=$("$ANOLE" vm pool 2) || fail "anole vm pool 2: $out"
	[[ $out =~ ^([0-9]+)\ free\ in\ (/sys/fs/cgroup/[a-z/]*anole-vm)\ \(cgroup\ v[12]\)$ ]] ||
		fail "anole vm pool 2: $out"
	# (a run beside this test may take one: free.* or run.*)
	n=$(find "${BASH_REMATCH[2]}" -maxdepth 1 \( -name 'free.*' -o -name 'run.*' \) | wc -l)
	if [ "${BASH_REMATCH[1]}" -lt 2 ] || [ "$n" -lt 2 ]; then
		fail "anole vm pool 2: $out: $(ls "${BASH_REMATCH[2]}")"
	fi
fi
st=0
"$ANOLE" vm pool x 2>"$TMP/pool.err" || st=$?
if [ "$st" != 2 ] ||
	! grep -qx "anole: vm pool: expected a number of cgroups up to 1024, got 'x'" "$TMP/pool.err"; then
	fail "anole vm pool x: status $st: $(cat "$TMP/pool.err")"
fi
echo "t1100: anole run --vm matches chroot; stdin, env, user, signals; nothing left behind"
