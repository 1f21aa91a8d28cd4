#!/bin/bash
# Credentials stay with their origin (scheme, host, port). Through
# tests/lib/faultproxy with a second listener, "the other origin" (the
# same host, another port): convert and pull against a registry that wants
# Basic credentials (the proxy's), and one with token auth, while blob
# GETs are redirected to the other origin (a CDN) and upload Locations
# name it (an upload service). The other origin must never see an
# Authorization header, nor a token request with the user's password when
# it answers with a challenge of its own. References with a user name or
# password are refused with one line that does not repeat the password.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci python3

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
TRUTH=$(dirname "$L")/truth/rootfs
SECRET=s3cret-$RANDOM$RANDOM
B64=$(printf 'alice:%s' "$SECRET" | base64 -w0)

authfile() {	# HOST: an auth file with alice's password for HOST
	printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$1" "$B64" >"$TMP/auth.json"
}
# (not exported: docker-registry reads REGISTRY_* variables as its config)
alice() { REGISTRY_AUTH_FILE=$TMP/auth.json "$ANOLE" "$@"; }
no_leak() {	# WHAT: the other origin got no credentials, and was used
	grep -q '^OTHER ' "$TMP/proxy.log" || fail "$1: the other origin was never asked"
	if grep "^OTHER " "$TMP/proxy.log" | grep -v "auth=none$" | head -n 3 | grep .; then
		fail "$1: credentials went to the other origin"
	fi
}
pulled_right() {	# WHAT: the pulled layout mounts as the truth
	mkdir -p "$TMP/pm"
	"$ANOLE" mount "oci:$TMP/pulled:v1" "$TMP/pm" || fail "$1: mount of the pulled image failed"
	"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/pm" >"$TMP/cmp" ||
		fail "$1: pulled image differs: $(tail -n 3 "$TMP/cmp")"
	umount "$TMP/pm"
}

registry_start

echo "== Basic credentials (the proxy's), uploads and blobs at the other origin"
faultproxy_start "basic=alice:$SECRET" elsewhere
authfile "$PROXY"
WHAT="convert (Basic)"
alice convert -q "oci:$L:v1" "docker://$PROXY/cred/basic:v1" >"$TMP/out" 2>&1 ||
	fail "$WHAT failed: $(cat "$TMP/out")"
grep -q 'auth=basic:alice$' "$TMP/proxy.log" || fail "$WHAT: the registry never got the credentials"
grep -Eq '^OTHER (PATCH|PUT) ' "$TMP/proxy.log" || fail "$WHAT: no upload went to the other origin"
no_leak "$WHAT"
: >"$TMP/proxy.log"
WHAT="pull (Basic)"
alice pull -q "docker://$PROXY/cred/basic:v1" "$TMP/pulled" >"$TMP/out" 2>&1 ||
	fail "$WHAT failed: $(cat "$TMP/out")"
grep -q '^GET .* -> 307 (elsewhere)' "$TMP/proxy.log" || fail "$WHAT: no blob was redirected"
no_leak "$WHAT"
pulled_right "$WHAT"
: >"$TMP/proxy.log"
WHAT="build (Basic)"
registry_push "$L" v1 cred/oci || fail "push failed"
alice build -q "docker://$PROXY/cred/oci:v1" "$TMP/b.img" >"$TMP/out" 2>&1 ||
	fail "$WHAT failed: $(cat "$TMP/out")"
no_leak "$WHAT"
kill "$PROXY_PID"

echo "== a challenge from the other origin gets no credentials"
faultproxy_start "basic=alice:$SECRET" elsewhere=challenge
authfile "$PROXY"
rc=0
alice pull -q "docker://$PROXY/cred/basic:v1" "$TMP/pulled2" >"$TMP/out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a pull through a challenging CDN: exit $rc: $(cat "$TMP/out")"
[ "$(wc -l <"$TMP/out")" = 1 ] || fail "not one line: $(cat "$TMP/out")"
grep -q 'OTHER GET /r/v2/.* -> 401 (challenge)' "$TMP/proxy.log" || fail "the other origin was never asked"
no_leak "a challenge from the other origin"
if grep -q "$SECRET" "$TMP/out"; then fail "the error shows the password"; fi
echo "refused: $(cat "$TMP/out")"
kill "$PROXY_PID"
registry_stop

echo "== Bearer tokens (token auth), uploads and blobs at the other origin"
registry_start --token-auth
faultproxy_start elsewhere
authfile "$PROXY"
: >"$TMP/token.log"
WHAT="convert (Bearer)"
alice convert -q "oci:$L:v1" "docker://$PROXY/cred/token:v1" >"$TMP/out" 2>&1 ||
	fail "$WHAT failed: $(cat "$TMP/out")"
grep -q "auth=basic:alice" "$TMP/token.log" || fail "$WHAT: no token for alice: $(cat "$TMP/token.log")"
grep -q 'auth=bearer$' "$TMP/proxy.log" || fail "$WHAT: the registry never got a token"
grep -Eq '^OTHER (PATCH|PUT) ' "$TMP/proxy.log" || fail "$WHAT: no upload went to the other origin"
no_leak "$WHAT"
: >"$TMP/proxy.log"
WHAT="pull (Bearer)"
rm -rf "$TMP/pulled"
alice pull -q "docker://$PROXY/cred/token:v1" "$TMP/pulled" >"$TMP/out" 2>&1 ||
	fail "$WHAT failed: $(cat "$TMP/out")"
no_leak "$WHAT"
pulled_right "$WHAT"
kill "$PROXY_PID"

echo "== references with a user name or password"
export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
mkdir -p "$TMP/lm"
REF=docker://alice:$SECRET@$REGISTRY/cred/token:v1
for cmd in "build -q $REF $TMP/u.img" "pull -q $REF $TMP/u" "inspect $REF" \
	"convert -q oci:$L:v1 $REF" "mount $REF $TMP/lm" "run $REF true" \
	"build -q docker://alice@$REGISTRY/cred/token:v1 $TMP/u.img"; do
	rc=0
	# shellcheck disable=SC2086
	"$ANOLE" $cmd >"$TMP/out" 2>&1 || rc=$?
	[ "$rc" = 1 ] || fail "anole ${cmd%% *} with userinfo: exit $rc: $(cat "$TMP/out")"
	[ "$(wc -l <"$TMP/out")" = 1 ] || fail "anole ${cmd%% *}: not one line: $(cat "$TMP/out")"
	grep -q "auth file" "$TMP/out" || fail "anole ${cmd%% *}: no pointer to the auth file: $(cat "$TMP/out")"
	if grep -q "$SECRET" "$TMP/out"; then fail "anole ${cmd%% *} shows the password: $(cat "$TMP/out")"; fi
done
echo "refused: $(cat "$TMP/out")"
[ ! -e "$TMP/u.img" ] || fail "an image was written"
[ ! -e "$ANOLE_RUNTIME_DIR/daemon.sock" ] || fail "a daemon was asked"
if grep -rqs "$SECRET" "$ANOLE_RUNTIME_DIR"; then fail "the password reached $ANOLE_RUNTIME_DIR"; fi
registry_stop
echo "credentials stayed with their origin; references with userinfo refused"
