#!/bin/bash
# anole run: a python3 container image (Debian minbase + python3,
# with Env, Cmd and WorkingDir in its config) converted into Debian's
# docker-registry runs with `anole run`: it prints what its command prints
# and returns its exit status (also a non-zero one); --env, --volume and a
# writable overlay work; Ctrl-C (SIGINT, twice for a command that ignores
# it) ends the run and leaves no mount behind; bad input (unknown image,
# no command, no runtime) fails with one line, non-zero, nothing mounted.
# Confinement: a ":ro" volume is read-only with the mounts below its
# source too; the default network (and --net=none) is a namespace with
# loopback only, --net=host the host's interfaces; no CAP_NET_RAW, so
# raw sockets fail (older anole: host network, raw sockets, writable
# submounts).
# The ELF load hints convert stores are used: the run's program has its
# loader ranges fetched from the mount on (t0710 checks the hints).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
# shellcheck source=lib/runimage
. "$ROOT/tests/lib/runimage"
need_root
need_erofs
need_cmd docker-registry python3 runc
need_fanotify
ROOTFS=$("$ROOT/tests/lib/rootfs-variant" minbase-python-bookworm-v1 python3 --no-debs 2>"$TMP/rootfs.err") ||
	skip "no python3 rootfs: $(tail -n 1 "$TMP/rootfs.err")"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
daemon_kill() {
	# all three at once: one left alive restarts the others
	# shellcheck disable=SC2046
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid" 2>/dev/null)" 2>/dev/null || true
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/daemon.pid" 2>/dev/null)" 2>/dev/null || true
	true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT
left_mounts() { awk -v p="$ANOLE_RUNTIME_DIR/" 'index($2, p) == 1' /proc/mounts; }

# the image: one uncompressed layer of the rootfs and a config, made once
LAYOUT=$(run_image_layout "$ROOTFS") || fail "cannot make the image's layout"
registry_start
REF=docker://$REGISTRY/run/python:v1
"$ANOLE" convert -q "oci:$LAYOUT:v1" "$REF" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
"$ANOLE" inspect --json "$REF" >"$TMP/inspect.json"
grep -q GREETING "$TMP/inspect.json" || fail "the lazy image lost the image config"

echo "== 1. the image's own command, env and working directory"
start=$(date +%s%N)
out=$("$ANOLE" run -q "$REF") || fail "anole run failed: $out"
echo "anole run (cold cache, daemon start included) took $((($(date +%s%N) - start) / 1000000)) ms"
[ "$out" = "hello from /tmp" ] || fail "the container printed: $out"
[ -z "$(left_mounts)" ] || fail "mounts left after the run: $(left_mounts)"
# the convert stored load hints; the daemon fetched python3's at the mount
grep -q "load_hints" "$TMP/inspect.json" || fail "the lazy image has no load hints"
grep -q "fetching what the loader reads to start python3" "$ANOLE_RUNTIME_DIR/daemon.log" ||
	fail "python3's load hints were not used: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
! grep -q "load hints ignored" "$ANOLE_RUNTIME_DIR/daemon.log" ||
	fail "$(grep "load hints ignored" "$ANOLE_RUNTIME_DIR/daemon.log")"

echo "== 2. a command, its exit status, --env, --volume, writes"
set +e
"$ANOLE" run -q "$REF" -- python3 -c 'import sys; sys.exit(7)'
rc=$?
set -e
[ "$rc" = 7 ] || fail "exit status $rc, expected 7"
mkdir -p "$TMP/vol"
echo "from the host" >"$TMP/vol/f"
out=$("$ANOLE" run -q -e X=42 -v "$TMP/vol:/data:ro" "$REF" -- \
	sh -c 'cat /data/f; echo "$X $GREETING"; echo new >/usr/bin/python3 && head -c 3 /usr/bin/python3; echo') ||
	fail "run with env and volume failed: $out"
[ "$out" = "$(printf 'from the host\n42 hello\nnew')" ] || fail "the container printed: $out"
cmp -s "$ROOTFS/usr/bin/python3" <("$ANOLE" run -q "$REF" -- cat /usr/bin/python3) ||
	fail "a write of one run leaked into the image or the next run"
# --upper keeps the writable layer; a directory path longer than any
# fixed buffer (900 bytes) is used whole, never cut
long=$TMP/$(printf 'u%.0s' $(seq 99))
for _ in 1 2 3 4 5 6 7 8; do long=$long/$(printf 'p%.0s' $(seq 99)); done
mkdir -p "$long"
"$ANOLE" run -q --upper "$long" "$REF" -- sh -c 'echo kept >/kept' || fail "run --upper (long path) failed"
[ "$(cat "$long/upper/kept" 2>&1)" = kept ] || fail "--upper: the write is not in $long/upper"
out=$("$ANOLE" run -q -u nobody:nogroup "$REF" -- sh -c 'echo $(id -u) $(id -g)') || fail "run -u nobody failed: $out"
[ "$out" = "65534 65534" ] || fail "run -u nobody:nogroup ran as: $out"
expect_fail "$ANOLE" run -q -u nosuchuser "$REF" -- true
grep -q "nosuchuser" "$TMP/last.err" || fail "no clear error for an unknown user: $(cat "$TMP/last.err")"
[ -z "$(left_mounts)" ] || fail "mounts left after the runs: $(left_mounts)"

echo "== 3. Ctrl-C ends the run and leaves no mount"
"$ANOLE" run -q "$REF" -- python3 -c 'import time; print("started", flush=True); time.sleep(120)' >"$TMP/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q started "$TMP/int.out" && break; sleep 0.1; done
grep -q started "$TMP/int.out" || fail "the container did not start: $(cat "$TMP/int.out")"
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
[ "$rc" != 0 ] || fail "an interrupted run exited 0"
echo "SIGINT: the run ended with status $rc"
"$ANOLE" run -q "$REF" -- sleep 120 >"$TMP/int2.out" 2>&1 &
pid=$!
sleep 2
kill -INT "$pid"
sleep 0.5
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
echo "a command that ignores SIGINT (sleep as init): two of them ended it with status $rc"
[ "$rc" != 0 ] || fail "an interrupted run exited 0"
sleep 0.5
[ -z "$(left_mounts)" ] || fail "mounts left after Ctrl-C: $(left_mounts)"
[ -z "$(ls "$ANOLE_RUNTIME_DIR/run" 2>/dev/null)" ] || fail "run directories left: $(ls "$ANOLE_RUNTIME_DIR/run")"

echo "== 4. anole prefetch record, then mounts fetch the recorded ranges first"
out=$("$ANOLE" prefetch record -q "$REF" -- python3 -c 'import json; print("recorded")' 2>"$TMP/rec.err") ||
	fail "prefetch record failed: $(cat "$TMP/rec.err")"
[ "$out" = recorded ] || fail "the recorded command printed: $out"
grep -q "recorded [1-9][0-9]* ranges" "$TMP/rec.err" || fail "no recording summary: $(cat "$TMP/rec.err")"
tag=$(sed -n 's/.*as tag \(sha256-[0-9a-f]*\.prefetch\).*/\1/p' "$TMP/rec.err")
registry_curl "/v2/run/python/tags/list" | grep -q "$tag" || fail "the registry has no tag $tag"
[ -z "$(left_mounts)" ] || fail "mounts left after recording: $(left_mounts)"
st() { "$ANOLE" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s[sys.argv[1]])' "$1"; }
for mode in recorded none; do
	for _ in $(seq 1 50); do [ -e "$ANOLE_RUNTIME_DIR/holder.pid" ] || break; sleep 0.2; done
	rm -rf "$ANOLE_CACHE_DIR"
	mkdir -p "$TMP/pm"
	"$ANOLE" mount --prefetch=$mode "$REF" "$TMP/pm" || fail "mount --prefetch=$mode failed"
	for _ in $(seq 1 100); do [ "$(st jobs_queued)" = 0 ] && break; sleep 0.1; done
	sleep 0.5
	before=$(st bytes_fetched)
	[ "$(st events)" = 0 ] || fail "reads happened before the workload"
	chroot "$TMP/pm" /usr/bin/python3 -c 'import json' || fail "python3 failed"
	after=$(st bytes_fetched)
	echo "--prefetch=$mode: $before bytes fetched before the workload, $((after - before)) during it"
	if [ $mode = recorded ]; then
		[ "$before" -gt 0 ] || fail "the recorded list was not prefetched"
	else
		[ "$before" = 0 ] || fail "--prefetch=none fetched $before bytes"
	fi
	"$ANOLE" umount "$TMP/pm"
done

echo "== 5. confinement: read-only volumes, the network, capabilities"
# a read-only volume with a mount below its source: read-only all through
# (a bind with "ro" alone leaves the mount below writable)
mkdir -p "$TMP/rov"
echo top >"$TMP/rov/top"
mktmpfs "$TMP/rov/sub" 16m
echo below >"$TMP/rov/sub/f"
probe='import errno, os
for p in ("/data/new", "/data/sub/new"):
    try:
        open(p, "w").close()
        print(p, "written")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
for line in open("/proc/self/mountinfo"):
    f = line.split()
    if f[4] == "/data/sub":
        print("/data/sub", f[5].split(",")[0])'
out=$("$ANOLE" run -q -v "$TMP/rov:/data:ro" "$REF" -- python3 -c "$probe") || fail "run with a read-only volume failed: $out"
[ "$out" = "$(printf '/data/new EROFS\n/data/sub/new EROFS\n/data/sub ro')" ] ||
	fail "a read-only volume is writable inside: $out"
[ ! -e "$TMP/rov/new" ] && [ ! -e "$TMP/rov/sub/new" ] || fail "a write through a read-only volume reached the host"
[ "$(findmnt -no OPTIONS "$TMP/rov/sub" | cut -d, -f1)" = rw ] || fail "the host's own mount below the volume became read-only"
out=$("$ANOLE" run -q -v "$TMP/rov:/data" "$REF" -- sh -c 'echo rw >/data/sub/new && cat /data/sub/new') ||
	fail "run with a writable volume failed: $out"
[ "$out" = rw ] && [ "$(cat "$TMP/rov/sub/new")" = rw ] || fail "a writable volume did not write through: $out"
# the network: by default (and --net=none) loopback only, and working;
# --net=host: the host's interfaces
links='import socket
print(" ".join(sorted(n for _, n in socket.if_nameindex())))'
lo='import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
c = socket.create_connection(s.getsockname(), timeout=5); a, _ = s.accept()
c.sendall(b"ok"); print("loopback", a.recv(2).decode())'
host_links=$(python3 -c "$links")
for net in "" --net=none; do
	out=$("$ANOLE" run -q $net "$REF" -- python3 -c "$links") || fail "run $net failed: $out"
	[ "$out" = lo ] || fail "run ${net:-(default)} sees the interfaces: $out (host: $host_links)"
	out=$("$ANOLE" run -q $net "$REF" -- python3 -c "$lo") || fail "run $net: loopback failed: $out"
	[ "$out" = "loopback ok" ] || fail "run ${net:-(default)}: loopback does not work: $out"
done
[ "$host_links" != lo ] || echo "note: the host has only lo; --net=host is compared all the same"
out=$("$ANOLE" run -q --net=host "$REF" -- python3 -c "$links") || fail "run --net=host failed: $out"
[ "$out" = "$host_links" ] || fail "run --net=host sees: $out; the host has: $host_links"
# no CAP_NET_RAW (bit 13): raw sockets, as ping would use, are refused
raw='import errno, socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("raw socket opened")
except OSError as e:
    print("raw", errno.errorcode[e.errno])
caps = {l.split(":")[0]: int(l.split()[1], 16) for l in open("/proc/self/status") if l.startswith("Cap")}
print("NET_RAW", "in" if (caps["CapEff"] | caps["CapBnd"]) >> 13 & 1 else "out")'
for net in "" --net=host; do
	out=$("$ANOLE" run -q $net "$REF" -- python3 -c "$raw") || fail "run $net failed: $out"
	[ "$out" = "$(printf 'raw EPERM\nNET_RAW out')" ] || fail "run ${net:-(default)}: $out"
done
[ -z "$(left_mounts)" ] || fail "mounts left after the confinement runs: $(left_mounts)"

echo "== 6. bad input: one line, non-zero, nothing mounted"
expect_fail "$ANOLE" run -q "docker://$REGISTRY/run/nosuch:v1"
grep -q nosuch "$TMP/last.err" || fail "the error does not name the image: $(cat "$TMP/last.err")"
"$ANOLE" convert -q "$ROOTFS" "docker://$REGISTRY/run/nocmd:v1" >/dev/null 2>&1 || fail "convert of a tree failed"
expect_fail "$ANOLE" run -q "docker://$REGISTRY/run/nocmd:v1"
grep -q "names no command" "$TMP/last.err" || fail "no clear error for a missing command: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" run -q --runtime nosuch-runtime "$REF"
grep -q "nosuch-runtime" "$TMP/last.err" || fail "no clear error for a missing runtime: $(cat "$TMP/last.err")"
[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "more than one line: $(cat "$TMP/last.err")"
sleep 0.5
[ -z "$(left_mounts)" ] || fail "mounts left after bad input: $(left_mounts)"
echo ok
