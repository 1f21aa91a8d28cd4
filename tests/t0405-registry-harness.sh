#!/bin/bash
# The registry test harness itself (tests/lib/registry, tests/lib/mkoci
# --small, tests/lib/ocitool): a local docker-registry without auth and
# with token ("silly") auth takes skopeo pushes of the small OCI image,
# answers the catalog and skopeo inspect, and leaves no process behind --
# also when the test shell exits with an error or is SIGKILLed.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_cmd docker-registry skopeo umoci curl python3 zstd

OCITOOL=$ROOT/tests/lib/ocitool
L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
V1=$("$OCITOOL" resolve "$L" v1)
read -r _ armblob <"$(dirname "$L")/layers-arm64.txt"
ARMLAYER=sha256:$(basename "$armblob")
[ "$("$OCITOOL" resolve "$L" multi)" = "$V1" ] || fail "multi/amd64 is not v1"
read -r zmt zblob < <(grep -F '+zstd' "$(dirname "$L")/layers.txt")
[ "$zmt" = application/vnd.oci.image.layer.v1.tar+zstd ] || fail "no zstd layer in layers.txt"
ZDIGEST=sha256:$(basename "$zblob")

# gone PIDFILE-PATTERN: no process whose command line contains it
gone() {
	for _ in $(seq 50); do
		pgrep -f "$1" >/dev/null || return 0
		sleep 0.1
	done
	pgrep -af "$1" >&2
	return 1
}

check_registry() {	# MODE: push, catalog, inspect, blob round trip
	local mode=$1 cat raw dir pids pid
	dir=$REGISTRY_DIR
	pids=("${_REG_PIDS[@]}")
	registry_push "$L" v1 anole/small || fail "$mode: push of v1 failed"
	registry_push "$L" multi anole/small || fail "$mode: push of multi failed"

	cat=$(registry_curl /v2/_catalog)
	[ "$cat" = '{"repositories":["anole/small"]}' ] || fail "$mode: catalog: $cat"
	[ "$(registry_curl /v2/anole/small/tags/list)" = '{"name":"anole/small","tags":["multi","v1"]}' ] ||
		[ "$(registry_curl /v2/anole/small/tags/list)" = '{"name":"anole/small","tags":["v1","multi"]}' ] ||
		fail "$mode: tags: $(registry_curl /v2/anole/small/tags/list)"

	# skopeo inspect: same manifest digest as in the layout; the index
	# resolves per platform; the zstd blob arrives unchanged
	skopeo inspect --tls-verify=false "docker://$REGISTRY/anole/small:v1" >"$TMP/inspect.json" ||
		fail "$mode: skopeo inspect failed"
	grep -q "\"Digest\": \"$V1\"" "$TMP/inspect.json" || fail "$mode: v1 digest differs: $(cat "$TMP/inspect.json")"
	grep -q "\"$ZDIGEST\"" "$TMP/inspect.json" || fail "$mode: zstd layer digest changed"
	skopeo --override-arch arm64 --override-variant v8 inspect --tls-verify=false \
		"docker://$REGISTRY/anole/small:multi" >"$TMP/inspect-arm.json" || fail "$mode: inspect multi/arm64"
	# (Digest is the index's; the platform shows in Architecture/Layers)
	grep -q '"Architecture": "arm64"' "$TMP/inspect-arm.json" || fail "$mode: multi/arm64 is not arm64"
	grep -q "\"$ARMLAYER\"" "$TMP/inspect-arm.json" || fail "$mode: multi/arm64 has other layers"
	raw=$(skopeo inspect --raw --tls-verify=false "docker://$REGISTRY/anole/small:multi")
	case $raw in *'"mediaType":"application/vnd.oci.image.index.v1+json"'*) ;;
	*) fail "$mode: multi is not an OCI index: $raw" ;; esac
	registry_curl -o "$TMP/blob" "/v2/anole/small/blobs/$ZDIGEST"
	cmp "$TMP/blob" "$zblob" || fail "$mode: blob fetched back differs"

	registry_stop
	for pid in "${pids[@]}"; do
		! kill -0 "$pid" 2>/dev/null || fail "$mode: pid $pid still alive after registry_stop"
	done
	gone "$dir/config.yml" || fail "$mode: docker-registry left running"
	[ -z "${REGISTRY:-}" ] || fail "$mode: REGISTRY still set after stop"
}

# --- no auth
registry_start || fail "registry_start failed"
[ "$REGISTRY_AUTH" = none ] || fail "REGISTRY_AUTH=$REGISTRY_AUTH"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/")" = 200 ] || fail "/v2/ not 200"
check_registry plain

# --- token auth
registry_start --token-auth || fail "registry_start --token-auth failed"
[ "$REGISTRY_AUTH" = token ] || fail "REGISTRY_AUTH=$REGISTRY_AUTH"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/_catalog")
[ "$code" = 401 ] || fail "catalog without a token: HTTP $code, not 401"
curl -sI "http://$REGISTRY/v2/" | grep -qi "^www-authenticate: Bearer realm=\"$REGISTRY_TOKEN_URL\",service=\"anole-test\"" ||
	fail "no Bearer challenge"
tdir=$REGISTRY_DIR
# skopeo's anonymous token flow was used (logged by the token server)
registry_push "$L" v1 anole/pre || fail "anonymous token push failed"
grep -q '^GET /token?.*scope=repository:anole/pre:pull,push.* auth=none$' "$TMP/token.log" ||
	fail "token endpoint not used: $(cat "$TMP/token.log")"
# --dest-creds: the token request carries Basic auth
registry_push "$L" v1 anole/creds --dest-creds anything:anything || fail "push with --dest-creds failed"
grep -q 'scope=repository:anole/creds:.* auth=basic:anything$' "$TMP/token.log" ||
	fail "--dest-creds did not reach the token endpoint"
# --dest-registry-token: the token server is not asked
n=$(wc -l <"$TMP/token.log")
registry_push "$L" v1 anole/tok --dest-registry-token whatever || fail "push with --dest-registry-token failed"
[ "$(wc -l <"$TMP/token.log")" = "$n" ] || fail "--dest-registry-token still asked the token server"
# now a fresh registry for the common checks (catalog must be exact)
registry_stop
gone "$tdir/config.yml" || fail "token registry left running"
registry_start --token-auth || fail "second registry_start --token-auth failed"
check_registry token
gone "python3 -c.*$TMP/token.log" || fail "token server left running"

# --- exit paths: the EXIT trap chain keeps the status and common.sh's
# cleanup; SIGKILL of the test shell still takes the daemons down
# (PR_SET_PDEATHSIG).  The children's TMP dirs live below ours.
child() {
	TMPDIR=$TMP bash -c '
		. "$1/tests/lib/common.sh"
		. "$1/tests/lib/registry"
		registry_start --token-auth || exit 90
		echo "$TMP $REGISTRY_DIR" >"$2"
		case $3 in
		exit3) exit 3 ;;
		fail) fail "deliberate" ;;
		kill) kill -KILL $$ ;;
		esac' child "$ROOT" "$TMP/child.info" "$1"
}
for how in exit3 fail kill; do
	rm -f "$TMP/child.info"
	rc=0
	child "$how" 2>"$TMP/child.err" || rc=$?
	read -r ctmp cdir <"$TMP/child.info" || fail "$how: child did not start a registry: $(cat "$TMP/child.err")"
	case $how in
	exit3) [ "$rc" = 3 ] || fail "exit 3 became $rc" ;;
	fail) [ "$rc" = 1 ] || fail "fail became $rc" ;;
	kill) [ "$rc" = 137 ] || fail "SIGKILL gave $rc" ;;
	esac
	gone "$cdir/config.yml" || fail "$how: docker-registry outlived the test shell"
	gone "python3 -c.*$ctmp/token.log" || fail "$how: token server outlived the test shell"
	if [ "$how" != kill ]; then
		[ ! -e "$ctmp" ] || fail "$how: common.sh cleanup did not run ($ctmp left)"
	fi
done
echo "registry harness OK"
