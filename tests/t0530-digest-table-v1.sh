#!/bin/bash
# Digest tables of both versions (version 2 since eaf0cfd). `anole convert` writes
# version 2 (ranges cut at the blob's extents, media type digests.v2);
# images converted before it carry version 1 (fixed 64 KiB ranges,
# digests.v1). Here a converted layout is rewritten to version 1, as an
# older anole wrote it, and must still mount lazily (the daemon then
# fetches the chunk index to widen reads to whole extents), read the same
# tree byte for byte, and pull with every range verified. A version 2
# table whose lengths do not add up is refused in one line.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_erofs
need_cmd python3 skopeo umoci
need_fanotify

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
TRUTH=$(dirname "$L")/truth/rootfs
export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
trap '_rc=$?; for m in $(_mounts_under "$TMP"); do "$ANOLE" umount "$m" 2>/dev/null; done
	(exit $_rc); _cleanup' EXIT

"$ANOLE" convert -q "oci:$L:v1" "oci:$TMP/v2:v1" || fail "convert failed"

# rewrite LAYOUT MODE: MODE v1 turns every digest table into version 1;
# MODE badlen makes a version 2 table's last length one block short.
# Prints the chunk index digest of the first data blob.
rewrite() {
	python3 - "$1" "$2" <<'EOF'
import hashlib, json, os, struct, sys
lay, mode = sys.argv[1], sys.argv[2]
def path(d): return os.path.join(lay, "blobs/sha256", d[7:])
def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    open(path(d), "wb").write(data)
    return d, len(data)
idx = json.load(open(os.path.join(lay, "index.json")))
man = json.load(open(path(idx["manifests"][0]["digest"])))
new = {}
for l in man["layers"]:
    if l["mediaType"] != "application/vnd.anole.blob.digests.v2":
        continue
    tab = open(path(l["digest"]), "rb").read()
    assert tab[:8] == b"ANOLEDT2"
    size, count = struct.unpack_from("<QQ", tab, 16)
    if mode == "v1":
        blob = next(b for b in man["layers"] if b.get("annotations", {}).get(
            "dev.anole.blob.digests") == l["digest"])
        data = open(path(blob["digest"]), "rb").read()
        n = (size + 65535) >> 16
        out = b"ANOLEDT1" + struct.pack("<IIQQ", 16, 0, size, n) + bytes(32)
        out += b"".join(hashlib.sha256(data[k << 16:(k + 1) << 16]).digest() for k in range(n))
        mt = "application/vnd.anole.blob.digests.v1"
    else:
        lens = list(struct.unpack_from("<%dI" % count, tab, 64 + 32 * count))
        lens[-1] -= 4096 if lens[-1] > 4096 else 1
        out = tab[:64 + 32 * count] + struct.pack("<%dI" % count, *lens)
        mt = l["mediaType"]
    d, sz = put(out)
    new[l["digest"]] = d
    l.update(mediaType=mt, digest=d, size=sz)
for l in man["layers"]:
    an = l.get("annotations", {})
    if an.get("dev.anole.blob.digests") in new:
        an["dev.anole.blob.digests"] = new[an["dev.anole.blob.digests"]]
        chunks = an["dev.anole.blob.chunks"]
md, ms = put(json.dumps(man, separators=(",", ":")).encode())
idx["manifests"][0].update(digest=md, size=ms)
json.dump(idx, open(os.path.join(lay, "index.json"), "w"))
print(chunks)
EOF
}

echo "== 1. a version 1 layout mounts lazily and reads the same tree"
cp -a "$TMP/v2" "$TMP/v1"
CHUNKS=$(rewrite "$TMP/v1" v1) || fail "rewriting the tables to version 1 failed"
grep -q 'digests.v1' "$TMP/v1/blobs/sha256/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$TMP/v1/index.json")" ||
	fail "the rewritten manifest has no version 1 table"
mkdir -p "$TMP/m"
"$ANOLE" mount --lazy "oci:$TMP/v1:v1" "$TMP/m" ||
	fail "lazy mount of a version 1 layout failed: $(cat "$ANOLE_RUNTIME_DIR/daemon.log" 2>/dev/null)"
# version 1: the daemon needs the chunk index to fetch extents whole
[ -e "$ANOLE_CACHE_DIR/blobs/sha256/${CHUNKS#sha256:}" ] ||
	fail "the mount of a version 1 image did not fetch its chunk index"
# a worker killed now restores the mount, its chunk index too
pid=$(cat "$ANOLE_RUNTIME_DIR/daemon.pid") && kill -9 "$pid" || fail "no worker to kill"
for _ in $(seq 1 100); do
	grep -q "1 mounts restored" "$ANOLE_RUNTIME_DIR/daemon.log" && break
	sleep 0.1
done
grep -q "1 mounts restored" "$ANOLE_RUNTIME_DIR/daemon.log" ||
	fail "no worker restored the mount: $(cat "$ANOLE_RUNTIME_DIR/daemon.log")"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m" >"$TMP/cmp" ||
	fail "version 1 lazy mount differs: $(tail -n 5 "$TMP/cmp")"
tail -n 1 "$TMP/cmp"
grep -q "reads fetch only" "$ANOLE_RUNTIME_DIR/daemon.log" &&
	fail "the daemon went without extents: $(grep 'reads fetch only' "$ANOLE_RUNTIME_DIR/daemon.log")"
"$ANOLE" umount "$TMP/m" || fail "umount failed"

echo "== 2. a version 1 layout pulls, every range verified"
"$ANOLE" pull -q "oci:$TMP/v1:v1" "$TMP/pulled" || fail "pull of a version 1 layout failed"
image_matches "oci:$TMP/pulled:v1" "$TRUTH" "pulled version 1 layout"

echo "== 3. a cached ranges map kept for another table of the same blob is not trusted"
# The same blob under its v1 table left a map behind; a forged one here
# claims every v2 range present (a map of the v2 count of ones, headed by
# the v1 table's digest). Trusting it would serve never-fetched zeros.
export ANOLE_CACHE_DIR=$TMP/cache2 ANOLE_RUNTIME_DIR=$TMP/run2
python3 - "$TMP/v1" "$TMP/v2" "$ANOLE_CACHE_DIR" <<'EOF' || fail "forging the cache failed"
import hashlib, json, os, struct, sys
def man(lay):
    idx = json.load(open(os.path.join(lay, "index.json")))
    return json.load(open(os.path.join(lay, "blobs/sha256", idx["manifests"][0]["digest"][7:])))
def table(m):
    return next(l for l in m["layers"] if l["mediaType"].startswith("application/vnd.anole.blob.digests"))
old, new = table(man(sys.argv[1])), table(man(sys.argv[2]))
blob = next(l for l in man(sys.argv[2])["layers"] if l["mediaType"] == "application/vnd.anole.erofs.blob.v1")
count, = struct.unpack_from("<Q", open(os.path.join(sys.argv[2], "blobs/sha256", new["digest"][7:]), "rb").read(), 24)
part = os.path.join(sys.argv[3], "partial")
os.makedirs(part)
with open(os.path.join(part, blob["digest"][7:]), "wb") as f:
    f.truncate(blob["size"])
with open(os.path.join(part, blob["digest"][7:] + ".ranges"), "wb") as f:
    f.write(bytes.fromhex(old["digest"][7:]) + b"\x01" * count)
EOF
mkdir -p "$TMP/m2"
"$ANOLE" mount --lazy "oci:$TMP/v2:v1" "$TMP/m2" ||
	fail "lazy mount over a forged cache failed: $(cat "$ANOLE_RUNTIME_DIR/daemon.log" 2>/dev/null)"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/m2" >"$TMP/cmp2" ||
	fail "a map kept for another table was trusted: $(tail -n 5 "$TMP/cmp2")"
tail -n 1 "$TMP/cmp2"
"$ANOLE" umount "$TMP/m2" || fail "umount failed"

echo "== 4. a version 2 table whose lengths fall short of the blob: one line"
cp -a "$TMP/v2" "$TMP/bad"
rewrite "$TMP/bad" badlen >/dev/null || fail "rewriting the lengths failed"
expect_fail "$ANOLE" pull -q "oci:$TMP/bad:v1" "$TMP/bad-pulled"
cat "$TMP/last.err"
[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "not one line: $(cat "$TMP/last.err")"
grep -q "digest table ranges hold" "$TMP/last.err" || fail "the error does not say why"
echo ok
