#!/bin/bash
# The registry client under faults, through tests/lib/faultproxy in front
# of a local docker-registry: 503 answers, connections dropped mid-blob
# (resumed with Range, also against a server that ignores Range),
# redirects of blob requests; each build gives the same image as the
# OCI layout. A flipped byte in a blob fails the build with a digest
# error and leaves no image. Also: Basic credentials from
# $REGISTRY_AUTH_FILE reach the token endpoint, identity tokens as an
# OAuth2 refresh grant.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_cmd docker-registry skopeo umoci zstd python3

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
"$ANOLE" build -q "oci:$L:v1" "$TMP/ref.img" || fail "build from the layout failed"

through() {	# WHAT FAULT...: build through the proxy, compare
	local what=$1
	shift
	faultproxy_start "$@"
	rm -f "$TMP/p.img"
	"$ANOLE" build -q "docker://$PROXY/anole/small:v1" "$TMP/p.img" 2>"$TMP/err" || {
		cat "$TMP/err" "$TMP/proxy.log"
		fail "$what: build through the proxy failed"
	}
	cmp "$TMP/ref.img" "$TMP/p.img" || fail "$what: image differs"
	kill "$PROXY_PID"
}

registry_start
registry_push "$L" v1 anole/small || fail "push failed"

through "503s" 503=3
[ "$(grep -c -- '-> 503' "$TMP/proxy.log")" = 3 ] || fail "503s were not served"
through "dropped blobs" reset
grep -q "reset after" "$TMP/proxy.log" || fail "no connection was dropped"
grep -q "206" "$TMP/proxy.log" || fail "no Range request resumed a blob"
through "dropped blobs, Range ignored" reset ignore-range
grep -q "range ignored" "$TMP/proxy.log" || fail "no resumed request was answered 200"
through "redirects" redirect
grep -q -- "-> 307" "$TMP/proxy.log" || fail "no redirect was served"

faultproxy_start flip
rc=0
"$ANOLE" build -q "docker://$PROXY/anole/small:v1" "$TMP/bad.img" 2>"$TMP/err" || rc=$?
[ $rc = 1 ] || fail "flipped blob: exit $rc: $(cat "$TMP/err")"
# the digest names the damage, not what the tar reader made of it
grep -Eq "^anole: layer [0-9]+ \(sha256:[0-9a-f]{12}\): digest does not match: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}$" \
	"$TMP/err" || fail "flipped blob: $(cat "$TMP/err")"
[ ! -e "$TMP/bad.img" ] || fail "flipped blob: an image was left"
kill "$PROXY_PID"
registry_stop

# Basic credentials from the auth file go to the token endpoint.
registry_start --token-auth
registry_push "$L" v1 anole/small || fail "push (token auth) failed"
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$REGISTRY" "$(printf alice:secret | base64)" \
	>"$TMP/auth.json"
: >"$TMP/token.log"
REGISTRY_AUTH_FILE=$TMP/auth.json "$ANOLE" build -q "docker://$REGISTRY/anole/small:v1" \
	"$TMP/auth.img" || fail "build with an auth file failed"
grep -q "auth=basic:alice" "$TMP/token.log" || fail "credentials not sent: $(cat "$TMP/token.log")"
cmp "$TMP/ref.img" "$TMP/auth.img" || fail "auth-file image differs"
# an identity token is exchanged with an OAuth2 refresh-token POST
printf '{"auths": {"http://%s": {"identitytoken": "idtok-1"}}}\n' "$REGISTRY" >"$TMP/auth.json"
rm -f "$TMP/auth.img"
REGISTRY_AUTH_FILE=$TMP/auth.json "$ANOLE" build -q "docker://$REGISTRY/anole/small:v1" \
	"$TMP/auth.img" || fail "build with an identity token failed"
grep -q "grant=refresh_token refresh=idtok-1" "$TMP/token.log" ||
	fail "identity token not used: $(cat "$TMP/token.log")"
registry_stop
echo "faults handled: 503, dropped connections (with and without Range), redirects, flipped bytes"
