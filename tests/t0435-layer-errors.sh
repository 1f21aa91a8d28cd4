#!/bin/bash
# Sharper errors and bounds for container layers, each one line naming
# the layer (and the entry) and leaving no image: a layer whose digest
# does not match says so (expected and got), whatever its damage; a
# truncated or longer blob names its layer once; PAX times and numbers
# libarchive would misread ("1e30", "nan", "+5", "") and octal header
# fields that are not numbers are refused by name, in a tar file and in
# a layer alike, and good ones keep their value; an oversized sparse entry
# and an xattr EROFS cannot store are named; build refuses a tree deeper
# than check and extract walk (4096), from tars and directories, and what
# it builds they take; a manifest of more than 500 layers is refused; a
# layer listed twice is downloaded once and applied twice.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd python3 umoci skopeo docker-registry

OCITOOL=$ROOT/tests/lib/ocitool
W=$TMP/w
mkdir -p "$W"
"$ROOT/tests/lib/mklayererrs" "$W" || fail "mklayererrs failed"

# refused WHAT REGEX CMD...: CMD fails with exactly one line matching REGEX
refused() {
	local what=$1 re=$2
	shift 2
	expect_fail "$@"
	[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "$what: not one line: $(cat "$TMP/last.err")"
	grep -Eq -- "$re" "$TMP/last.err" || fail "$what: expected /$re/, got: $(cat "$TMP/last.err")"
	[ ! -e "$TMP/x.img" ] || fail "$what: a failed build left an image"
}

echo "== damaged layers"
blob=$("$OCITOOL" layers "$W/good" v1 | awk '{print $2}')
want=sha256:$(basename "$blob")
P="^anole: layer 1 \(sha256:${want:7:12}\): "
"$ANOLE" build -q "oci:$W/good:v1" "$TMP/good.img" || fail "the good layout does not build"
damage() {	# NAME PYTHON-STATEMENT-ON-d: a copy of the layout, its blob changed
	rm -rf "${W:?}/$1"
	cp -a "$W/good" "$W/$1"
	python3 -c "
import sys
p = sys.argv[1]; d = bytearray(open(p, 'rb').read()); $2
open(p, 'wb').write(d)" "$W/$1/blobs/sha256/${want:7}"
}
damage mid 'd[len(d) // 2] ^= 1'
refused "byte flipped mid-stream" "${P}digest does not match: expected $want, got sha256:[0-9a-f]{64}$" \
	"$ANOLE" build -q "oci:$W/mid:v1" "$TMP/x.img"
damage head 'd[40] ^= 0x55'
refused "byte flipped in the first block" \
	"${P}digest does not match: expected $want, got sha256:[0-9a-f]{64}$" \
	"$ANOLE" build -q "oci:$W/head:v1" "$TMP/x.img"
damage short 'del d[300:]'
refused "truncated blob" "${P}300 bytes where its descriptor says [0-9]+$" \
	"$ANOLE" build -q "oci:$W/short:v1" "$TMP/x.img"
damage long 'd.extend(bytes(d))'
refused "longer blob" "${P}longer than the [0-9]+ bytes its descriptor says$" \
	"$ANOLE" build -q "oci:$W/long:v1" "$TMP/x.img"

echo "== PAX times and numbers, octal fields"
L1="^anole: layer 1 \(sha256:[0-9a-f]{12}\): "
for t in "$W"/bad-*.tar; do
	n=$(basename "$t" .tar)
	re="'dir/entry': (PAX record|header field) [a-z]+ '[^']*' is not a (time|number)$"
	refused "$n (tar file)" "^anole: $t: $re" "$ANOLE" build -q "$t" "$TMP/x.img"
	msg=$(sed "s|^anole: $t: ||" "$TMP/last.err")
	refused "$n (layer)" "$L1$re" "$ANOLE" build -q "oci:$W/$n:v1" "$TMP/x.img"
	[ "$(sed 's|^anole: layer 1 ([^)]*): ||' "$TMP/last.err")" = "$msg" ] ||
		fail "$n: a tar file and a layer disagree: $msg / $(cat "$TMP/last.err")"
done
expect_fail "$ANOLE" build -q "$W/bad-mtime-1e30.tar" "$TMP/x.img"
grep -q "'dir/entry': PAX record mtime '1e30' is not a time$" "$TMP/last.err" ||
	fail "mtime=1e30: $(cat "$TMP/last.err")"
mtime_of() {	# IMAGE: "MTIME NSEC" of /dir/entry
	"$ANOLE" inspect "$1" /dir/entry | awk '$1 == "mtime" {m = $2} $1 == "mtime_nsec" {n = $2} END {print m, n}'
}
"$ANOLE" build -q "$W/good-neg.tar" "$TMP/neg.img" || fail "mtime=-1.5 refused"
[ "$(mtime_of "$TMP/neg.img")" = "-2 500000000" ] || fail "mtime=-1.5 stored as $(mtime_of "$TMP/neg.img")"
"$ANOLE" build -q "$W/good-ns.tar" "$TMP/ns.img" || fail "mtime with ns refused"
[ "$(mtime_of "$TMP/ns.img")" = "1700000000 123456789" ] || fail "mtime with ns: $(mtime_of "$TMP/ns.img")"

echo "== entries named"
refused "oversized sparse entry (tar)" \
	"^anole: $W/sparse.tar: 'big/sparse': 4611686018427387904 bytes, more than the 2\^56" \
	"$ANOLE" build -q "$W/sparse.tar" "$TMP/x.img"
refused "oversized sparse entry (layer)" "$L1'big/sparse': 4611686018427387904 bytes" \
	"$ANOLE" build -q "oci:$W/sparse:v1" "$TMP/x.img"
refused "unstorable xattr (layer)" "$L1'odd/xattr': xattr bogus.name: EROFS stores only" \
	"$ANOLE" build -q "oci:$W/xattr:v1" "$TMP/x.img"

echo "== depth"
ulimit -n 16384	# the directory walk holds a descriptor per level
"$ANOLE" build -q "$W/deep4096.tar" "$TMP/deep.img" || fail "4096 nested directories refused"
"$ANOLE" check -q "$TMP/deep.img" || fail "check refused what build made of 4096 levels"
mkdir "$TMP/deep.x"
"$ANOLE" extract "$TMP/deep.img" "$TMP/deep.x" >/dev/null || fail "extract refused 4096 levels"
"$ANOLE" export -q "$TMP/deep.img" -o "$TMP/deep.tar" || fail "export refused 4096 levels"
rm -rf "$TMP/deep.x" "$TMP/deep.tar" "$TMP/deep.img"
"$ANOLE" build -q "$W/deepdir4096" "$TMP/deep.img" || fail "a directory tree 4096 deep refused"
"$ANOLE" check -q "$TMP/deep.img" || fail "check refused the directory tree 4096 deep"
refused "4097 levels (tar)" "^anole: '\.\.\..*/d/d': directories nested deeper than 4096" \
	"$ANOLE" build -q "$W/deep4097.tar" "$TMP/x.img"
refused "4097 levels (directory)" "^anole: '\.\.\..*/d/d': directories nested deeper than 4096" \
	"$ANOLE" build -q "$W/deepdir4097" "$TMP/x.img"
rm -rf "$W"/deepdir*

echo "== layer count"
"$ANOLE" build -q "oci:$W/many:l500" "$TMP/many.img" || fail "500 layers refused"
refused "501 layers" "^anole: oci:$W/many:l501: 501 layers, more than the 500 anole builds" \
	"$ANOLE" build -q "oci:$W/many:l501" "$TMP/x.img"

echo "== a layer listed twice: downloaded once, applied twice"
xblob=$("$OCITOOL" layers "$W/dup" v1 | sed -n 2p | awk '{print $2}')
[ "$("$OCITOOL" layers "$W/dup" v1 | sed -n 4p | awk '{print $2}')" = "$xblob" ] ||
	fail "layers 2 and 4 are not the same blob"
umoci unpack --image "$W/dup:v1" "$W/dup.truth" >/dev/null || fail "umoci unpack failed"
"$ANOLE" build -q "oci:$W/dup:v1" "$TMP/dup.oci.img" || fail "duplicate layers: layout build failed"
image_matches "$TMP/dup.oci.img" "$W/dup.truth/rootfs" "duplicate layers"
registry_start
registry_push "$W/dup" v1 anole/dup || fail "push failed"
faultproxy_start
"$ANOLE" build -q "docker://$PROXY/anole/dup:v1" "$TMP/dup.reg.img" ||
	fail "duplicate layers: registry build failed"
cmp "$TMP/dup.oci.img" "$TMP/dup.reg.img" || fail "duplicate layers: registry image differs"
n=$(grep -c "^GET /v2/anole/dup/blobs/sha256:$(basename "$xblob") " "$TMP/proxy.log" || true)
[ "$n" = 1 ] || { cat "$TMP/proxy.log"; fail "the layer listed twice was fetched $n times"; }
kill "$PROXY_PID"
registry_stop

echo "every error one line, naming its layer and entry"
