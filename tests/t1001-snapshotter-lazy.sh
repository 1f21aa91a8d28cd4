#!/bin/bash
# `anole ctr-pull` and `ctr run` of an anole lazy image through the
# snapshotter: a containerd of the test's own (root, state, sockets, the
# proxy plugin; never the system's), `anole snapshotter`, a local
# registry behind a proxy that logs each request. The pull fetches no
# data blob; python3 runs from the lazy mount; removing the container,
# the image and containerd's content leaves no mount, snapshot directory
# or lazy mount in the daemon.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/containerd
. "$ROOT/tests/lib/containerd"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_fanotify
need_cmd containerd ctr docker-registry skopeo python3
[ -x "$(dirname "$ANOLE")/anole-ctr-pull" ] || skip "anole was built without gRPC"
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

"$ANOLE" snapshotter --print-config --socket "$D/snap.sock" >"$D/snap.toml"
{ echo "version = 2"; containerd_config "$D"; grep -v '^version' "$D/snap.toml"; } >"$D/containerd.toml"
"$ANOLE" snapshotter --socket "$D/snap.sock" --root "$D/snaproot" 2>>"$D/snap.log" &
SNAP_PID=$!
containerd --config "$D/containerd.toml" >"$D/containerd.log" 2>&1 &
CTD_PID=$!
C=(ctr --address "$D/containerd.sock")
for _ in $(seq 300); do "${C[@]}" plugins ls 2>/dev/null | grep -q 'snapshotter.v1 *anole .* ok' && break; sleep 0.1; done
"${C[@]}" plugins ls | grep -q 'io.containerd.snapshotter.v1 *anole .* ok' ||
	fail "containerd did not load the proxy plugin: $(tail -n 5 "$D/containerd.log")"

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

# removal: the image and the content, then containerd's collector
# removes our snapshots (children first), the base through the daemon
"${C[@]}" images rm --sync "$IMG" >/dev/null
"${C[@]}" content prune references >/dev/null 2>&1 || true
lease=$("${C[@]}" leases create | awk '{ print $1 }')
"${C[@]}" leases delete --sync "$lease" >/dev/null
left=$("${C[@]}" snapshots --snapshotter anole ls | tail -n +2)
[ -z "$left" ] || fail "snapshots left: $left"
! grep -q " $D/" /proc/mounts || fail "a mount is left: $(grep " $D/" /proc/mounts)"
left=$(find "$D/snaproot/snapshots" -mindepth 1 -maxdepth 1)
[ -z "$left" ] || fail "left behind: $left"
"$ANOLE" status >"$TMP/status" 2>&1 || true
! grep -q "$D/snaproot" "$TMP/status" || fail "the daemon still serves: $(cat "$TMP/status")"
# the shared cache keeps what was fetched (for the next pull) but no
# mount holds it any more: a gc to size 0 empties it
"$ANOLE" cache gc --max-size 0 >/dev/null
left=$(find "$ANOLE_CACHE_DIR/blobs" -type f 2>/dev/null)
[ -z "$left" ] || fail "cache entries still held: $left"
echo "t1001: ctr-pull and ctr run of a lazy python image through containerd $("${C[@]}" version | awk '/Version/ { print $2; exit }')"
