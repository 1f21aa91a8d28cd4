#!/bin/bash
# Registry faults against lazy images (hardening), through tests/lib/faultproxy
# in front of a local docker-registry: 503 answers, connections dropped
# mid-body, redirects (good ones and ones to where nothing listens),
# Range ignored (200 with the whole body), a byte flipped in every blob,
# slow answers. For each, three times (ROUNDS): `anole pull` either gives
# an image equal to the source or fails with one line, within a bounded
# time; a lazy mount's readers get the right bytes or EIO, never other bytes.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci python3 curl
need_fanotify

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
TRUTH=$(dirname "$L")/truth/rootfs
# shellcheck source=lib/lazyd
. "$ROOT/tests/lib/lazyd"

registry_start
"$ANOLE" convert -q "oci:$L:v1" "docker://$REGISTRY/faults/lazy:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(cat "$TMP/convert.out")"

# no fault: requests share kept-alive connections (a new one would cost
# a handshake's round trip, and with TLS another)
faultproxy_start
rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR"
mkdir -p "$TMP/lm"
"$ANOLE" mount --prefetch=none "docker://$PROXY/faults/lazy:v1" "$TMP/lm" || fail "mount through the proxy failed"
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/lm" >"$TMP/cmp" || fail "lazy mount differs: $(tail -n 3 "$TMP/cmp")"
"$ANOLE" umount "$TMP/lm" || fail "umount failed"
wait_daemon_gone
gets=$(grep -c '^GET ' "$TMP/proxy.log")
conns=$(grep -c '^CONNECTION ' "$TMP/proxy.log")
echo "keep-alive: $gets GETs on $conns connections"
[ "$gets" -ge 8 ] || fail "only $gets GETs: the image is too small to tell"
[ $((conns * 2)) -le "$gets" ] || fail "$gets GETs took $conns connections: not kept alive"
kill "$PROXY_PID" 2>/dev/null || true

for fault in 503=3 reset redirect badredirect ignore-range flip delay=300; do
	faultproxy_start "$fault"
	REF=docker://$PROXY/faults/lazy:v1
	# each fault several times: repeated pulls and mounts, 0 wrong bytes
	for round in $(seq "${ROUNDS:-3}"); do
		# pull: the right image or one clean line
		rm -rf "$TMP/pulled"
		rc=0
		start=$(date +%s)
		timeout 180 "$ANOLE" pull -q "$REF" "$TMP/pulled" >/dev/null 2>"$TMP/pull.err" || rc=$?
		took=$(($(date +%s) - start))
		case $rc in
		0)
			mkdir -p "$TMP/pm"
			"$ANOLE" mount "oci:$TMP/pulled:v1" "$TMP/pm" || fail "$fault: mount of the pulled image failed"
			"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/pm" >"$TMP/cmp" || fail "$fault: pulled image differs: $(tail -n 3 "$TMP/cmp")"
			umount "$TMP/pm"
			pull="pulled right in ${took}s" ;;
		1)
			[ "$(wc -l <"$TMP/pull.err")" = 1 ] || fail "$fault: pull error is not one line: $(cat "$TMP/pull.err")"
			pull="pull failed in ${took}s: $(cat "$TMP/pull.err")" ;;
		*) fail "$fault: pull exit $rc after ${took}s (crash or hang): $(tail -n 3 "$TMP/pull.err")" ;;
		esac
		# lazy reads: right bytes or EIO
		rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR"
		mkdir -p "$TMP/lm"
		rc=0
		timeout 120 "$ANOLE" mount "$REF" "$TMP/lm" 2>"$TMP/mount.err" || rc=$?
		if [ "$rc" = 0 ]; then
			rc=0
			timeout 300 "$ROOT/tests/lib/readers" "$TRUTH" "$TMP/lm" 2 >"$TMP/r" 2>&1 || rc=$?
			grep WRONG "$TMP/r" && fail "$fault: a lazy read returned wrong bytes"
			[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "$fault: readers exit $rc: $(tail -n 3 "$TMP/r")"
			lazy="lazy reads: $(tail -n 1 "$TMP/r")"
			"$ANOLE" umount "$TMP/lm" || fail "$fault: umount failed"
		elif [ "$rc" = 1 ]; then
			[ "$(wc -l <"$TMP/mount.err")" = 1 ] || fail "$fault: mount error is not one line: $(cat "$TMP/mount.err")"
			lazy="mount failed: $(cat "$TMP/mount.err")"
		else
			fail "$fault: mount exit $rc (crash or hang): $(tail -n 3 "$TMP/mount.err")"
		fi
		wait_daemon_gone
		echo "$fault #$round: $pull; $lazy"
	done
	kill "$PROXY_PID" 2>/dev/null || true
done
