#!/bin/bash
# `anole ctr-pull` and `ctr run` of an anole lazy image through the
# snapshotter: a containerd of the test's own (root, state, sockets, the
# proxy plugin; never the system's), `anole snapshotter`, a local
# registry behind a proxy that logs each request. The pull fetches no
# data blob; python3 runs from the lazy mount; a container started
# before the snapshotter is killed (SIGKILL) and started again on the
# same root keeps running and reading its image, and containerd lists
# the same snapshots; an ordinary gzip image pulls with plain `ctr
# images pull` and runs through the same snapshotter; removing the
# containers, the images and containerd's content leaves no mount,
# snapshot directory or lazy mount in the daemon; with the registry gone
# ctr-pull fails with one line and records nothing.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/containerd
. "$ROOT/tests/lib/containerd"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
containerd_lazy_needs
ROOTFS=$("$ROOT/tests/lib/rootfs-variant" minbase-python-bookworm-v1 python3 --no-debs 2>"$TMP/rootfs.err") ||
	skip "no python3 rootfs: $(tail -n 1 "$TMP/rootfs.err")"

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
D=$TMP/ctd
# shellcheck source=lib/snaplazy
. "$ROOT/tests/lib/snaplazy"
mkdir -p "$D"

# the lazy image of the python rootfs, converted once (it takes long)
# and kept as a layout; each run pushes it
LAZY=${ANOLE_TEST_CACHE:-/var/cache/anole-tests}/anole-lazy-python-v1
if [ ! -d "$LAZY" ]; then
	mk=$(mktemp -d "$LAZY.tmp.XXXXXX")
	"$ANOLE" convert -q "$ROOTFS" "oci:$mk:v1" >"$TMP/convert.out" 2>&1 ||
		fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
	mv -T "$mk" "$LAZY"
fi
registry_start
registry_push "$LAZY" v1 lazy/python:v1
faultproxy_start
IMG=$PROXY/lazy/python:v1

containerd_with_snapshotter "$D"

: >"$TMP/proxy.log"
"$ANOLE" ctr-pull --address "$D/containerd.sock" "$IMG" >"$TMP/pull.out" 2>&1 ||
	fail "ctr-pull failed: $(cat "$TMP/pull.out"; tail -n 3 "$D/snap.log")"
# the registry's view: manifest, config, the metadata image and digest
# tables; none of the data blobs
python3 - "$LAZY" "$TMP/proxy.log" <<'EOP' || fail "data blobs were fetched at pull"
import json, os, sys
lay, log = sys.argv[1], open(sys.argv[2]).read()
idx = json.load(open(os.path.join(lay, "index.json")))
m = idx["manifests"][0]["digest"].split(":")[1]
man = json.load(open(os.path.join(lay, "blobs/sha256", m)))
data = [l["digest"] for l in man["layers"] if l["mediaType"].endswith("erofs.blob.v1")]
assert data, man
got = [d for d in data if "blobs/" + d in log]
print("pull: %d requests, %d of %d data blobs fetched" % (log.count("\n"), len(got), len(data)))
sys.exit(1 if got else 0)
EOP
"${C[@]}" images ls | grep -q "$IMG" || fail "no image record: $("${C[@]}" images ls)"

out=$("${C[@]}" run --rm --snapshotter anole "$IMG" t1 /usr/bin/python3 -c 'import json; print(json.dumps({"ok": 1}))' 2>&1) ||
	fail "ctr run failed: $out; $(tail -n 3 "$D/snap.log")"
[ "$out" = '{"ok": 1}' ] || fail "python3 printed: $out"
awk -v p="$D/snaproot/" '$3 == "erofs" && index($2, p) == 1' /proc/mounts | grep -q . ||
	fail "the image is not a lazy EROFS mount under the snapshotter's root"

# the snapshotter killed under a running container, then started again
# on the same root: the container goes on and reads a file of its image
# it had not read (through the daemon's lazy mount, not the
# snapshotter), and containerd lists the same snapshots through it
"${C[@]}" run -d --snapshotter anole "$IMG" t2 /bin/sleep 600 >"$TMP/run-d.out" 2>&1 ||
	fail "ctr run -d failed: $(cat "$TMP/run-d.out"; tail -n 3 "$D/snap.log")"
snaplazy_pre_stop() { "${C[@]}" task kill -s SIGKILL t2 2>/dev/null; "${C[@]}" task delete -f t2 2>/dev/null; }
"${C[@]}" snapshots --snapshotter anole ls >"$TMP/snaps.before" ||
	fail "snapshots ls failed before the kill"
kill -9 "$SNAP_PID"
{ wait "$SNAP_PID"; } 2>/dev/null || true
snapshotter_start "$D"
F=$(cd "$ROOTFS" && echo usr/lib/python3*/pydoc_data/topics.py)
[ -f "$ROOTFS/$F" ] || fail "no $F in the python rootfs"
"${C[@]}" task ls | awk '$1 == "t2" { print $3 }' >"$TMP/t2.status"
[ "$(cat "$TMP/t2.status")" = RUNNING ] || fail "t2 after the restart: $(cat "$TMP/t2.status")"
"${C[@]}" task exec --exec-id read1 t2 /bin/cat "/$F" >"$TMP/read" 2>"$TMP/read.err" ||
	fail "reading /$F in t2 failed: $(cat "$TMP/read.err")"
cmp "$ROOTFS/$F" "$TMP/read" || fail "/$F read in t2 after the restart differs from the image's"
ok=''
for _ in $(seq 100); do
	"${C[@]}" snapshots --snapshotter anole ls >"$TMP/snaps.after" 2>"$TMP/snaps.err" && { ok=1; break; }
	sleep 0.1
done
[ -n "$ok" ] || fail "snapshots ls after the restart: $(cat "$TMP/snaps.err"; tail -n 3 "$D/snap.log")"
cmp "$TMP/snaps.before" "$TMP/snaps.after" ||
	fail "the snapshots differ after the restart: $(diff "$TMP/snaps.before" "$TMP/snaps.after")"
containerd_container_rm t2

# an ordinary image of two gzip layers (a static busybox; a file over
# it), pushed to the same registry, pulled with plain `ctr images pull`
# through the restarted snapshotter (containerd's differ applies each
# layer into its directories) and run from it: the output is the file
# and the whole busybox, byte for byte
P=$TMP/plain
mkdir -p "$P/l1/bin" "$P/l2/etc"
cp /bin/busybox "$P/l1/bin/busybox"
printf 'hello from a gzip layer\n' >"$P/l2/etc/greeting"
for l in l1 l2; do tar --numeric-owner --owner=0 --group=0 -C "$P/$l" -cf "$P/$l.tar" .; done
"$ROOT/tests/lib/ocitool" init "$P/oci"
"$ROOT/tests/lib/ocitool" new "$P/oci" v1
for l in l1 l2; do "$ROOT/tests/lib/ocitool" add-layer "$P/oci" v1 "$P/$l.tar" --compress gzip >/dev/null; done
registry_push "$P/oci" v1 plain/bb:v1
GZ=$REGISTRY/plain/bb:v1
"${C[@]}" images pull --plain-http --snapshotter anole "$GZ" >"$TMP/gz-pull.out" 2>&1 ||
	fail "ctr images pull of the gzip image failed: $(tail -n 3 "$TMP/gz-pull.out"; tail -n 3 "$D/snap.log")"
# (a digest of busybox, not its 2 MB: ctr run's copy of a container's
# stdout can end before the last bytes, seen once under ASan's load)
"${C[@]}" run --rm --snapshotter anole "$GZ" t3 /bin/busybox sh -c 'cat /etc/greeting; sha256sum /bin/busybox' \
	>"$TMP/gz-run.out" 2>"$TMP/gz-run.err" ||
	fail "ctr run of the gzip image failed: $(cat "$TMP/gz-run.err"; tail -n 3 "$D/snap.log")"
{ cat "$P/l2/etc/greeting"; sha256sum /bin/busybox; } >"$TMP/gz-run.want"
cmp "$TMP/gz-run.want" "$TMP/gz-run.out" || fail "the gzip image's container printed something else"

# removal: the images and the content, then containerd's collector
# removes our snapshots (children first), the base through the daemon
containerd_remove_all "$IMG" "$GZ"
# the registry gone at pull: exit 1 with one line, and no image record
kill "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null || true
if "$ANOLE" ctr-pull --address "$D/containerd.sock" "$IMG" >"$TMP/pull2.out" 2>&1; then
	fail "ctr-pull succeeded with the registry gone"
fi
[ "$(wc -l <"$TMP/pull2.out")" = 1 ] && grep -q "^anole: ctr-pull: $IMG: " "$TMP/pull2.out" ||
	fail "ctr-pull with the registry gone said: $(cat "$TMP/pull2.out")"
echo "registry gone: $(cat "$TMP/pull2.out")"
"${C[@]}" images ls -q >"$TMP/images"
[ ! -s "$TMP/images" ] || fail "image records after the failed pull: $(cat "$TMP/images")"
echo "t1001: ctr-pull and ctr run of a lazy python image, a snapshotter restart under it, a gzip image pulled and run, through containerd $("${C[@]}" version | awk '/Version/ { print $2; exit }')"
