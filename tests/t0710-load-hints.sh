#!/bin/bash
# ELF load hints: what the dynamic loader reads to start each
# program, computed from the image alone. A tree of host programs (curl,
# with its 30-odd libraries, and true) built with --separate-data: each
# program's closure, resolved inside the image through /etc/ld.so.conf,
# is the set of libraries ldd names on the host, every file has spans and
# each program's trigger lies in its first span (its header's extent);
# the same tree gives the same hints; a library missing from the image, a
# symlink loop and broken ELF files are skipped, never fatal. The daemon
# side (hints fetched with a lazy mount, a run's program started before
# its first read) is in t0700.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_cmd ldd python3

S=$TMP/src
mkdir -p "$S/usr/bin" "$S/usr/lib/x86_64-linux-gnu" "$S/usr/lib64" "$S/etc/ld.so.conf.d"
ln -s usr/lib "$S/lib"
ln -s usr/bin "$S/bin"
ln -s usr/lib64 "$S/lib64"
cp /usr/bin/curl /usr/bin/true "$S/usr/bin/"
ldd /usr/bin/curl | awk '/=> \// {print $1, $3}' >"$TMP/ldd"
while read -r name path; do cp -L "$path" "$S/usr/lib/x86_64-linux-gnu/$name"; done <"$TMP/ldd"
interp=$(readelf -lW /usr/bin/curl | sed -n 's/.*interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || skip "/usr/bin/curl has no interpreter"
cp -L "$interp" "$S/usr/lib64/$(basename "$interp")"
[ "$interp" = "/lib64/$(basename "$interp")" ] || skip "interpreter $interp is not in /lib64"
printf 'include /etc/ld.so.conf.d/*.conf\n# a comment\n' >"$S/etc/ld.so.conf"
echo /usr/lib/x86_64-linux-gnu >"$S/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
# things to skip: a truncated ELF file, one with absurd headers, a loop
head -c 100 /usr/bin/true >"$S/usr/bin/truncated"
python3 - "$S/usr/bin/absurd" <<'PY'
import sys
d = bytearray(open("/usr/bin/true", "rb").read())
d[56:58] = (65535).to_bytes(2, "little")  # e_phnum
d[32:40] = (1 << 62).to_bytes(8, "little")  # e_phoff
open(sys.argv[1], "wb").write(d)
PY
chmod +x "$S/usr/bin/truncated" "$S/usr/bin/absurd"
ln -s libloop.so "$S/usr/lib/x86_64-linux-gnu/libloop.so"

"$ANOLE" build -q --separate-data -z lz4 "$S" "$TMP/img" || fail "build failed"
"$ANOLE" inspect --json --load-hints "$TMP/img" >"$TMP/hints.json" || fail "inspect --load-hints failed"
"$ANOLE" inspect --load-hints "$TMP/img" >"$TMP/hints.txt" || fail "inspect --load-hints (text) failed"
grep -q "^/usr/bin/curl: " "$TMP/hints.txt" || fail "no hints for curl: $(head -3 "$TMP/hints.txt")"
expect_fail "$ANOLE" inspect --load-hints "$TMP/img" /usr/bin/curl

echo "== 1. closures against ldd; spans and triggers"
python3 - "$TMP/hints.json" "$TMP/ldd" "$S" "$(basename "$interp")" <<'PY'
import json, os, subprocess, sys
h = json.load(open(sys.argv[1]))
ldd = {l.split()[0] for l in open(sys.argv[2])}
root, interp = sys.argv[3], sys.argv[4]
paths, files = h["paths"], h["files"]
progs = {paths[p[3]]: p for p in h["programs"]}
def fail(msg):
    sys.exit("FAIL: " + msg)
for bad in ("/usr/bin/truncated", "/usr/bin/absurd"):
    if bad in progs:
        fail(bad + " has hints")
for exe, want in (("/usr/bin/curl", ldd | {interp}), ("/usr/bin/true", None)):
    p = progs.get(exe) or fail("no hints for " + exe)
    got = [paths[i] for i in p[3:]]
    if got[0] != exe or len(set(got)) != len(got):
        fail("%s: closure %s" % (exe, got))
    names = {os.path.basename(x) for x in got[1:]}
    if want is not None and names != want:
        fail("%s: closure %s, ldd says %s" % (exe, sorted(names), sorted(want)))
    print("%s: %d files, as ldd" % (exe, len(got)))
    # each file: spans inside its blob, the first holding byte 0's extent
    for i in p[3:]:
        f = files[i]
        if not f or len(f) % 3:
            fail("%s: no spans" % paths[i])
        if any(f[k + 2] <= 0 or f[k + 1] < 0 for k in range(0, len(f), 3)):
            fail("%s: bad span" % paths[i])
# the trigger is where byte 0 of the program lies: the first span's start
for exe, p in progs.items():
    first = files[p[3]]
    if not (first[0] == p[0] and first[1] <= p[1] < first[1] + first[2]):
        fail("%s: trigger %s outside its first span %s" % (exe, p[:3], first[:3]))
print("%d programs, %d files" % (len(progs), len(files)))
PY

echo "== 2. the same bytes, the same hints"
"$ANOLE" build -q --separate-data -z lz4 "$S" "$TMP/img2" || fail "second build failed"
"$ANOLE" inspect --json --load-hints "$TMP/img2" >"$TMP/hints2.json"
cmp -s "$TMP/hints.json" "$TMP/hints2.json" || fail "hints differ between two builds"

echo "== 3. a library missing from the image is skipped"
rm "$S/usr/lib/x86_64-linux-gnu/libz.so.1"
"$ANOLE" build -q --separate-data -z lz4 "$S" "$TMP/img3" || fail "build without libz failed"
"$ANOLE" inspect --load-hints "$TMP/img3" >"$TMP/hints3.txt" || fail "inspect without libz failed"
grep -q "^/usr/bin/curl: " "$TMP/hints3.txt" || fail "no hints for curl without libz"
! grep -q "libz.so.1" "$TMP/hints3.txt" || fail "hints name a library that is not there"
echo "ok"
