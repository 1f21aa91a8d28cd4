#!/bin/bash
# A lazy mount fetches with its caller's registry credentials, never with
# those of whoever started the daemon. A registry that wants Basic
# credentials (tests/lib/faultproxy basic=USER:PASS in front of an open
# one); the daemon started by a mount from a shell without any; a mount
# from a shell with $REGISTRY_AUTH_FILE reads the whole tree right, also
# after its worker is killed and started again (the credentials kept for
# it in RUNTIME/credentials.json, mode 0600); a mount without them is
# refused. The password is in no log, status, metrics or mounts.json, and
# a reference holding it is refused by the daemon without echoing it.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci python3
need_fanotify

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
TRUTH=$(dirname "$L")/truth/rootfs
# shellcheck source=lib/lazyd
. "$ROOT/tests/lib/lazyd"
SECRET=s3cret-$RANDOM$RANDOM
B64=$(printf 'alice:%s' "$SECRET" | base64 -w0)
# (not exported: docker-registry reads REGISTRY_* variables as its config)
nobody() { env -u REGISTRY_AUTH_FILE HOME="$TMP/home" "$ANOLE" "$@"; }
alice() { env REGISTRY_AUTH_FILE="$TMP/auth.json" HOME="$TMP/home" "$ANOLE" "$@"; }
mkdir -p "$TMP/home"

registry_start
faultproxy_start "basic=alice:$SECRET"
printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$PROXY" "$B64" >"$TMP/auth.json"
alice convert -q "oci:$L:v1" "docker://$PROXY/cred/lazy:v1" >"$TMP/out" 2>&1 ||
	fail "convert failed: $(cat "$TMP/out")"
grep -q 'auth=basic:alice$' "$TMP/proxy.log" || fail "the convert did not authenticate"
mkdir -p "$TMP/tiny/d" "$TMP/lm0" "$TMP/lm1" "$TMP/lm2"
echo tiny >"$TMP/tiny/d/f"
"$ANOLE" convert -q "$TMP/tiny" "docker://$REGISTRY/open/tiny:v1" >"$TMP/out" 2>&1 ||
	fail "convert of the open image failed: $(cat "$TMP/out")"

echo "== the daemon starts for a mount without credentials"
nobody mount "docker://$REGISTRY/open/tiny:v1" "$TMP/lm0" || fail "mount of the open image failed"
holder=$(cat "$ANOLE_RUNTIME_DIR/holder.pid")
[ "$(cat "$TMP/lm0/d/f")" = tiny ] || fail "the open image reads wrong"

echo "== a mount without credentials is refused"
rc=0
nobody mount --prefetch=none "docker://$PROXY/cred/lazy:v1" "$TMP/lm1" 2>"$TMP/err" || rc=$?
[ "$rc" = 1 ] || fail "a mount without credentials: exit $rc: $(cat "$TMP/err")"
grep -q "user name and password" "$TMP/err" || fail "refused for another reason: $(cat "$TMP/err")"

echo "== a mount with credentials, from the same daemon"
alice mount --prefetch=none "docker://$PROXY/cred/lazy:v1" "$TMP/lm2" 2>"$TMP/err" ||
	fail "a mount with the caller's credentials failed: $(cat "$TMP/err")"
[ "$(cat "$ANOLE_RUNTIME_DIR/holder.pid")" = "$holder" ] || fail "another daemon was started"
cmp "$TRUTH/usr/bin/dash" "$TMP/lm2/usr/bin/dash" || fail "a lazy read differs"
f=$ANOLE_RUNTIME_DIR/credentials.json
[ "$(stat -c '%a %u' "$f")" = "600 0" ] || fail "$f: $(stat -c '%a %u' "$f")"
grep -q "$B64" "$f" || fail "$f does not hold the mount's credentials"

echo "== the worker is killed; the next one reads on with the credentials"
worker=$(cat "$ANOLE_RUNTIME_DIR/daemon.pid")
kill -9 "$worker"
for _ in $(seq 1 100); do
	new=$(cat "$ANOLE_RUNTIME_DIR/daemon.pid" 2>/dev/null || true)
	[ -n "$new" ] && [ "$new" != "$worker" ] && kill -0 "$new" 2>/dev/null && break
	sleep 0.1
done
[ "$new" != "$worker" ] || fail "no worker came back"
before=$(grep -c 'auth=basic:alice$' "$TMP/proxy.log")
"$TREECMP" --ignore-root-mtime "$TRUTH" "$TMP/lm2" >"$TMP/cmp" ||
	fail "the lazy mount differs after the restart: $(tail -n 3 "$TMP/cmp")"
[ "$(grep -c 'auth=basic:alice$' "$TMP/proxy.log")" -gt "$before" ] ||
	fail "nothing was fetched after the restart"
if grep -q ' -> 401 (basic) auth=basic' "$TMP/proxy.log"; then fail "wrong credentials were sent"; fi

echo "== a reference that holds a password, straight to the daemon"
python3 - "$ANOLE_RUNTIME_DIR/daemon.sock" "docker://alice:$SECRET@$REGISTRY/open/tiny:v1" \
	"$TMP/lm1" >"$TMP/reply" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((json.dumps({"op": "mount", "ref": sys.argv[2], "mountpoint": sys.argv[3]}) + "\n").encode())
print(s.makefile().read())
EOF
grep -q '"error"' "$TMP/reply" || fail "the daemon took it: $(cat "$TMP/reply")"
grep -q "auth file" "$TMP/reply" || fail "no pointer to the auth file: $(cat "$TMP/reply")"

echo "== the password is nowhere else"
"$ANOLE" status --json >"$TMP/status.json" || fail "status failed"
grep -q "$PROXY/cred/lazy" "$TMP/status.json" || fail "status does not show the mount"
for what in "$TMP/status.json" "$TMP/reply" "$ANOLE_RUNTIME_DIR/daemon.log" \
	"$ANOLE_RUNTIME_DIR/mounts.json" "$ANOLE_RUNTIME_DIR/metrics.prom"; do
	[ -e "$what" ] || continue
	if grep -Eq "$SECRET|$B64" "$what"; then fail "$what holds the password"; fi
done
"$ANOLE" umount "$TMP/lm2" || fail "umount failed"
[ ! -e "$f" ] || fail "$f outlived the mount"
"$ANOLE" umount "$TMP/lm0" || fail "umount failed"
echo "the mount used its caller's credentials, and they went nowhere else"
