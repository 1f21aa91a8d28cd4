#!/bin/bash
# Shared-memory sockets, a server that talks first: it accepts, gives its
# client's proposal time to be queued, then writes before it reads. Its bytes
# must reach the client, wherever they go: the write answers the
# proposal and waits for the client's answer before it decides (they
# went to TCP while the client switched to the rings, and were lost).
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

cat >"$TMP/wf.py" <<'PY'
import os, socket, sys, time
d = sys.argv[2]
if sys.argv[1] == "server":
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
    open(d + "/port.tmp", "w").write(str(ls.getsockname()[1])); os.rename(d + "/port.tmp", d + "/port")
    c, _ = ls.accept()
    # the client proposes right after connect and waits for the answer:
    # the sleep makes it likely that the proposal is queued when the
    # server writes (any order must give the same bytes)
    time.sleep(0.3)
    c.sendall(b"s" * 100000)
    got = c.recv(1, socket.MSG_WAITALL)
    print("ok" if got == b"c" else "server got %r" % got)
else:
    while not os.path.exists(d + "/port"):
        time.sleep(0.05)
    c = socket.create_connection(("127.0.0.1", int(open(d + "/port").read())))
    c.sendall(b"c")
    got = b""
    while len(got) < 100000:
        b = c.recv(65536)
        if not b:
            break
        got += b
    print("ok" if got == b"s" * 100000 else "client got %d bytes" % len(got))
PY
timeout 60 "$ANOLE" smc run -- python3 "$TMP/wf.py" server "$TMP" >"$TMP/srv.out" 2>&1 &
srv=$!
smc_bg $srv
out=$(timeout 60 "$ANOLE" smc run -- python3 "$TMP/wf.py" client "$TMP" 2>&1) || fail "client: $out"
wait "$srv" || fail "server: $(cat "$TMP/srv.out")"
[ "$out" = ok ] && [ "$(cat "$TMP/srv.out")" = ok ] || fail "client: $out, server: $(cat "$TMP/srv.out")"
cat "$ANOLE_SMC_STATS"
echo "t0920: a server that writes first with a proposal queued: every byte arrives"
