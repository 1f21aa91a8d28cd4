#!/bin/bash
# Lazy images end to end: `anole convert` of the multi-layer OCI
# test image to Debian's docker-registry and to an OCI layout writes an
# anole manifest (metadata image, then per data blob: blob, digest table,
# chunk index); `anole pull` fetches and verifies it and `anole mount` of
# the pulled layout equals `umoci unpack` of the source. Converts are
# deterministic and skip blobs the target has; --dedup-with reuses an
# earlier image's blob (cross-repository mount) and the result still
# mounts equal to its tree; a byte flipped in the registry's copy of a
# data blob fails the pull naming the blob and the byte range and leaves
# nothing unverified; bad references and hand-broken manifests (unknown
# layer type, truncated JSON, bytes not matching the digest, a metadata
# image reading a blob the manifest does not list) fail with one line.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci zstd python3 curl

MiB=1048576
SMALL=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
SMALL_TRUTH=$(dirname "$SMALL")/truth/rootfs
FULL=$("$ROOT/tests/lib/mkoci" 2>"$TMP/mkoci.err") || FULL=
if [ -n "$FULL" ]; then
	L=$FULL
else
	echo "full image not available ($(tail -n 1 "$TMP/mkoci.err")): using the small one"
	L=$SMALL
fi
TRUTH=$(dirname "$L")/truth/rootfs
[ -d "$TRUTH" ] || fail "no truth tree at $TRUTH"

registry_start
V2=$REGISTRY_DIR/data/docker/registry/v2

regbytes() {	# regbytes WHAT: log the registry's blob bytes
	echo "registry blob bytes after $1: $(du -sb "$V2/blobs" | cut -f1)"
}

# regblob DIGEST: path of a blob's data in the registry's storage
# patches: the number of PATCH requests (chunked uploads) the registry saw
patches() {
	grep -c 'http.request.method=PATCH' "$REGISTRY_DIR/registry.log" || true
}

regblob() {
	local hex=${1#sha256:}
	echo "$V2/blobs/sha256/${hex:0:2}/$hex/data"
}

# convert_to SOURCE TARGET OUT [OPTIONS...]: anole convert, summary to OUT;
# prints the manifest digest (the first summary line is TARGET@DIGEST).
convert_to() {
	local src=$1 dst=$2 out=$3 d
	shift 3
	"$ANOLE" convert "$@" "$src" "$dst" >"$out" 2>"$out.err" ||
		fail "convert $src -> $dst failed: $(tail -n 3 "$out.err")"
	d=$(head -n 1 "$out")
	case $d in
	"$dst@sha256:"*) ;;
	*) fail "convert $src -> $dst: first summary line is '$d', not TARGET@DIGEST" ;;
	esac
	echo "${d##*@}"
}

# summary_count OUT WORD: the number before WORD ("uploaded", "mounted",
# "already there") on the summary's blob line.
summary_count() {
	local n
	n=$(sed -n -E "s/.* ([0-9]+) $2.*/\1/p" "$1" | head -n 1)
	[ -n "$n" ] || fail "no '$2' count in the convert summary: $(cat "$1")"
	echo "$n"
}

# jq-like access to inspect --json: jget FILE PYTHON-EXPR (o = the object)
jget() {
	python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# one_line WHAT: the failure in $TMP/last.err is exactly one line
one_line() {
	[ "$(wc -l <"$TMP/last.err")" = 1 ] ||
		fail "$1: error is not one line: $(cat "$TMP/last.err")"
}

# check_manifest RAW-MANIFEST DIGEST WHAT: the structure of an anole
# manifest, its digest, and each digest table against its blob (blobs are
# read from the registry storage).
check_manifest() {
	python3 - "$1" "$2" "$V2" <<'EOF' || fail "$3: manifest check failed"
import hashlib, json, os, struct, sys
raw = open(sys.argv[1], "rb").read()
want, v2 = sys.argv[2], sys.argv[3]
def blob(d):
    h = d[7:]
    return os.path.join(v2, "blobs/sha256", h[:2], h, "data")
got = "sha256:" + hashlib.sha256(raw).hexdigest()
assert got == want, "manifest bytes hash to %s, convert said %s" % (got, want)
m = json.loads(raw)
assert m.get("mediaType") == "application/vnd.oci.image.manifest.v1+json", m.get("mediaType")
assert m.get("artifactType") == "application/vnd.anole.image.v1", m.get("artifactType")
assert m["config"]["mediaType"] == "application/vnd.anole.config.v1+json", m["config"]
L = m["layers"]
assert L[0]["mediaType"].startswith("application/vnd.anole.erofs.meta.v1"), L[0]
H = [d for d in L if d["mediaType"] == "application/vnd.anole.load-hints.v1+json"]
assert len(H) <= 1 and (not H or H[0] is L[-1]), "load hints not last, or twice"
if H:  # JSON of files and programs (t0710 checks what they hold)
    h = json.load(open(blob(H[0]["digest"])))
    assert h["version"] == 1 and isinstance(h["files"], list) and isinstance(h["programs"], list), h.keys()
for d in [m["config"]] + L:
    assert os.path.getsize(blob(d["digest"])) == d["size"], "size of %s" % d["digest"]
L = L[:len(L) - len(H)]
assert len(L) >= 4 and (len(L) - 1) % 3 == 0, "%d layers" % len(L)
for i in range(1, len(L), 3):
    b, t, c = L[i:i + 3]
    assert b["mediaType"] == "application/vnd.anole.erofs.blob.v1", b
    assert t["mediaType"] == "application/vnd.anole.blob.digests.v2", t
    assert c["mediaType"] == "application/vnd.anole.blob.chunks.v1", c
    assert b["annotations"]["dev.anole.blob.digests"] == t["digest"], b
    assert b["annotations"]["dev.anole.blob.chunks"] == c["digest"], b
    tab = open(blob(t["digest"]), "rb").read()
    assert tab[:8] == b"ANOLEDT2", tab[:8]
    bits, = struct.unpack_from("<I", tab, 8)
    size, count = struct.unpack_from("<QQ", tab, 16)
    assert bits == 16 and size == b["size"], (bits, size, b["size"])  # convert's default
    assert len(tab) == 64 + 36 * count, (count, len(tab))
    lens = struct.unpack_from("<%dI" % count, tab, 64 + 32 * count)
    assert sum(lens) == size and all(0 < n <= 1 << 20 for n in lens), lens
    starts = [sum(lens[:k]) for k in range(count)] if count < 5000 else None
    with open(blob(b["digest"]), "rb") as f:
        for k in range(count):
            h = hashlib.sha256(f.read(lens[k])).digest()
            assert h == tab[64 + 32 * k:96 + 32 * k], "%s: range %d differs from its table" % (b["digest"], k + 1)
    ci = open(blob(c["digest"]), "rb").read()
    assert ci[:8] == b"ANOLECX1", c
    # ranges are cut at compressed extents: one bigger than a 64 KiB range
    # is a range of its own; other ranges hold at most 64 KiB
    n, = struct.unpack_from("<Q", ci, 24)
    ext = set()
    for k in range(n):
        addr, cblocks, nblocks = struct.unpack_from("<III", ci, 64 + 48 * k + 32)
        if cblocks and nblocks * 4096 > 1 << bits:
            ext.add((addr * 4096, nblocks * 4096))
    ranges = set(zip(starts, lens)) if starts is not None else ext
    assert ext <= ranges, "compressed extents that are not ranges: %s" % sorted(ext - ranges)[:5]
    assert all(n <= 1 << bits or (s, n) in ext for s, n in ranges), "a long range that is no extent"
EOF
}

# check_pulled DIR DIGEST TAG WHAT: index.json of a pulled layout names
# DIGEST once under TAG, and every blob file is named by its content.
check_pulled() {
	python3 - "$1" "$2" "$3" <<'EOF' || fail "$4: pulled layout check failed"
import hashlib, json, os, sys
d, want, tag = sys.argv[1:4]
ix = json.load(open(os.path.join(d, "index.json")))
e = [m for m in ix["manifests"]
     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
assert len(e) == 1, "%d index.json entries for tag %s" % (len(e), tag)
assert e[0]["digest"] == want, "tag %s -> %s, not %s" % (tag, e[0]["digest"], want)
bd = os.path.join(d, "blobs/sha256")
for n in os.listdir(bd):
    h = hashlib.sha256()
    with open(os.path.join(bd, n), "rb") as f:
        for x in iter(lambda: f.read(1 << 20), b""):
            h.update(x)
    assert h.hexdigest() == n, "blobs/sha256/%s holds other bytes" % n
EOF
}

########################################################################
echo "== 1. convert to the registry, pull, mount: $L"
D1=$(convert_to "oci:$L:v1" "docker://$REGISTRY/lazy/full:v1" "$TMP/c1.out")
cat "$TMP/c1.out"
regbytes "lazy/full:v1"
[ "$(summary_count "$TMP/c1.out" "already there")" = 0 ] ||
	fail "first convert into an empty registry found blobs already there: $(cat "$TMP/c1.out")"
registry_curl -f -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	-o "$TMP/full.manifest" /v2/lazy/full/manifests/v1 || fail "registry has no lazy/full:v1 manifest"
check_manifest "$TMP/full.manifest" "$D1" "lazy/full:v1"

"$ANOLE" inspect --json "docker://$REGISTRY/lazy/full:v1" >"$TMP/full.json" ||
	fail "inspect of docker://.../lazy/full:v1 failed"
[ "$(jget "$TMP/full.json" 'o["manifest"]')" = "$D1" ] || fail "inspect shows another manifest digest than convert"
[ "$(jget "$TMP/full.json" 'len(o["data_blobs"])')" = 1 ] || fail "full image without --dedup-with has not exactly 1 data blob"
BIG=$(jget "$TMP/full.json" 'o["data_blobs"][0]["digest"]')
BIG_BYTES=$(jget "$TMP/full.json" 'o["data_blobs"][0]["bytes"]')
[ "$(jget "$TMP/full.json" '[b["origin"] for b in o["config"]["blobs"]]')" = "['new']" ] ||
	fail "config.blobs of a plain convert: $(jget "$TMP/full.json" 'o["config"]["blobs"]')"
[ "$(stat -c %s "$(regblob "$BIG")")" = "$BIG_BYTES" ] || fail "inspect's data blob size differs from the registry's"

"$ANOLE" pull "docker://$REGISTRY/lazy/full:v1" "$TMP/pulled" >"$TMP/pull.out" ||
	fail "pull of lazy/full:v1 failed"
cat "$TMP/pull.out"
check_pulled "$TMP/pulled" "$D1" v1 "lazy/full:v1"
[ -f "$TMP/pulled/blobs/sha256/${BIG#sha256:}" ] || fail "pull did not store the data blob"
image_matches "$TMP/pulled" "$TRUTH" "pulled lazy/full:v1"
echo "pulled lazy/full:v1 mounts equal to the truth"

echo "== 1b. small image from a docker:// source"
registry_push "$SMALL" v1 anole/small || fail "push of the small image failed"
p0=$(patches)
DS=$(convert_to "docker://$REGISTRY/anole/small:v1" "docker://$REGISTRY/lazy/small:v1" "$TMP/cs.out" --chunk-size 64K)
cat "$TMP/cs.out"
[ $(($(patches) - p0)) -ge 16 ] || fail "--chunk-size 64K: the registry saw only $(($(patches) - p0)) PATCH requests"
regbytes "lazy/small:v1 (from docker://)"
"$ANOLE" pull -q "docker://$REGISTRY/lazy/small:v1" "$TMP/small-pulled" || fail "pull of lazy/small:v1 failed"
check_pulled "$TMP/small-pulled" "$DS" v1 "lazy/small:v1"
image_matches "$TMP/small-pulled" "$SMALL_TRUTH" "pulled lazy/small:v1"
DSO=$(convert_to "oci:$SMALL:v1" "docker://$REGISTRY/lazy/small:from-oci" "$TMP/cso.out")
[ "$DSO" = "$DS" ] || fail "small image: convert from docker:// gives $DS, from oci: $DSO"

########################################################################
echo "== 2. again: blobs already there, deterministic, OCI layout target"
D2=$(convert_to "oci:$L:v1" "docker://$REGISTRY/lazy/full:v2" "$TMP/c2.out")
cat "$TMP/c2.out"
regbytes "lazy/full:v2"
[ "$D2" = "$D1" ] || fail "two converts of the same source: manifests $D1 and $D2"
[ "$(summary_count "$TMP/c2.out" uploaded)" = 0 ] ||
	fail "second convert to the same repository uploaded blobs: $(cat "$TMP/c2.out")"
[ "$(summary_count "$TMP/c2.out" "already there")" -ge 4 ] ||
	fail "second convert did not find the blobs already there: $(cat "$TMP/c2.out")"

DL=$(convert_to "oci:$L:v1" "oci:$TMP/layout:v1" "$TMP/cl.out")
cat "$TMP/cl.out"
[ "$DL" = "$D1" ] || fail "convert to oci: gives manifest $DL, to the registry $D1"
[ -f "$TMP/layout/blobs/sha256/${BIG#sha256:}" ] || fail "layout target lacks the data blob $BIG"
cmp -s "$TMP/layout/blobs/sha256/${BIG#sha256:}" "$(regblob "$BIG")" ||
	fail "layout's data blob differs from the registry's"
image_matches "oci:$TMP/layout:v1" "$TRUTH" "converted layout oci:\$TMP/layout:v1"
echo "oci:\$TMP/layout:v1 mounts equal to the truth"
DL2=$(convert_to "oci:$L:v1" "oci:$TMP/layout2:v1" "$TMP/cl2.out")
[ "$DL2" = "$DL" ] || fail "two converts to layouts: manifests $DL and $DL2"
for f in "$TMP"/layout/blobs/sha256/*; do
	cmp -s "$f" "$TMP/layout2/blobs/sha256/${f##*/}" || fail "layouts differ in blob ${f##*/}"
done

########################################################################
echo "== 3. dedup: two similar rootfs trees"
if PAIR=$("$ROOT/tests/lib/rootfs-pair" 2>"$TMP/pair.err"); then
	A=$(sed -n 1p <<<"$PAIR")
	B=$(sed -n 2p <<<"$PAIR")
	p0=$(patches)
	DA=$(convert_to "$A" "docker://$REGISTRY/pair/a:v1" "$TMP/ca.out" --chunk-size 4M)
	cat "$TMP/ca.out"
	regbytes "pair/a:v1"
	"$ANOLE" inspect --json "docker://$REGISTRY/pair/a:v1" >"$TMP/a.json" || fail "inspect pair/a:v1 failed"
	ABLOB=$(jget "$TMP/a.json" 'o["data_blobs"][0]["digest"]')
	ABYTES=$(jget "$TMP/a.json" 'o["data_blobs"][0]["bytes"]')
	np=$(($(patches) - p0))
	echo "--chunk-size 4M: the registry saw $np PATCH requests"
	[ $np -ge $((ABYTES / (4 * MiB))) ] ||
		fail "--chunk-size 4M: $np PATCH requests for a blob of $ABYTES bytes"

	DB=$(convert_to "$B" "docker://$REGISTRY/pair/b:v1" "$TMP/cb.out" \
		--dedup-with "docker://$REGISTRY/pair/a:v1")
	cat "$TMP/cb.out"
	regbytes "pair/b:v1 (--dedup-with pair/a:v1)"
	registry_curl -f -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-o "$TMP/b.manifest" /v2/pair/b/manifests/v1 || fail "registry has no pair/b:v1 manifest"
	check_manifest "$TMP/b.manifest" "$DB" "pair/b:v1"
	"$ANOLE" inspect --json "docker://$REGISTRY/pair/b:v1" >"$TMP/b.json" || fail "inspect pair/b:v1 failed"
	[ "$(jget "$TMP/b.json" 'len(o["data_blobs"])')" = 2 ] ||
		fail "pair/b:v1 lists $(jget "$TMP/b.json" 'len(o["data_blobs"])') data blobs, not 2 (its own and A's)"
	[ "$(jget "$TMP/b.json" "sum(b['digest'] == '$ABLOB' for b in o['data_blobs'])")" = 1 ] ||
		fail "pair/b:v1 does not list A's blob $ABLOB"
	[ "$(jget "$TMP/b.json" "[b['origin'] for b in o['config']['blobs'] if b['digest'] == '$ABLOB']")" = "['reused']" ] ||
		fail "config.blobs does not mark A's blob reused: $(jget "$TMP/b.json" 'o["config"]["blobs"]')"
	reused=$(jget "$TMP/b.json" 'o["config"]["dedup"]["reusedBytes"]')
	echo "B: reusedBytes $reused of fileBytes $(jget "$TMP/b.json" 'o["config"]["dedup"]["fileBytes"]')"
	[ "$reused" -gt 0 ] || fail "config.dedup.reusedBytes of pair/b:v1 is $reused"
	[ "$(summary_count "$TMP/cb.out" mounted)" -ge 1 ] ||
		fail "--dedup-with: no blob came by cross-repository mount: $(cat "$TMP/cb.out")"
	[ -f "$V2/repositories/pair/b/_layers/sha256/${ABLOB#sha256:}/link" ] ||
		fail "the registry's pair/b repository does not hold A's blob"
	up=$(sed -n -E 's/.* uploaded \(([0-9.]+) MiB\).*/\1/p' "$TMP/cb.out")
	python3 -c "import sys; sys.exit(not float('$up') * $MiB < $ABYTES / 2)" ||
		fail "--dedup-with: B uploaded $up MiB, A's blob is only $ABYTES bytes"

	# pull A, then B into the same layout: A's blob is already there
	"$ANOLE" pull -q "docker://$REGISTRY/pair/a:v1" "$TMP/pab" || fail "pull pair/a:v1 failed"
	"$ANOLE" pull "docker://$REGISTRY/pair/b:v1" "$TMP/pab" >"$TMP/pb.out" || fail "pull pair/b:v1 failed"
	cat "$TMP/pb.out"
	grep -Eq '[1-9][0-9]* already there' "$TMP/pb.out" ||
		fail "pull of B into a layout holding A fetched A's blob again: $(cat "$TMP/pb.out")"
	check_pulled "$TMP/pab" "$DB" v1 "pair/b:v1 over pair/a:v1"
	[ "$DA" != "$DB" ] || fail "A and B have the same manifest"
	image_matches "oci:$TMP/pab:v1" "$B" "pulled pair/b:v1"
	echo "pulled pair/b:v1 mounts equal to $B"
else
	echo "dedup part skipped: no rootfs pair: $(tail -n 1 "$TMP/pair.err")"
fi

########################################################################
echo "== 4. a flipped byte in the registry's copy of the data blob"
HEX=${BIG#sha256:}
DATA=$(regblob "$BIG")
flip() {	# flip FILE OFFSET
	python3 -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))
' "$1" "$2"
}
# no_trace DIR WHAT: nothing named after the blob, no tag, all blobs verified
no_trace() {
	[ -z "$(find "$1" -name "*$HEX*" 2>/dev/null)" ] ||
		fail "$2: unverified blob left: $(find "$1" -name "*$HEX*")"
	if [ -f "$1/index.json" ]; then
		[ "$(jget "$1/index.json" 'len(o.get("manifests", []))')" = 0 ] ||
			fail "$2: index.json has an entry: $(cat "$1/index.json")"
	fi
	if [ -d "$1/blobs/sha256" ]; then
		for f in "$1"/blobs/sha256/*; do
			[ -e "$f" ] || continue
			[ "$(sha256sum <"$f" | cut -d' ' -f1)" = "${f##*/}" ] ||
				fail "$2: $f is not named by its content"
		done
	fi
}
for where in middle last; do
	if [ $where = middle ]; then
		off=$((BIG_BYTES / 2))
	else
		off=$((BIG_BYTES - 1))
	fi
	# the range of the digest table that holds it
	read -r first last < <(python3 -c '
import struct, sys
tab = open(sys.argv[1], "rb").read(); off = int(sys.argv[2])
count, = struct.unpack_from("<Q", tab, 24)
at = 0
for n in struct.unpack_from("<%dI" % count, tab, 64 + 32 * count):
    if off < at + n:
        print(at, at + n - 1); break
    at += n
' "$(regblob "$(jget "$TMP/full.json" 'o["data_blobs"][0]["digest_table"]')")" $off)
	flip "$DATA" $off
	expect_fail "$ANOLE" pull -q "docker://$REGISTRY/lazy/full:v1" "$TMP/tampered-$where"
	cat "$TMP/last.err"
	one_line "tampered blob ($where)"
	grep -q "$BIG" "$TMP/last.err" || fail "tampered blob ($where): error does not name $BIG: $(cat "$TMP/last.err")"
	grep -q "bytes $first-$last " "$TMP/last.err" ||
		fail "tampered blob ($where, byte $off): error does not name bytes $first-$last: $(cat "$TMP/last.err")"
	no_trace "$TMP/tampered-$where" "tampered blob ($where)"
	flip "$DATA" $off	# restore
done
# restored: the pull into the failed layout now completes
"$ANOLE" pull -q "docker://$REGISTRY/lazy/full:v1" "$TMP/tampered-last" ||
	fail "pull into the layout of a failed pull, blob restored, failed"
check_pulled "$TMP/tampered-last" "$D1" v1 "pull after restore"

# the digest table must not be trusted either: a table that does not
# match its descriptor fails the pull before any data
TAB=$(jget "$TMP/full.json" 'o["data_blobs"][0]["digest_table"]')
flip "$(regblob "$TAB")" 100
expect_fail "$ANOLE" pull -q "docker://$REGISTRY/lazy/full:v1" "$TMP/tampered-table"
cat "$TMP/last.err"
one_line "tampered digest table"
no_trace "$TMP/tampered-table" "tampered digest table"
flip "$(regblob "$TAB")" 100

########################################################################
echo "== 5. bad input: one line, non-zero exit"
expect_fail "$ANOLE" pull -q "docker://$REGISTRY/lazy/full:nope" "$TMP/x"
cat "$TMP/last.err"
one_line "missing tag"
grep -q "not found" "$TMP/last.err" || fail "missing tag: $(cat "$TMP/last.err")"
[ ! -e "$TMP/x/index.json" ] || fail "missing tag: pull left an index.json"

expect_fail "$ANOLE" pull -q "docker://$REGISTRY/anole/small:v1" "$TMP/x"
cat "$TMP/last.err"
one_line "plain OCI image"
grep -q "not an anole lazy image" "$TMP/last.err" || fail "plain OCI image: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" inspect "docker://$REGISTRY/anole/small:v1"
one_line "inspect of a plain OCI image"

zeros=$(printf '0%.0s' $(seq 64))
expect_fail "$ANOLE" pull -q "docker://$REGISTRY/lazy/full@sha256:$zeros" "$TMP/x"
cat "$TMP/last.err"
one_line "wrong digest"
[ ! -e "$TMP/x/index.json" ] || fail "wrong digest: pull left an index.json"

# Hand-broken manifests in copies of a converted (small) layout.
convert_to "oci:$SMALL:v1" "oci:$TMP/small-layout:v1" "$TMP/csl.out" >/dev/null
# craft DIR MODE: rewrite tag v1's manifest of layout DIR
craft() {
	python3 - "$1" "$2" <<'EOF' || fail "cannot craft $2 in $1"
import hashlib, json, os, sys
d, mode = sys.argv[1:3]
ix = json.load(open(os.path.join(d, "index.json")))
e = [m for m in ix["manifests"]
     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"][0]
raw = open(os.path.join(d, "blobs/sha256", e["digest"][7:]), "rb").read()
m = json.loads(raw)
if mode == "unknown-layer":
    m["layers"][1]["mediaType"] = "application/vnd.example.unknown"
    new = json.dumps(m, separators=(",", ":")).encode()
elif mode == "truncated":
    new = raw[:len(raw) // 2]
elif mode == "no-data-blobs":      # only the metadata image: it reads an unlisted blob
    m["layers"] = m["layers"][:1]
    new = json.dumps(m, separators=(",", ":")).encode()
elif mode == "wrong-digest":       # same size, other bytes, under the old name
    assert b'"dev.anole.format"' in raw
    new = raw.replace(b'"dev.anole.format"', b'"dev.anole.formax"')
else:
    sys.exit("unknown mode " + mode)
if mode == "wrong-digest":
    path = os.path.join(d, "blobs/sha256", e["digest"][7:])
else:
    e["digest"] = "sha256:" + hashlib.sha256(new).hexdigest()
    path = os.path.join(d, "blobs/sha256", e["digest"][7:])
e["size"] = len(new)
with open(path + ".tmp", "wb") as f:
    f.write(new)
os.replace(path + ".tmp", path)
with open(os.path.join(d, "index.json.tmp"), "w") as f:
    json.dump(ix, f)
os.replace(os.path.join(d, "index.json.tmp"), os.path.join(d, "index.json"))
EOF
}
for mode in unknown-layer truncated wrong-digest; do
	bad=$TMP/bad-$mode
	cp -a "$TMP/small-layout" "$bad"
	craft "$bad" $mode
	rm -rf "$TMP/x"
	expect_fail "$ANOLE" pull -q "oci:$bad:v1" "$TMP/x"
	echo "pull, $mode: $(cat "$TMP/last.err")"
	one_line "pull of a manifest with $mode"
	case $mode in
	unknown-layer) grep -q "application/vnd.example.unknown" "$TMP/last.err" ||
		fail "unknown layer type is not named: $(cat "$TMP/last.err")" ;;
	truncated) grep -qi "json" "$TMP/last.err" ||
		fail "truncated manifest: $(cat "$TMP/last.err")" ;;
	wrong-digest) grep -qi "digest" "$TMP/last.err" ||
		fail "manifest not matching its digest: $(cat "$TMP/last.err")" ;;
	esac
	if [ -f "$TMP/x/index.json" ]; then
		[ "$(jget "$TMP/x/index.json" 'len(o.get("manifests", []))')" = 0 ] ||
			fail "pull of a manifest with $mode tagged it: $(cat "$TMP/x/index.json")"
	fi
	expect_fail "$ANOLE" inspect "oci:$bad:v1"
	echo "inspect, $mode: $(cat "$TMP/last.err")"
	one_line "inspect of a manifest with $mode"
	rm -rf "$bad"
done

# The metadata image reads a blob its manifest does not list (the
# manifest keeps only the metadata layer; docs/FORMAT.md "Trust chain"):
# with that blob already in the target layout (from a pull of the good
# image) and into a fresh layout, the error must say so; no tag moves.
bad=$TMP/bad-no-data-blobs
cp -a "$TMP/small-layout" "$bad"
craft "$bad" no-data-blobs
"$ANOLE" pull -q "oci:$TMP/small-layout:v1" "$TMP/xpre" || fail "pull of the converted small layout failed"
good=$(jget "$TMP/xpre/index.json" 'o["manifests"][0]["digest"]')
for x in xpre x-fresh; do
	expect_fail "$ANOLE" pull -q "oci:$bad:v1" "$TMP/$x"
	echo "pull, unlisted blob, into $x: $(cat "$TMP/last.err")"
	one_line "pull of a manifest without the blob its metadata image reads ($x)"
	if [ -f "$TMP/$x/index.json" ]; then
		[ "$(jget "$TMP/$x/index.json" '[m["digest"] for m in o.get("manifests", [])]')" = \
			"$([ $x = xpre ] && echo "['$good']" || echo "[]")" ] ||
			fail "pull of a manifest without its blob changed the tag: $(cat "$TMP/$x/index.json")"
	fi
	grep -q "which the manifest does not list" "$TMP/last.err" ||
		fail "pull of a manifest that omits the data blob its metadata image reads ($x): the error does not say the manifest does not list the blob: $(cat "$TMP/last.err")"
done
registry_stop
echo "ok"
