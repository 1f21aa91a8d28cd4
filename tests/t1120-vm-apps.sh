#!/bin/bash
# anole run --vm of a real image: the python3 rootfs the other run tests
# use, converted with -z lz4 into a local registry, runs a script (it
# computes, reads stdin, writes to stderr, exits non-zero) in a QEMU
# microvm (TCG where there is no /dev/kvm) with the same stdout, stderr
# and status as `anole run` (runc) of the same image. Then QEMU is killed
# with SIGKILL under a running `anole run --vm` (with a volume, so that a
# virtiofsd runs): anole exits non-zero with one line saying QEMU died,
# and nothing is left: no mount of the image, no virtiofsd, no sockets'
# directory, no run.PID cgroup (QEMU and virtiofsd ran in it). A redis rootfs (bench/startup's) converted from its tree
# gets a scripted session with redis-cli in the guest, compared with
# runc's too. Three boots.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
# shellcheck source=lib/runimage
. "$ROOT/tests/lib/runimage"
# shellcheck source=lib/vmcgroup
. "$ROOT/tests/lib/vmcgroup"
need_root
need_erofs
need_cmd qemu-system-x86_64 docker-registry python3 runc
need_fanotify
# shellcheck source=lib/vmguest
. "$ROOT/tests/lib/vmguest"
vm_need_kernel
ROOTFS=$("$ROOT/tests/lib/rootfs-variant" minbase-python-bookworm-v1 python3 --no-debs 2>"$TMP/rootfs.err") ||
	skip "no python3 rootfs: $(tail -n 1 "$TMP/rootfs.err")"
# shellcheck source=lib/daemonstate
. "$ROOT/tests/lib/daemonstate"
# shellcheck source=lib/redissession
. "$ROOT/tests/lib/redissession"
# QEMU's sockets' directory goes here: checked empty
scratch=$TMP/scratch
mkdir "$scratch"
left_behind() {
	[ -z "$(ls -A "$scratch")" ] || fail "$1: left in TMPDIR: $(ls -A "$scratch")"
	[ -z "$(left_mounts)" ] || fail "$1: left mounted: $(left_mounts)"
	! pgrep -f "source=$TMP/" >/dev/null || fail "$1: a virtiofsd is left: $(pgrep -af "source=$TMP/")"
}

LAYOUT=$(run_image_layout "$ROOTFS") || fail "cannot make the image's layout"
registry_start
REF=docker://$REGISTRY/vm/python:v1
"$ANOLE" convert -q -z lz4 "oci:$LAYOUT:v1" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert: $(tail -n 3 "$TMP/convert.out")"

echo "== 1. a python3 script: the same stdout, stderr and status as anole run"
script='
import hashlib, os, sys
data = sys.stdin.buffer.read()
print(sum(i * i for i in range(1000)), hashlib.sha256(data).hexdigest(), len(data.splitlines()))
print(os.environ["GREETING"], os.getcwd(), os.getuid(), sys.version_info[:2])
print("to stderr", len(data), file=sys.stderr)
sys.exit(4)'
seq 1000 >"$TMP/in"
for how in vm runc; do
	args=()
	[ $how = runc ] || args=(--vm)
	st=0
	TMPDIR=$scratch "$ANOLE" run -q "${args[@]}" "$REF" -- python3 -c "$script" \
		<"$TMP/in" >"$TMP/$how.out" 2>"$TMP/$how.err" || st=$?
	echo "$st" >"$TMP/$how.st"
	left_behind "$how"
done
cat "$TMP/vm.out" "$TMP/vm.err"
[ "$(cat "$TMP/vm.st")" = 4 ] || fail "vm: status $(cat "$TMP/vm.st"): $(cat "$TMP/vm.err")"
printf '332833500 %s 1000\nhello /tmp 0 (3, 11)\n' "$(sha256sum <"$TMP/in" | cut -d' ' -f1)" |
	cmp - "$TMP/vm.out" || fail "vm: stdout: $(cat "$TMP/vm.out")"
cmp "$TMP/runc.out" "$TMP/vm.out" || fail "stdout: runc '$(cat "$TMP/runc.out")', vm '$(cat "$TMP/vm.out")'"
cmp "$TMP/runc.err" "$TMP/vm.err" || fail "stderr: runc '$(cat "$TMP/runc.err")', vm '$(cat "$TMP/vm.err")'"
cmp "$TMP/runc.st" "$TMP/vm.st" || fail "status: runc $(cat "$TMP/runc.st"), vm $(cat "$TMP/vm.st")"

echo "== 2. redis: a scripted session in the guest (it has no network: a unix socket)"
# the rootfs bench/startup uses, converted from the tree (no config: the
# default PATH, root, /)
if REDIS=$("$ROOT/tests/lib/rootfs-variant" hb-redis-v1 redis-server --no-debs 2>"$TMP/redis.err"); then
	RREF=docker://$REGISTRY/vm/redis:v1
	"$ANOLE" convert -q -z lz4 "$REDIS" "$RREF" >"$TMP/convert.out" 2>&1 ||
		fail "convert redis: $(tail -n 3 "$TMP/convert.out")"
	for how in vm runc; do
		args=()
		[ $how = runc ] || args=(--vm)
		st=0
		TMPDIR=$scratch "$ANOLE" run -q "${args[@]}" "$RREF" -- /bin/sh -c "$REDIS_SESSION; exit 6" \
			</dev/null >"$TMP/redis.$how.out" 2>"$TMP/redis.$how.err" || st=$?
		echo "$st" >"$TMP/redis.$how.st"
		left_behind "redis $how"
	done
	cat "$TMP/redis.vm.out" "$TMP/redis.vm.err"
	[ "$(cat "$TMP/redis.vm.st")" = 6 ] || fail "redis vm: status $(cat "$TMP/redis.vm.st")"
	# the version line, then the session's replies
	redis_session_want "$REDIS" | cmp - "$TMP/redis.vm.out" ||
		fail "redis vm: $(cat "$TMP/redis.vm.out")"
	for f in out err st; do
		cmp "$TMP/redis.runc.$f" "$TMP/redis.vm.$f" ||
			fail "redis $f: runc '$(cat "$TMP/redis.runc.$f")', vm '$(cat "$TMP/redis.vm.$f")'"
	done
else
	echo "no redis rootfs, skipped: $(tail -n 1 "$TMP/redis.err")"
fi

echo "== 3. QEMU killed under a running anole run --vm: one line, nothing left"
mkdir "$TMP/vol"
TMPDIR=$scratch "$ANOLE" run -q --vm -v "$TMP/vol:/vol" "$REF" -- \
	python3 -c 'import time; print("ready", flush=True); time.sleep(600)' \
	</dev/null >"$TMP/kill.out" 2>"$TMP/kill.err" &
anole=$!
for _ in $(seq 900); do [ -s "$TMP/kill.out" ] && break; sleep 0.1; done
[ "$(cat "$TMP/kill.out")" = ready ] || fail "no output from the guest: $(cat "$TMP/kill.err")"
qemu=$(pgrep -P "$anole" qemu-system) || fail "no QEMU under anole"
vfsd=$(pgrep -f "source=$TMP/vol") || fail "no virtiofsd for the volume"
vm_cgroup_in "QEMU" "$qemu" "$anole"
# (virtiofsd forks its sandboxed server: both)
for p in $vfsd; do vm_cgroup_in "virtiofsd $p" "$p" "$anole"; done
kill -9 "$qemu"
st=0
wait "$anole" || st=$?
cat "$TMP/kill.err"
[ "$st" != 0 ] || fail "anole exited 0 after QEMU was killed"
[ "$(wc -l <"$TMP/kill.err")" = 1 ] || fail "not one line: $(cat "$TMP/kill.err")"
grep -q "QEMU died" "$TMP/kill.err" || fail "the line: $(cat "$TMP/kill.err")"
left_behind "QEMU killed"
vm_cgroup_gone "QEMU killed" "$anole"
echo "t1120: anole run --vm of python3 matches anole run; a killed QEMU leaves nothing"
