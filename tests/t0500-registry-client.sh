#!/bin/bash
# The registry client's side for the lazy format, against
# docker-registry with token auth: blob uploads (monolithic and chunked),
# "already there", cross-repository mounts, HEAD, manifest PUT, and range
# reads: 206 answers, 200 answers with the whole blob (through a proxy
# that ignores Range: read up to the range within the first 4 MiB, refused
# beyond) and 416 beyond the end, compared byte for byte with the file.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_cmd docker-registry skopeo python3
REGTOOL=$ROOT/${BUILD_DIR:-build}/tests/unit/regtool
[ -x "$REGTOOL" ] || fail "$REGTOOL is missing"

head -c 5000000 /dev/urandom >"$TMP/blob"
head -c 3300000 /dev/urandom >"$TMP/blob2"
D=sha256:$(sha256sum "$TMP/blob" | cut -d' ' -f1)

registry_start --token-auth
R=$REGISTRY

out=$("$REGTOOL" push "$R" lazy/a "$TMP/blob") || fail "upload failed"
[ "$out" = "uploaded $D" ] || fail "upload: $out"
[ "$("$REGTOOL" push "$R" lazy/a "$TMP/blob")" = "present $D" ] || fail "second upload not skipped"
[ "$("$REGTOOL" exists "$R" lazy/a "$D")" = "1 5000000" ] || fail "HEAD: $("$REGTOOL" exists "$R" lazy/a "$D")"
[ "$("$REGTOOL" exists "$R" lazy/a "sha256:$(printf %064d 0)")" = 0 ] || fail "HEAD of a missing blob"
[ "$("$REGTOOL" push "$R" lazy/b "$TMP/blob" lazy/a)" = "mounted $D" ] || fail "cross-repository mount"
out=$("$REGTOOL" push "$R" lazy/b "$TMP/blob2" "" 1000000) || fail "chunked upload failed"
D2=${out#uploaded }
[ "$D2" = "sha256:$(sha256sum "$TMP/blob2" | cut -d' ' -f1)" ] || fail "chunked upload: $out"
curl -s -H "Authorization: Bearer $(registry_token repository:lazy/b:pull)" \
	"http://$R/v2/lazy/b/blobs/$D2" | cmp - "$TMP/blob2" || fail "chunked blob differs"

check_range() {	# HOST OFF LEN
	"$REGTOOL" range "$1" lazy/a "$D" "$2" "$3" >"$TMP/got" || fail "range $2+$3 failed"
	dd if="$TMP/blob" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none |
		cmp - "$TMP/got" || fail "range $2+$3 differs"
}
for r in "0 1" "0 4096" "12345 70000" "4999999 1" "1048576 2097152" "0 5000000"; do
	# shellcheck disable=SC2086
	check_range "$R" $r
done
expect_fail "$REGTOOL" range "$R" lazy/a "$D" 5000000 10
grep -q "beyond the blob" "$TMP/last.err" || fail "416: $(cat "$TMP/last.err")"

# A server that answers 200 with the whole blob instead of 206: read up
# to the range when it ends in the first 4 MiB, else refused unread.
: >"$TMP/proxy.log"
_reg_spawn "$TMP/proxy.out" python3 "$ROOT/tests/lib/faultproxy" "$R" "$TMP/proxy.log" ignore-range
for _ in $(seq 100); do [ -s "$TMP/proxy.out" ] && break; sleep 0.05; done
P=127.0.0.1:$(head -n 1 "$TMP/proxy.out")
check_range "$P" 12345 70000
check_range "$P" 4193304 1000
expect_fail "$REGTOOL" range "$P" lazy/a "$D" 4999000 1000
grep -q "ignores Range" "$TMP/last.err" || fail "200 for a far range: $(cat "$TMP/last.err")"
grep -q "range ignored" "$TMP/proxy.log" || fail "the proxy did not ignore a range"

# A manifest that names the two blobs, then read back through skopeo.
CFG=$TMP/config.json
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$CFG"
C=$("$REGTOOL" push "$R" lazy/a "$CFG") || fail "config upload failed"
C=${C#uploaded }
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":5000000}]}' \
	"$C" "$(stat -c %s "$CFG")" "$D" >"$TMP/manifest.json"
"$REGTOOL" put-manifest "$R" lazy/a v1 application/vnd.oci.image.manifest.v1+json "$TMP/manifest.json" ||
	fail "manifest PUT failed"
skopeo inspect --raw --tls-verify=false "docker://$R/lazy/a:v1" | cmp - "$TMP/manifest.json" ||
	fail "the registry does not serve the manifest we put"
registry_stop
echo "uploads, mounts, HEAD, manifests and ranges (206, 200, 416) all right"
