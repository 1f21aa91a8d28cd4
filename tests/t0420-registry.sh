#!/bin/bash
# Container images from a registry: Debian's docker-registry on 127.0.0.1,
# without auth and with a Bearer-token challenge ("silly" auth plus the
# test's token endpoint), and over HTTPS with a self-signed certificate.
# `anole build docker://...` gives the same bytes
# as from the OCI layout and mounts equal to `umoci unpack`; by tag, by
# digest and through an index; missing images and a corrupted blob fail
# with one line and leave no image.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci zstd

OCITOOL=$ROOT/tests/lib/ocitool
SMALL=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
FULL=$("$ROOT/tests/lib/mkoci" 2>"$TMP/mkoci.err") || FULL=

from_registry() {	# LAYOUT REPO WHAT
	local L=$1 repo=$2 what=$3 ref=$TMP/${2//\//-}.oci.img img=$TMP/${2//\//-}.reg.img
	registry_push "$L" v1 "$repo" || fail "$what: push failed"
	"$ANOLE" build -q "oci:$L:v1" "$ref" || fail "$what: build from oci: failed"
	"$ANOLE" build -q "docker://$REGISTRY/$repo:v1" "$img" || fail "$what: build from registry failed"
	cmp "$ref" "$img" || fail "$what: registry image differs from the layout's"
	image_matches "$img" "$(dirname "$L")/truth/rootfs" "$what"
	rm -f "$img"
	# by digest
	"$ANOLE" build -q "docker://$REGISTRY/$repo@$("$OCITOOL" resolve "$L" v1)" "$img" ||
		fail "$what: build by digest failed"
	cmp "$ref" "$img" || fail "$what: image by digest differs"
	rm -f "$img" "$ref"
}

echo "== no auth"
registry_start
from_registry "$SMALL" anole/small "small, no auth"
registry_push "$SMALL" multi anole/small || fail "push of the index failed"
"$ANOLE" build -q "docker://$REGISTRY/anole/small:v1" "$TMP/v1.img"
"$ANOLE" build -q "docker://$REGISTRY/anole/small:multi" "$TMP/multi.img" || fail "index build failed"
cmp "$TMP/v1.img" "$TMP/multi.img" || fail "index (amd64) differs from v1"
# --tls-verify=false tries HTTPS first, then falls back to plain HTTP
"$ANOLE" build -q --tls-verify=false "docker://$REGISTRY/anole/small:v1" "$TMP/insecure.img" ||
	fail "--tls-verify=false against a plain HTTP registry failed"
cmp "$TMP/v1.img" "$TMP/insecure.img" || fail "--tls-verify=false image differs"

# Docker v2 media types (schema 2 manifest, rootfs.diff.tar.gzip layers)
skopeo --insecure-policy copy -q --format v2s2 --dest-tls-verify=false \
	--dest-authfile "$REGISTRY_DIR/auth.json" "oci:$SMALL:v1-gzip" \
	"docker://$REGISTRY/anole/docker:v1" || fail "v2s2 push failed"
curl -s -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
	"http://$REGISTRY/v2/anole/docker/manifests/v1" | grep -q 'rootfs.diff.tar.gzip' ||
	fail "the registry does not hold a Docker v2 manifest"
"$ANOLE" build -q "docker://$REGISTRY/anole/docker:v1" "$TMP/docker.img" || fail "Docker v2 build failed"
"$ANOLE" build -q "oci:$SMALL:v1-gzip" "$TMP/gzip.img"
cmp "$TMP/gzip.img" "$TMP/docker.img" || fail "Docker v2 image differs from the OCI one"

expect_fail "$ANOLE" build -q "docker://$REGISTRY/anole/small:nope" "$TMP/x.img"
grep -q "not found (HTTP 404)" "$TMP/last.err" || fail "unknown tag: $(cat "$TMP/last.err")"
expect_fail "$ANOLE" build -q "docker://$REGISTRY/anole/none:v1" "$TMP/x.img"
expect_fail "$ANOLE" build -q "docker://$REGISTRY/Bad_Name:v1" "$TMP/x.img"
grep -q "bad repository name" "$TMP/last.err" || fail "bad name: $(cat "$TMP/last.err")"
[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "errors must be one line"

# A blob changed in the registry's storage: the digest check catches it.
blob=$(find "$REGISTRY_DIR" -path '*/blobs/sha256/*/data' -size +2k | head -n 1)
[ -n "$blob" ] || fail "no blob found in the registry storage"
printf '\x55' | dd of="$blob" bs=1 seek=1000 conv=notrunc status=none
expect_fail "$ANOLE" build -q "docker://$REGISTRY/anole/small:v1" "$TMP/x.img"
grep -Eq ": digest does not match: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}$" \
	"$TMP/last.err" || fail "corrupt blob: $(cat "$TMP/last.err")"
[ "$(wc -l <"$TMP/last.err")" = 1 ] || fail "corrupt blob: not one line"
[ ! -e "$TMP/x.img" ] || fail "a failed build left an image"
registry_stop

echo "== HTTPS (self-signed certificate)"
registry_start --tls
skopeo --insecure-policy copy -q --dest-tls-verify=false --dest-authfile "$REGISTRY_DIR/auth.json" \
	"oci:$SMALL:v1" "docker://$REGISTRY/anole/small:v1" || fail "push over HTTPS failed"
# 127.0.0.1 means plain HTTP by default: that fails against a TLS server
expect_fail "$ANOLE" build -q "docker://$REGISTRY/anole/small:v1" "$TMP/x.img"
# verified HTTPS refuses the self-signed certificate, with one line
expect_fail "$ANOLE" build -q --tls-verify=true "docker://$REGISTRY/anole/small:v1" "$TMP/x.img"
grep -qi "certificate" "$TMP/last.err" || fail "TLS error: $(cat "$TMP/last.err")"
[ ! -e "$TMP/x.img" ] || fail "a failed build left an image"
# --tls-verify=false: HTTPS without checks
"$ANOLE" build -q --tls-verify=false "docker://$REGISTRY/anole/small:v1" "$TMP/tls.img" ||
	fail "build over HTTPS with --tls-verify=false failed"
cmp "$TMP/v1.img" "$TMP/tls.img" || fail "image over HTTPS differs"
registry_stop

echo "== token auth"
registry_start --token-auth
: >"$TMP/token.log"
from_registry "$SMALL" anole/small "small, token auth"
grep -q "service=anole-test&scope=repository:anole/small:pull auth=none" "$TMP/token.log" ||
	fail "anole did not ask the token endpoint: $(cat "$TMP/token.log")"
if [ -n "$FULL" ]; then
	from_registry "$FULL" anole/full "full (debootstrap rootfs), token auth"
else
	echo "full image skipped: $(tail -n 1 "$TMP/mkoci.err")"
fi
registry_stop
