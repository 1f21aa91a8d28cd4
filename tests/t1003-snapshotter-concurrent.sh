#!/bin/bash
# The snapshotter serves calls concurrently: while a Prepare of an anole
# lazy image waits on its registry (the proxy holds the manifest request
# until the test lets it go), Stat and List of other snapshots and a
# Prepare of an ordinary one are answered, and the held Prepare still
# waits (so they did not queue behind it); once the registry answers, it
# ends as it would alone (ALREADY_EXISTS and the lazy mount), a second
# Prepare of the same key is ALREADY_EXISTS without asking the registry
# and does not mount twice, Lists and Prepares from many clients at once
# all succeed, and removal leaves nothing behind.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/snaplazy-raw
. "$ROOT/tests/lib/snaplazy-raw"

T=$TMP/tree
mkdir -p "$T/etc"
printf 'hello from the lazy image\n' >"$T/etc/motd"
registry_start
"$ANOLE" convert -q "$T" "docker://$REGISTRY/lazy/t:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
HOLD=$TMP/hold
faultproxy_start "hold=$HOLD"
registry_curl -H 'Accept: application/vnd.oci.image.manifest.v1+json' /v2/lazy/t/manifests/v1 >"$TMP/manifest.json"
MD=sha256:$(sha256sum <"$TMP/manifest.json" | cut -d' ' -f1)
META=$(python3 -c 'import json, sys; print([l["digest"] for l in json.load(open(sys.argv[1]))["layers"] if "erofs.meta" in l["mediaType"]][0])' "$TMP/manifest.json") ||
	fail "no metadata layer: $(cat "$TMP/manifest.json")"

snapraw_start "$D/snap.sock" "$D/root" "$D/snap.log"

IMG=$PROXY/lazy/t:v1
cri() {
	label containerd.io/snapshot.ref c0
	label containerd.io/snapshot/cri.image-ref "$IMG"
	label containerd.io/snapshot/cri.layer-digest "$META"
	label containerd.io/snapshot/cri.manifest-digest "$MD"
}
# call METHOD HEX CODE WHAT: the call ends with gRPC status CODE; a
# snapshotter that serves one call at a time never answers while the
# held Prepare waits, so a call is given up after 30 s (a failure, not a
# measurement)
call() {
	timeout 30 "$GC" "$D/snap.sock" "$M/$1" "$2" >"$TMP/call.out" ||
		fail "$4: the call failed or got no answer: $(cat "$TMP/call.out")"
	local got
	got=$(head -n 1 "$TMP/call.out")
	[ "${got%% *}" = "$3" ] || fail "$4: status '$got', expected code $3"
	sed -n 2p "$TMP/call.out" >"$TMP/reply"
}
held() { [ -e "$HOLD" ] && kill -0 "$1" 2>/dev/null; }

call Prepare "$(pb 2 plain)" 0 "an ordinary Prepare"

# the lazy Prepare, held at its manifest request
K="ns/1/extract-1 c0"
: >"$HOLD"
"$GC" "$D/snap.sock" "$M/Prepare" "$(pb 2 "$K" 3 "")$(cri)" >"$TMP/lazy.out" 2>&1 &
LAZY_PID=$!
for _ in $(seq 300); do grep -q ' -> held' "$TMP/proxy.log" && break; sleep 0.1; done
grep -q "/manifests/.* -> held" "$TMP/proxy.log" || fail "the Prepare never reached the registry: $(cat "$TMP/proxy.log")"

# meanwhile: other calls are answered, and the Prepare still waits
call Stat "$(pb 2 plain)" 0 "Stat while a Prepare waits"
call List "" 0 "List while a Prepare waits"
grep -q "$(printf plain | od -An -tx1 | tr -d ' \n')" "$TMP/reply" || fail "List lacks plain: $(cat "$TMP/reply")"
held "$LAZY_PID" || fail "the lazy Prepare ended before the registry answered: $(cat "$TMP/lazy.out")"
call Prepare "$(pb 2 plain2 3 "")" 0 "an ordinary Prepare while a lazy one waits"
call Stat "$(pb 2 "$K")" 5 "Stat of the key being prepared"
held "$LAZY_PID" || fail "the lazy Prepare ended before the registry answered: $(cat "$TMP/lazy.out")"
python3 - "$D/root/metadata.json" "$K" <<'EOP' || fail "records while held: $(cat "$D/root/metadata.json")"
import json, sys
s = json.load(open(sys.argv[1]))["snapshots"]
assert sorted(s) == ["plain", "plain2"], sorted(s)
EOP
# Cleanup meanwhile leaves the held Prepare's directory alone
call Cleanup "" 0 "Cleanup while a Prepare waits"
rm "$HOLD"
wait "$LAZY_PID" || fail "the lazy Prepare's call failed: $(cat "$TMP/lazy.out")"
[ "$(head -n 1 "$TMP/lazy.out" | cut -d' ' -f1)" = 6 ] || fail "the lazy Prepare answered: $(cat "$TMP/lazy.out")"
base=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["snapshots"][sys.argv[2]]["lazy"]["mountpoint"])' \
	"$D/root/metadata.json" "$K") || fail "no lazy record: $(cat "$D/root/metadata.json")"
[ "$(awk -v m="$base" '$2 == m && $3 == "erofs"' /proc/mounts | wc -l)" = 1 ] ||
	fail "not one lazy EROFS mount at $base: $(grep "$TMP" /proc/mounts)"
[ "$(cat "$base/etc/motd")" = "hello from the lazy image" ] || fail "motd through the lazy mount"
# the same key again: ALREADY_EXISTS at once (the registry held again
# would keep a call that asked it), the mount not made twice
: >"$HOLD"
call Prepare "$(pb 2 "$K" 3 "")$(cri)" 6 "a second Prepare of the lazy key"
rm "$HOLD"
[ "$(awk -v m="$base" '$2 == m' /proc/mounts | wc -l)" = 1 ] || fail "a second mount at $base"

# List from many clients at once while Prepares and Removes go on: each
# answer is whole
pids=()
for i in 1 2 3 4 5 6; do
	"$GC" "$D/snap.sock" "$M/Prepare" "$(pb 2 "p$i")" >"$TMP/p$i.out" 2>&1 &
	pids+=($!)
	"$GC" "$D/snap.sock" "$M/List" "" >"$TMP/l$i.out" 2>&1 &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent call could not be made"; done
for i in 1 2 3 4 5 6; do
	[ "$(head -n 1 "$TMP/p$i.out" | cut -d' ' -f1)" = 0 ] || fail "Prepare p$i: $(cat "$TMP/p$i.out")"
	[ "$(head -n 1 "$TMP/l$i.out" | cut -d' ' -f1)" = 0 ] || fail "List $i: $(cat "$TMP/l$i.out")"
done
for k in plain plain2 "$K" p1 p2 p3 p4 p5 p6; do call Remove "$(pb 2 "$k")" 0 "Remove of $k"; done
! grep -q " $D/" /proc/mounts || fail "a mount is left: $(grep " $D/" /proc/mounts)"
left=$(find "$D/root/snapshots" -mindepth 1)
[ -z "$left" ] || fail "left behind: $left"
kill "$SNAP_PID"
wait "$SNAP_PID" || fail "the snapshotter did not stop cleanly: $(cat "$D/snap.log")"
SNAP_PID=
echo "t1003: Stat, List, Prepare and Cleanup answered while a lazy Prepare waited on its registry"
