#!/bin/bash
# anole run (issue 7): a python3 container image (Debian minbase + python3,
# with Env, Cmd and WorkingDir in its config) converted into Debian's
# docker-registry runs with `anole run`: it prints what its command prints
# and returns its exit status (also a non-zero one); --env, --volume and a
# writable overlay work; Ctrl-C (SIGINT, twice for a command that ignores
# it) ends the run and leaves no mount behind; bad input (unknown image,
# no command, no runtime) fails with one line, non-zero, nothing mounted.
# The ELF load hints convert stores are used: the run's program has its
# loader ranges fetched from the mount on (t0710 checks the hints).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
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
	kill -9 $(cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null) 2>/dev/null
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid" 2>/dev/null)" 2>/dev/null
	kill -9 "$(cat "$ANOLE_RUNTIME_DIR/daemon.pid" 2>/dev/null)" 2>/dev/null
	true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT
left_mounts() { awk -v p="$ANOLE_RUNTIME_DIR/" 'index($2, p) == 1' /proc/mounts; }

# the image: one uncompressed layer of the rootfs and a config, made once
LAYOUT=${ANOLE_TEST_CACHE:-/var/cache/anole-tests}/oci-python-run-v1
if [ ! -d "$LAYOUT" ]; then
	mk=$(mktemp -d "$LAYOUT.tmp.XXXXXX")
	tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$TMP/layer.tar" .
	"$ROOT/tests/lib/ocitool" init "$mk"
	"$ROOT/tests/lib/ocitool" new "$mk" v1 --config \
		'{"Env":["PATH=/usr/local/bin:/usr/bin:/bin","GREETING=hello"],"Cmd":["python3","-c","import os; print(os.environ[\"GREETING\"], \"from\", os.getcwd())"],"WorkingDir":"/tmp"}'
	"$ROOT/tests/lib/ocitool" add-layer "$mk" v1 "$TMP/layer.tar" --compress none >/dev/null
	rm -f "$TMP/layer.tar"
	mv -T "$mk" "$LAYOUT"
fi
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

echo "== 5. bad input: one line, non-zero, nothing mounted"
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
