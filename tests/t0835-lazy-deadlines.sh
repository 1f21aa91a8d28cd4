#!/bin/bash
# Lazy readers against a registry that misbehaves on range requests
# (tests/lib/faultproxy): 200 answers whose bodies never end, fast or
# trickling (1 byte/s, and 4 KiB/s: above the stall rate, so only the
# deadline ends it); a 206 that stalls half-way; a server that ignores
# Range. Eight readers read at once, each 4 KiB of its own part of a file:
# each gets the right bytes or EIO within the bound docs/SECURITY.md states
# for a range (plus slack for a busy machine), and no endless answer is
# read much past the bytes asked for.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry skopeo umoci python3
need_fanotify

# a range fetch: 8 s plus its bytes at 128 KiB/s; a reader's request is at
# most 1 MiB
RANGE_BOUND=16
SLACK=15
FILE=opt/anole/data/random-3m

L=$("$ROOT/tests/lib/mkoci" --small) || fail "mkoci --small failed"
TRUTH=$(dirname "$L")/truth/rootfs
[ -s "$TRUTH/$FILE" ] || fail "$FILE is not in the test image"
# shellcheck source=lib/lazyd
. "$ROOT/tests/lib/lazyd"

registry_start
"$ANOLE" convert -q "oci:$L:v1" "docker://$REGISTRY/faults/lazy:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(cat "$TMP/convert.out")"

# 8 threads each pread 4 KiB of their eighth of TRUTH's twin under MOUNT;
# one line each; exit 1 when a read was wrong or one took over LIMIT s
# (threads still blocked then are reported and left behind)
cat >"$TMP/probe.py" <<'EOF'
import os, sys, threading, time
truth, path, n, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
want = open(truth, "rb").read()
res = {}
def reader(i):
    off = (len(want) // n) * i // 4096 * 4096
    start = time.monotonic()
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            got = os.pread(fd, 4096, off)
        finally:
            os.close(fd)
        what = "right" if got == want[off:off + 4096] else "WRONG"
    except OSError as e:
        what = "EIO" if e.errno == 5 else "error: " + e.strerror
    res[i] = (time.monotonic() - start, what, off)
threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(n)]
for t in threads:
    t.start()
end = time.monotonic() + limit + 60
for t in threads:
    t.join(max(0, end - time.monotonic()))
bad = False
for i in range(n):
    took, what, off = res.get(i, (None, "still blocked", None))
    print("reader %d at %s: %s after %s s" % (i, off, what,
          "%.1f" % took if took is not None else "more than %.0f" % (limit + 60)))
    bad |= took is None or took > limit or what not in ("right", "EIO")
sys.stdout.flush()
os._exit(1 if bad else 0)
EOF

probe() {	# FAULT: mount through the proxy, 8 readers at once
	local fault=$1
	faultproxy_start "$fault"
	rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR"
	mkdir -p "$TMP/lm"
	"$ANOLE" mount --prefetch=none --no-load-hints "docker://$PROXY/faults/lazy:v1" "$TMP/lm" ||
		fail "$fault: mount failed"
	python3 "$TMP/probe.py" "$TRUTH/$FILE" "$TMP/lm/$FILE" 8 $((RANGE_BOUND + SLACK)) \
		>"$TMP/probe.out" 2>&1 || {
		cat "$TMP/probe.out"
		fail "$fault: a read was wrong or took longer than ${RANGE_BOUND}s (+${SLACK}s)"
	}
	echo "$fault: $(grep -c right "$TMP/probe.out") right, $(grep -c EIO "$TMP/probe.out") EIO;" \
		"slowest $(sort -t' ' -k6 -n "$TMP/probe.out" | tail -n 1 | sed 's/.*after //')"
	"$ANOLE" umount "$TMP/lm" || fail "$fault: umount failed"
	wait_daemon_gone
	kill "$PROXY_PID"
}

for fault in range200=endless range200=1 range200=4096 stall-range ignore-range; do
	probe "$fault"
	[ "$fault" = range200=endless ] || continue
	# at most 4 MiB of a 200 are read (REGISTRY_RANGE_200_MAX), plus what
	# socket buffers held when the client left
	sent=$("$ROOT/tests/lib/proxy-sent" "$TMP/proxy.log" "200 for a range (endless)") ||
		fail "endless answers were read on: $sent"
	most=$(sort -n <<<"$sent" | tail -n 1)
	echo "endless answers: $(wc -l <<<"$sent"), the most bytes sent for one: $most"
	[ "$most" -le $(((4 + 32) << 20)) ] || fail "an endless answer was read on: $most bytes"
done
registry_stop
echo "every lazy read ended within its bound"
