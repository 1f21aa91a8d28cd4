#!/bin/bash
# anole lazy images as containerd remote snapshots. The snapshotter, told
# by a Prepare's labels (containerd.io/snapshot.ref and the cri.* ones)
# that a layer is an anole lazy image's metadata layer, has the daemon
# lazily mount the image at its snapshot directory and answers
# ALREADY_EXISTS; the layers above become empty snapshots over it; a
# container's snapshot is an overlay with the lazy mount lowest; Remove
# unmounts through the daemon; Cleanup after a crash unmounts a lazy
# mount whose record was lost. No data blob leaves the registry at the
# Prepare (the proxy's log); a registry gone answers UNAVAILABLE.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/snaplazy-raw
. "$ROOT/tests/lib/snaplazy-raw"

# a small tree, a lazy image of it in the registry, read through a proxy
# that logs every request
T=$TMP/tree
mkdir -p "$T/bin" "$T/etc"
printf 'hello from the lazy image\n' >"$T/etc/motd"
head -c 300000 /dev/urandom >"$T/bin/big"
registry_start
"$ANOLE" convert -q "$T" "docker://$REGISTRY/lazy/t:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
faultproxy_start
registry_curl -H 'Accept: application/vnd.oci.image.manifest.v1+json' /v2/lazy/t/manifests/v1 >"$TMP/manifest.json"
MD=sha256:$(sha256sum <"$TMP/manifest.json" | cut -d' ' -f1)
read -r META DATA < <(python3 - "$TMP/manifest.json" <<'EOP'
import json, sys
ls = json.load(open(sys.argv[1]))["layers"]
meta = [l["digest"] for l in ls if "erofs.meta" in l["mediaType"]]
data = [l["digest"] for l in ls if l["mediaType"].endswith("erofs.blob.v1")]
print(meta[0], " ".join(data))
EOP
)
[ -n "$DATA" ] || fail "the image has no data blob: $(cat "$TMP/manifest.json")"

start_snapshotter() { snapraw_start "$D/snap.sock" "$D/root" "$D/snap.log"; }
start_snapshotter
# the labels containerd's unpacker sends for layer digest $2 (chain $1)
# of image $3
cri() {
	label containerd.io/snapshot.ref "$1"
	label containerd.io/snapshot/cri.image-ref "$3"
	label containerd.io/snapshot/cri.layer-digest "$2"
	label containerd.io/snapshot/cri.manifest-digest "$MD"
}
# call METHOD HEX CODE WHAT: the call ends with gRPC status CODE; the
# reply's bytes in $TMP/reply
call() {
	"$GC" "$D/snap.sock" "$M/$1" "$2" >"$TMP/call.out" || fail "$4: the call failed"
	local got
	got=$(head -n 1 "$TMP/call.out")
	[ "${got%% *}" = "$3" ] || fail "$4: status '$got', expected code $3"
	sed -n 2p "$TMP/call.out" >"$TMP/reply"
}

IMG=$PROXY/lazy/t:v1
: >"$TMP/proxy.log"
call Prepare "$(pb 2 "ns/1/extract-1 c0" 3 "")$(cri c0 "$META" "$IMG")" 6 "the metadata layer's Prepare"
base=$D/root/snapshots/1/fs
awk -v m="$base" '$2 == m && $3 == "erofs"' /proc/mounts | grep -q . ||
	fail "no lazy EROFS mount at $base: $(grep "$TMP" /proc/mounts)"
for d in $DATA; do
	! grep -q "blobs/$d" "$TMP/proxy.log" || fail "data blob $d fetched at Prepare: $(cat "$TMP/proxy.log")"
done
grep -q "manifests/" "$TMP/proxy.log" || fail "the registry saw no manifest request"
set -- $DATA
call Prepare "$(pb 2 "ns/2/extract-2 c1" 3 "ns/1/extract-1 c0")$(cri c1 "$1" "$IMG")" 6 "an upper layer's Prepare"
python3 - "$D/root/metadata.json" "$base" <<'EOP' || fail "records: $(cat "$D/root/metadata.json")"
import json, sys
s = json.load(open(sys.argv[1]))["snapshots"]
b, u = s["ns/1/extract-1 c0"], s["ns/2/extract-2 c1"]
assert b["kind"] == u["kind"] == "committed", (b, u)
assert b["lazy"]["mountpoint"] == sys.argv[2] and b["lazy"]["ref"].startswith("docker://"), b
assert u["lazy"]["upper"] is True and u["parent"] == "ns/1/extract-1 c0", u
assert b["labels"]["containerd.io/snapshot.ref"] == "c0", b
EOP

# a container over the chain: an overlay with the lazy mount lowest
call Prepare "$(pb 2 ctr 3 "ns/2/extract-2 c1")" 0 "a container's Prepare"
opts=$(python3 - "$TMP/reply" <<'EOP'
import sys
b = bytes.fromhex(open(sys.argv[1]).read().strip())
def fields(b):
    i = 0
    while i < len(b):
        key = b[i]; i += 1
        n = 0; s = 0
        while True:
            c = b[i]; i += 1; n |= (c & 0x7f) << s; s += 7
            if c < 0x80: break
        yield key >> 3, b[i:i + n]; i += n
(mount,) = [v for f, v in fields(b) if f == 1]
m = {}
for f, v in fields(mount):
    m.setdefault(f, []).append(v.decode())
assert m[1] == ["overlay"], m
print(",".join(m[4]))
EOP
) || fail "the container's mounts: $(cat "$TMP/reply")"
case $opts in *"lowerdir=$base") ;; *) fail "the lazy mount is not the only lower: $opts" ;; esac
mkdir -p "$TMP/c"
mount -t overlay overlay -o "$opts" "$TMP/c" || fail "mount -o $opts failed"
[ "$(cat "$TMP/c/etc/motd")" = "hello from the lazy image" ] || fail "motd through the overlay"
cmp "$T/bin/big" "$TMP/c/bin/big" || fail "bin/big through the overlay differs"
echo written >"$TMP/c/new"
umount "$TMP/c"
[ "$(cat "$D/root/snapshots/3/fs/new")" = written ] || fail "the container's upper lost its file"
"$TREECMP" --ignore-root-mtime "$T" "$base" >"$TMP/cmp" || fail "the lazy mount differs: $(tail -n 5 "$TMP/cmp")"

# removal, children first: the lazy mount goes through the daemon
call Remove "$(pb 2 "ns/1/extract-1 c0")" 9 "Remove of the base under its children"
call Remove "$(pb 2 ctr)" 0 "Remove of the container"
call Remove "$(pb 2 "ns/2/extract-2 c1")" 0 "Remove of the upper layer"
call Remove "$(pb 2 "ns/1/extract-1 c0")" 0 "Remove of the base"
! grep -q " $D/" /proc/mounts || fail "a mount is left: $(grep " $D/" /proc/mounts)"
left=$(find "$D/root/snapshots" -mindepth 1)
[ -z "$left" ] || fail "left behind: $left"
"$ANOLE" status 2>&1 | grep -q "$base" && fail "the daemon still serves $base: $("$ANOLE" status 2>&1)"

# an ordinary image (a config the client rejects as not anole's) takes
# the ordinary path: an active snapshot with its own directory
call Prepare "$(pb 2 plain)$(label containerd.io/snapshot.ref p0)" 0 "a Prepare without cri labels"
call Remove "$(pb 2 plain)" 0 "Remove of it"

# a crash between the lazy mount and its record's write (the record
# taken out of metadata.json while the snapshotter is down): after the
# restart, Cleanup unmounts the orphan through the daemon and removes
# its directory
K="ns/4/extract-4 c0"
call Prepare "$(pb 2 "$K" 3 "")$(cri c0 "$META" "$IMG")" 6 "the metadata layer's Prepare again"
orphan=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["snapshots"][sys.argv[2]]["lazy"]["mountpoint"])' \
	"$D/root/metadata.json" "$K") || fail "no lazy record: $(cat "$D/root/metadata.json")"
kill -9 "$SNAP_PID"
{ wait "$SNAP_PID"; } 2>/dev/null || true
python3 - "$D/root/metadata.json" "$K" <<'EOP'
import json, sys
d = json.load(open(sys.argv[1]))
del d["snapshots"][sys.argv[2]]
json.dump(d, open(sys.argv[1], "w"))
EOP
start_snapshotter
awk -v m="$orphan" '$2 == m' /proc/mounts | grep -q . || fail "the orphan $orphan is not mounted"
call Cleanup "" 0 "Cleanup of an orphaned lazy mount"
! awk -v m="$orphan" '$2 == m' /proc/mounts | grep -q . || fail "Cleanup left the mount at $orphan"
left=$(find "$D/root/snapshots" -mindepth 1)
[ -z "$left" ] || fail "Cleanup left $left"
"$ANOLE" status 2>&1 | grep -q "$orphan" && fail "the daemon still serves $orphan: $("$ANOLE" status 2>&1)"

# the registry gone: UNAVAILABLE, one line, nothing left, still serving
kill "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null || true
call Prepare "$(pb 2 "ns/3/extract-3 c0" 3 "")$(cri c0 "$META" "$IMG")" 14 "a Prepare with the registry gone"
grep -q "$PROXY" "$TMP/call.out" || fail "UNAVAILABLE without the reason: $(cat "$TMP/call.out")"
left=$(find "$D/root/snapshots" -mindepth 1)
[ -z "$left" ] || fail "a failed Prepare left $left"
call Stat "$(pb 2 "ns/3/extract-3 c0")" 5 "Stat after the failed Prepare"

kill "$SNAP_PID"
wait "$SNAP_PID" || fail "the snapshotter did not stop cleanly: $(cat "$D/snap.log")"
SNAP_PID=
if grep -v '^anole-snapshotter: /containerd.services.snapshots.v1.Snapshots/[A-Za-z]*: ' "$D/snap.log"; then
	fail "the snapshotter logged more than its one-line messages"
fi
echo "t1001: a lazy image as a remote snapshot: mount, upper layer, container overlay, removal, registry gone"
