#!/bin/bash
# Every registry call ends by its deadline (docs/SECURITY.md, "Registries"):
# through tests/lib/faultproxy, a manifest and then blobs sent at 1 byte/s
# make `build` and `pull` fail with one line within the stated bound (plus
# slack for a busy machine), not after minutes of retries. Blob bodies
# longer than their descriptor's size are cut off there: the build still
# gives the right image.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_cmd docker-registry skopeo umoci python3

# the bounds docs/SECURITY.md states: a small document's deadline (and two
# 10 s stalls fit in it), a blob's (30 s plus its size at 64 KiB/s; these
# blobs are small)
DOC_BOUND=30
BLOB_BOUND=31
SLACK=15

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
"$ANOLE" build -q "oci:$L:v1" "$TMP/ref.img" || fail "build from the layout failed"
registry_start
registry_push "$L" v1 anole/small || fail "push failed"
"$ANOLE" convert -q "oci:$L:v1" "docker://$REGISTRY/anole/lazy:v1" >"$TMP/out" 2>&1 ||
	fail "convert failed: $(cat "$TMP/out")"

bounded() {	# BOUND WHAT CMD...: CMD fails with one line within BOUND + SLACK s
	local bound=$1 what=$2 rc=0 start took
	shift 2
	start=$(date +%s)
	timeout $((bound * 4 + 60)) "$@" >"$TMP/out" 2>&1 || rc=$?
	took=$(($(date +%s) - start))
	[ "$rc" = 1 ] || fail "$what: exit $rc after ${took}s: $(tail -n 3 "$TMP/out")"
	[ "$(wc -l <"$TMP/out")" = 1 ] || fail "$what: not one line: $(cat "$TMP/out")"
	grep -Eq "no progress|not done within" "$TMP/out" || fail "$what: $(cat "$TMP/out")"
	[ "$took" -le $((bound + SLACK)) ] ||
		fail "$what: failed after ${took}s, the bound is ${bound}s: $(cat "$TMP/out")"
	echo "$what: failed after ${took}s (bound ${bound}s): $(cat "$TMP/out")"
}

trickled() {	# KIND WHAT BOUND: build and pull with KIND bodies at 1 byte/s
	faultproxy_start "trickle=$1:1"
	rm -rf "$TMP/t"
	bounded "$3" "build, $2 at 1 byte/s" \
		"$ANOLE" build -q "docker://$PROXY/anole/small:v1" "$TMP/t.img"
	[ ! -e "$TMP/t.img" ] || fail "an image was left"
	grep -q "$1.* -> 200 at 1 bytes/s" "$TMP/proxy.log" || fail "no $1 trickled"
	bounded "$3" "pull, $2 at 1 byte/s" "$ANOLE" pull -q "docker://$PROXY/anole/lazy:v1" "$TMP/t"
	kill "$PROXY_PID"
}
trickled manifest "a manifest" $DOC_BOUND
trickled blob blobs $BLOB_BOUND

# bodies longer than the descriptor says: the first SIZE bytes are the
# blob, the rest is never read
faultproxy_start overlong
timeout 120 "$ANOLE" build -q "docker://$PROXY/anole/small:v1" "$TMP/e.img" 2>"$TMP/err" ||
	fail "build with over-long blob bodies failed: $(cat "$TMP/err")"
cmp "$TMP/ref.img" "$TMP/e.img" || fail "build with over-long blob bodies: image differs"
rm -rf "$TMP/po"
timeout 120 "$ANOLE" pull -q "docker://$PROXY/anole/lazy:v1" "$TMP/po" 2>"$TMP/err" ||
	fail "pull with over-long blob bodies failed: $(cat "$TMP/err")"
# what the client took, plus what socket buffers held when it left
sent=$("$ROOT/tests/lib/proxy-sent" "$TMP/proxy.log" "200, overlong") ||
	fail "over-long bodies were read on: $sent"
most=$(sort -n <<<"$sent" | tail -n 1)
echo "over-long bodies: $(wc -l <<<"$sent"), the most bytes sent for one: $most"
[ "$most" -le $((32 << 20)) ] || fail "an over-long body was read on: $most bytes"
kill "$PROXY_PID"
registry_stop
echo "every call ended within its bound"
