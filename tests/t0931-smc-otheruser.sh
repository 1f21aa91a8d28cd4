#!/bin/bash
# Shared-memory sockets against another user and broken peers.
#
# 1. A root pair is mid-connection in shared memory. `nobody` cannot
#    connect to its rendezvous socket (mode 0600, even in a world-writable
#    directory); with the socket made 0666 (a wrongly shared directory) it
#    connects but every forged message (a proposal with no socket, one
#    with a TCP socket of its own to the pair's port, a confirm, an
#    accept, garbage) gets a decline or nothing, and never a descriptor;
#    /proc gives it none of the pair's descriptors or mappings, and a
#    memfd has no path. The pair's bytes stay right.
# 2. The rendezvous directory missing, a file, or read-only: plain TCP,
#    reason no-rendezvous counted once, bytes right.
# 3. The handshake's peer killed or broken: the server side's rendezvous
#    killed (declined), never answering (timeout), answering with a bad
#    memfd (bad-accept); the client side vanishing after the accept
#    (withdrawn) or killed after its proposal. Each ends as TCP with the
#    bytes right, or ends with the peer's death; nothing hangs.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
need_root
need_cmd setpriv
# shellcheck source=lib/smc
. "$ROOT/tests/lib/smc"

# the other user's python: not one under /root, which nobody cannot reach
SYSPY=/usr/bin/python3
[ -x "$SYSPY" ] || skip "needs $SYSPY"
# (without a sanitizer build's preloaded runtimes: the forger is no
# program under test)
as_nobody() { env -u LD_PRELOAD setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# the JSON of the last forger run, field $1
forged() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$1)" "$TMP/forger.json"; }

# ---- 1. another user against a root pair ----
chmod 711 "$TMP"
chmod 1777 "$ANOLE_SMC_DIR"
# a copy nobody can read: the checkout may sit where only root can
# (CI clones into a 0700 directory)
FORGE=$TMP/smc-forge
install -m 644 "$ROOT/tests/lib/smc-forge" "$FORGE"
timeout 300 "$ANOLE" smc run -- python3 "$PEER" echo-server "$TMP/port" 1 &
srv=$!
wait_file "$TMP/port"
port=$(cat "$TMP/port")
timeout 300 "$ANOLE" smc run -- python3 "$FORGE" client "$TMP/port" t0931 200000 "$TMP/ready" "$TMP/go" \
	>"$TMP/client.out" &
cli=$!
wait_file "$TMP/ready"
# the programs' own pids (children of timeout)
pids="$(env -u LD_PRELOAD pgrep -P "$srv") $(env -u LD_PRELOAD pgrep -P "$cli")"
[ "$(echo "$pids" | wc -w)" = 2 ] || fail "pids of the pair: $pids"

as_nobody timeout 120 "$SYSPY" "$FORGE" forger "$ANOLE_SMC_DIR/tcp-$port" "$port" $pids >"$TMP/forger.json"
cat "$TMP/forger.json"
[ "$(forged "['uid']")" = 65534 ] || fail "the forger did not run as nobody"
[ "$(forged "['rendezvous']['connect']")" = "Permission denied" ] ||
	fail "another user connected to a 0600 rendezvous socket"

chmod 666 "$ANOLE_SMC_DIR/tcp-$port"
as_nobody timeout 120 "$SYSPY" "$FORGE" forger "$ANOLE_SMC_DIR/tcp-$port" "$port" $pids >"$TMP/forger.json"
cat "$TMP/forger.json"
[ "$(forged "['rendezvous']['connect']")" = ok ] || fail "the forger could not even connect to a 0666 socket"
for a in proposal-no-socket proposal-own-socket confirm accept garbage; do
	case $(forged "['rendezvous']['$a']['answer']") in
	# the server declines at once, before reading: closing with the
	# forger's message unread resets the socket (EOF, EPIPE) first
	decline | eof | "error Broken pipe" | "error Connection reset by peer") ;;
	*) fail "forged $a was answered: $(forged "['rendezvous']['$a']")" ;;
	esac
	[ "$(forged "['rendezvous']['$a']['fds']")" = 0 ] || fail "forged $a got descriptors"
done
[ "$(forged "['memfd_paths']")" = "[]" ] || fail "a memfd has a path: $(forged "['memfd_paths']")"
for p in $pids; do
	forged "['processes']['$p']" | grep -q READ && fail "the forger read from process $p: $(forged "['processes']['$p']")"
done
touch "$TMP/go"
wait "$cli" || fail "the pair's client failed: $(cat "$TMP/client.out")"
[ "$(cat "$TMP/client.out")" = ok ] || fail "the pair's client said: $(cat "$TMP/client.out")"
wait "$srv" || fail "the pair's server failed"
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 2 ] || fail "the pair was not in shared memory"
[ "$(smc_stat "['tcp_connections']")" = 0 ] || fail "the pair fell back"
echo "other user: no connection, no descriptor, no byte; the pair's bytes echoed right"

# ---- 2. the rendezvous directory unusable ----
# echo-server and client under ANOLE_SMC_DIR=$1 with a fresh statistics
# file: plain TCP, one no-rendezvous fallback, every byte back
unusable() {
	rm -f "$TMP/port" "$ANOLE_SMC_STATS"
	ANOLE_SMC_DIR=$1 timeout 120 "$ANOLE" smc run -- python3 "$PEER" echo-server "$TMP/port" 1 &
	local s=$! out
	wait_file "$TMP/port"
	out=$(ANOLE_SMC_DIR=$1 timeout 120 "$ANOLE" smc run -- python3 "$PEER" client "$TMP/port" 1000000 seed) ||
		fail "$2: client: $out"
	[ "$out" = "ok 1000000" ] || fail "$2: client said: $out"
	wait "$s" || fail "$2: server failed"
	cat "$ANOLE_SMC_STATS"
	[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "$2: shared memory without a rendezvous"
	[ "$(smc_stat "['fallbacks']")" = "{'no-rendezvous': 1}" ] || fail "$2: fallbacks $(smc_stat "['fallbacks']")"
	echo "rendezvous $2: TCP, no-rendezvous counted once, bytes right"
}
unusable "$TMP/none" missing
touch "$TMP/afile"
unusable "$TMP/afile" "a file"
mkdir "$TMP/ro"
mount --bind "$TMP/ro" "$TMP/ro"
mount -o remount,bind,ro "$TMP/ro"
unusable "$TMP/ro" read-only

# ---- 3. the handshake's peer dies or breaks ----
# a library client against a fake server side: TCP with reason $2
broken_server() {
	rm -f "$TMP/port" "$ANOLE_SMC_STATS"
	python3 "$FORGE" fake-server "$ANOLE_SMC_DIR" "$TMP/port" "$1" &
	local s=$! out
	wait_file "$TMP/port"
	out=$(ANOLE_SMC_TIMEOUT_MS=500 timeout 120 "$ANOLE" smc run -- python3 "$PEER" client "$TMP/port" 1000000 s$1) ||
		fail "server $1: client: $out"
	[ "$out" = "ok 1000000" ] || fail "server $1: client said: $out"
	wait "$s" || fail "server $1: the fake server failed"
	cat "$ANOLE_SMC_STATS"
	[ "$(smc_stat "['fallbacks']")" = "{'$2': 1}" ] || fail "server $1: fallbacks $(smc_stat "['fallbacks']")"
	echo "handshake's server side $1: TCP ($2), bytes right"
}
broken_server die declined
broken_server silent timeout
broken_server bad-accept bad-accept

# a library server against a fake client side
rm -f "$TMP/port" "$ANOLE_SMC_STATS"
timeout 120 "$ANOLE" smc run -- python3 "$PEER" echo-server "$TMP/port" 2 &
srv=$!
wait_file "$TMP/port"
out=$(timeout 120 python3 "$FORGE" fake-client "$ANOLE_SMC_DIR" "$TMP/port" vanish 1000000) ||
	fail "vanishing client: $out"
[ "$out" = "ok accept" ] || fail "vanishing client said: $out"
rc=0
timeout 120 python3 "$FORGE" fake-client "$ANOLE_SMC_DIR" "$TMP/port" die 0 || rc=$?
[ "$rc" = 137 ] || fail "the dying client ended with $rc"
wait "$srv" || fail "the server did not get past a client dead in the handshake"
cat "$ANOLE_SMC_STATS"
[ "$(smc_stat "['smc_connections']")" = 0 ] || fail "shared memory with a peer that never confirmed"
[ "$(smc_stat "['tcp_connections']")" = 2 ] || fail "not both server ends TCP"
# the vanished one is withdrawn; the killed one withdrawn too, or
# tcp-first when its TCP EOF was seen before its proposal was queued
w=$(smc_stat "['fallbacks'].get('withdrawn', 0)")
t=$(smc_stat "['fallbacks'].get('tcp-first', 0)")
[ "$w" -ge 1 ] && [ $((w + t)) = 2 ] || fail "fallbacks $(smc_stat "['fallbacks']")"
echo "handshake's client side vanished or killed: server TCP (withdrawn), bytes right, no hang"
echo "t0931: other user gets nothing; unusable rendezvous and broken handshakes end as TCP"
