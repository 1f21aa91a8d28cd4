#!/bin/bash
# Shared-memory sockets across exec(): a server accepts, reads the
# client's first byte, sends A bytes, then (after an exec that fails
# and must leave every descriptor flag as it was, and a system() whose
# shell must not see the socket) execs with the socket open
# while B1 bytes of the client's wait in the ring. The new image (python
# reading and writing two inherited numbers; sh -c 'exec cat <&3 >&3',
# two execs and cat's read/write on 0 and 1) carries on in shared memory:
# every byte both ways is compared, sizes pseudo-random and larger than a
# ring, and the statistics show no TCP. A socket with FD_CLOEXEC is
# closed by the exec: the client reads A, then EOF, never hangs; so is
# one kept for a statically linked new image, which cannot load the
# library (it finds no descriptor: EBADF). An
# ANOLE_SMC_EXEC value that does not check (any string) never crashes the
# new image, is gone from its environment, attaches nothing to a
# descriptor that is not a TCP socket, and makes a TCP socket it names
# fail (ECONNRESET) rather than read it bare.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

X=$ROOT/tests/lib/smc-exec
SEED=${SMC_EXEC_SEED:-$RANDOM}
echo "seed $SEED"
# A B1 B2 of the seed, as smc-exec computes them
read -r A B1 B2 < <(python3 -c "
import importlib.machinery, importlib.util
l = importlib.machinery.SourceFileLoader('x', '$X')
m = importlib.util.module_from_spec(importlib.util.spec_from_loader('x', l)); l.exec_module(m)
print(*m.sizes('$SEED'))")
echo "A=$A B1=$B1 B2=$B2"

# run_case HOW: server and client through one exec; prints the stats lines
run_case() {
	local srv out
	rm -f "$TMP/port" "$TMP/done" "$ANOLE_SMC_STATS"
	timeout 60 "$ANOLE" smc run -- python3 "$X" server "$TMP" "$1" "$SEED" >"$TMP/srv.out" 2>&1 &
	srv=$!
	smc_bg $srv
	out=$(timeout 60 "$ANOLE" smc run -- python3 "$X" client "$TMP" "$1" "$SEED" 2>&1) ||
		fail "$1: client: $out"
	wait "$srv" || fail "$1: server or its new image: $(cat "$TMP/srv.out")"
	echo "$1: client says $out"
	cat "$ANOLE_SMC_STATS"
	[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "$1: a connection fell back to TCP"
	CASE_OUT=$out
}
# line ROLE: the stats line of ROLE's connection as "mode tx rx"
line() {
	python3 -c "
import json, sys
for l in open('$ANOLE_SMC_STATS'):
    o = json.loads(l)
    if o['role'] == '$1': print(o['mode'], o['tx'], o['rx'])"
}

run_case python
[ "$CASE_OUT" = ok ] || fail "python: $CASE_OUT"
# the server's line is written by the new image and counts both
[ "$(line client)" = "smc $((1 + B1 + B2)) $((A + 32 + B2))" ] || fail "python: client $(line client)"
[ "$(line server)" = "smc $((A + 32 + B2)) $((1 + B1 + B2))" ] || fail "python: server $(line server)"

run_case sh-cat
[ "$CASE_OUT" = ok ] || fail "sh-cat: $CASE_OUT"
# cat leaves its standard input open at exit: no server line
[ "$(line client)" = "smc $((1 + B1 + B2)) $((A + B1 + B2))" ] || fail "sh-cat: client $(line client)"

run_case cloexec
[ "$CASE_OUT" = "ok eof" ] || fail "cloexec: $CASE_OUT"
[ "$(line client)" = "smc 1 $A" ] || fail "cloexec: client $(line client)"

# a statically linked new image cannot load the library: the socket is
# closed for it (EBADF there, EOF at the client) instead of left bare
if printf 'int main(void) { return 0; }' | cc -static -x c -o "$TMP/probe" - 2>/dev/null; then
	cat >"$TMP/static-read.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char b;
	ssize_t n = read(atoi(argv[1]), &b, 1);

	printf("%s\n", n < 0 && errno == EBADF ? "ebadf" : n < 0 ? "error" : n ? "byte" : "eof");
	return 0;
}
C
	cc -static -O2 -o "$TMP/static-read" "$TMP/static-read.c" || fail "cc -static"
	run_case static
	[ "$CASE_OUT" = "ok eof" ] || fail "static: $CASE_OUT"
	[ "$(cat "$TMP/static.out")" = ebadf ] || fail "static: the new image read $(cat "$TMP/static.out")"
	echo "static new image: $(cat "$TMP/static.out"), the client EOF"
else
	echo "no static libc: the statically linked case is not run"
fi

# values that do not check: nothing crashes, the variable is gone, stdout
# (a file named as a number) is left alone
for v in '' 1 2 'x;;;' '1;' '1;s' '1;s,0,1,2,3,4,5,6,262144,0,0,0,1' '1;c,0,0,0,0,0,0,0,4096,0,0,0,1.1' \
	"1;s,9,1,2,3,4,5,6,7,8,9,10,1" "$(head -c 3000 /dev/urandom | tr -d '\0' | tr -c '0-9,;.sc' ',')"; do
	out=$(ANOLE_SMC_EXEC=$v timeout 30 "$ANOLE" smc run -- python3 -c '
import os
print("gone" if "ANOLE_SMC_EXEC" not in os.environ else "still there")') ||
		fail "ANOLE_SMC_EXEC='$v': exit $?"
	[ "$out" = gone ] || fail "ANOLE_SMC_EXEC='$v': $out"
done
echo "values that do not check: ignored"

# a TCP socket named with descriptors that are not its state: reset
out=$(timeout 30 python3 -c '
import os, socket, sys
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
c = socket.create_connection(ls.getsockname())
a, _ = ls.accept()
a.set_inheritable(True)
c.sendall(b"tcp bytes")
env = dict(os.environ, ANOLE_SMC_EXEC="1;s,0,0,1,2,0,1,2,262144,0,0,0,%d" % a.fileno())
child = "import socket\ns = socket.socket(fileno=%d)\ntry:\n    print(s.recv(100))\nexcept ConnectionResetError:\n    print(\"reset\")" % a.fileno()
os.execve(sys.argv[1], [sys.argv[1], "smc", "run", "--", "python3", "-c", child], env)
' "$ANOLE") || fail "forged entry: exit $?"
[ "$out" = reset ] || fail "forged entry on a TCP socket: $out"
echo "forged entry on a TCP socket: $out"
