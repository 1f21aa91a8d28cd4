#!/bin/bash
# The lazy mount daemon's processes (holder, worker, keeper) killed with
# SIGKILL alone, in every order and together, while 8 readers read an
# uncompressed lazy image (where zeros would not be caught by
# decompression) through a slow registry, each file compared with the
# source: every read gives the source's bytes or an error, never others;
# afterwards the daemon runs again (three processes, each in a session of
# its own) and the whole tree reads right. Then nothing can serve (the
# keeper cannot fork: a pids cgroup): reads fail with EIO rather than see
# the cache files' holes, and the daemon comes back once it can fork.
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/registry
. "$ROOT/tests/lib/registry"
need_root
need_erofs
need_cmd docker-registry python3 curl
need_fanotify

export ANOLE_RUNTIME_DIR=$TMP/run ANOLE_CACHE_DIR=$TMP/cache
CG=
pids() { cat "$ANOLE_RUNTIME_DIR"/{keeper,holder,daemon}.pid 2>/dev/null; }
daemon_kill() {
	local m p
	# all three at once (one left alive restarts the others), then the
	# mounts: quick, so that nothing is left if this is cut short
	# shellcheck disable=SC2046
	kill -9 $(pids) 2>/dev/null
	for m in $(_mounts_under "$TMP"); do umount -l "$m" 2>/dev/null; done
	if [ -n "$CG" ] && [ -d "$CG" ]; then
		for p in $(cat "$CG/cgroup.procs"); do kill -9 "$p" 2>/dev/null; done
		sleep 0.2
		rmdir "$CG" 2>/dev/null
	fi
	true
}
trap '_rc=$?; daemon_kill; (exit $_rc); _cleanup' EXIT
# alive PID: running, not a zombie (a killed process its parent has not
# reaped yet keeps its pid, and its pid file still names it)
alive() {
	local st
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case $st in Z*) return 1 ;; esac
}
wait_daemon_gone() {
	local i p busy
	for i in $(seq 1 50); do
		busy=
		for p in $(pids); do alive "$p" && busy=1; done
		[ -z "$busy" ] && return 0
		sleep 0.2
	done
	fail "the daemon still runs with nothing mounted: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
}

# a fresh cache and runtime directory: a process that has just let go of
# its pid file may still rename a file into the runtime directory as it
# ends (rm then says "Directory not empty"), so try again for a while
clear_state() {
	local i
	for i in $(seq 1 50); do
		rm -rf "$ANOLE_CACHE_DIR" "$ANOLE_RUNTIME_DIR" 2>/dev/null &&
			[ ! -e "$ANOLE_RUNTIME_DIR" ] && [ ! -e "$ANOLE_CACHE_DIR" ] && return 0
		sleep 0.1
	done
	fail "cannot clear the cache and runtime directories: $(ls -la "$ANOLE_RUNTIME_DIR" 2>&1)"
}

# 72 files of 16 KiB to 384 KiB, random bytes: every 4 KiB page differs
# from zeros, and each file is a fetch of its own
mkdir -p "$TMP/src/d1" "$TMP/src/d2"
python3 - "$TMP/src" <<'EOF'
import os, random, sys
r = random.Random(620)
for i in range(72):
    d = os.path.join(sys.argv[1], "d%d" % (i % 2 + 1))
    with open(os.path.join(d, "f%03d" % i), "wb") as f:
        f.write(r.randbytes(r.randrange(16, 384) * 1024 + r.randrange(4096)))
EOF
registry_start
"$ANOLE" convert -q -z none "$TMP/src" "docker://$REGISTRY/deaths/plain:v1" >"$TMP/convert.out" 2>&1 ||
	fail "convert failed: $(tail -n 3 "$TMP/convert.out")"
# each ranged GET waits: the kills land while fetches are under way
faultproxy_start delay=250
REF=docker://$PROXY/deaths/plain:v1

# recovered: status answers, and keeper, holder and worker are three live
# processes, each the leader of a session of its own
recovered() {
	local i p n
	for i in $(seq 1 300); do
		if "$ANOLE" status --json >"$TMP/st.json" 2>/dev/null && [ "$(pids | wc -l)" = 3 ]; then
			n=0
			for p in $(pids); do
				alive "$p" && [ "$(ps -o sid= -p "$p" | tr -d ' ')" = "$p" ] && n=$((n + 1))
			done
			[ "$n" = 3 ] && return 0
		fi
		sleep 0.1
	done
	return 1
}

# kill_case NAME STEP...: a fresh cache and mount, 8 readers, then each
# STEP after the one before: a list of processes (keeper, holder, worker)
# killed by one `kill -9`, the next 0.8 s later (after a restart: the new
# processes).
kill_case() {
	local name=$1 step p list
	shift
	wait_daemon_gone
	clear_state
	mkdir -p "$TMP/m"
	"$ANOLE" mount "$REF" "$TMP/m" || fail "$name: mount failed: $(tail -n 3 "$ANOLE_RUNTIME_DIR/daemon.log")"
	recovered || fail "$name: the daemon is not up: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
	local rc=0
	"$ROOT/tests/lib/readers" "$TMP/src" "$TMP/m" 8 >"$TMP/r.out" 2>&1 &
	local rpid=$!
	sleep 1
	for step; do
		list=
		for p in ${step//+/ }; do
			case $p in
			keeper) list="$list $(cat "$ANOLE_RUNTIME_DIR/keeper.pid")" ;;
			holder) list="$list $(cat "$ANOLE_RUNTIME_DIR/holder.pid")" ;;
			worker) list="$list $(cat "$ANOLE_RUNTIME_DIR/daemon.pid")" ;;
			esac
		done
		# shellcheck disable=SC2086  # one kill for all: they die together
		kill -9 $list || fail "$name: nothing to kill in $step"
		sleep 0.8
		recovered || fail "$name: no recovery after killing $step: $(tail -n 8 "$ANOLE_RUNTIME_DIR/daemon.log")"
	done
	alive "$rpid" || echo "($name: the readers finished before the last kill)"
	wait "$rpid" || rc=$?
	grep WRONG "$TMP/r.out" | head -n 3
	grep -q WRONG "$TMP/r.out" && fail "$name: a reader got bytes other than the source's"
	[ "$rc" != 1 ] || fail "$name: readers failed: $(tail -n 3 "$TMP/r.out")"
	"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" ||
		fail "$name: after the kills the mount differs: $(tail -n 3 "$TMP/cmp")"
	echo "$name: $(tail -n 1 "$TMP/r.out" | sed 's/^readers: //'); then the whole tree reads right"
	"$ANOLE" umount "$TMP/m" || fail "$name: umount failed"
}

echo "== 1. one process at a time, in every order, and two at once"
kill_case "worker" worker
kill_case "holder" holder
kill_case "keeper" keeper
kill_case "worker, then holder" worker holder
kill_case "holder, then worker" holder worker
kill_case "keeper, then holder" keeper holder
kill_case "holder and worker together" holder+worker
kill_case "keeper and holder together" keeper+holder
kill_case "keeper and worker together" keeper+worker
kill_case "all of them, one after another" worker holder keeper worker

echo "== 2. what the three processes are"
wait_daemon_gone
clear_state
"$ANOLE" mount "$REF" "$TMP/m" || fail "mount failed"
recovered || fail "the daemon is not up"
for p in keeper holder daemon; do
	pid=$(cat "$ANOLE_RUNTIME_DIR/$p.pid")
	kill -TERM "$pid"
	kill -HUP "$pid"
	kill -INT "$pid"
done
sleep 0.5
for p in $(pids); do alive "$p" || fail "a daemon process ended on SIGTERM, SIGHUP or SIGINT"; done
echo "TERM, HUP and INT leave all three running; sessions: $(for p in $(pids); do ps -o sid= -p "$p"; done | tr -s ' \n' ' ')"
for p in keeper holder; do
	adj=$(cat "/proc/$(cat "$ANOLE_RUNTIME_DIR/$p.pid")/oom_score_adj")
	# lowering it needs CAP_SYS_RESOURCE, which some containers drop
	cap=$(awk '/^CapEff/ {print $2}' /proc/self/status)
	if (((16#$cap >> 24) & 1)); then
		[ "$adj" = -1000 ] || fail "the $p's OOM score adjustment is $adj, not -1000"
	fi
	echo "$p: oom_score_adj $adj"
done
"$ANOLE" umount "$TMP/m" || fail "umount failed"

echo "== 3. nothing can serve: reads fail (EIO), then the daemon comes back"
wait_daemon_gone
clear_state
"$ANOLE" mount "$REF" "$TMP/m" || fail "mount failed"
recovered || fail "the daemon is not up"
CG=/sys/fs/cgroup/pids/anole-t0620-$$
mkdir "$CG" || skip "no pids cgroup to put the keeper in"
echo "$(cat "$ANOLE_RUNTIME_DIR/keeper.pid")" >"$CG/cgroup.procs"
echo 1 >"$CG/pids.max"
kill -9 "$(cat "$ANOLE_RUNTIME_DIR/holder.pid")" "$(cat "$ANOLE_RUNTIME_DIR/daemon.pid")"
rc=0
timeout 120 "$ROOT/tests/lib/readers" "$TMP/src" "$TMP/m" 2 >"$TMP/r3.out" 2>&1 || rc=$?
grep -q WRONG "$TMP/r3.out" && fail "with nothing serving, a reader got bytes other than the source's: $(grep -m 3 WRONG "$TMP/r3.out")"
[ "$rc" = 3 ] || fail "with nothing serving, reads did not fail (rc $rc): $(tail -n 3 "$TMP/r3.out")"
grep -q "cannot start a holder" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "the keeper did not try to start a holder"
grep -q "failing every read" "$ANOLE_RUNTIME_DIR/daemon.log" || fail "the keeper did not fail reads"
echo "nothing serving: $(tail -n 1 "$TMP/r3.out" | sed 's/^readers: //')"
echo max >"$CG/pids.max"
recovered || fail "the daemon did not come back: $(tail -n 5 "$ANOLE_RUNTIME_DIR/daemon.log")"
"$TREECMP" --ignore-root-mtime "$TMP/src" "$TMP/m" >"$TMP/cmp" ||
	fail "after nothing served the mount differs: $(tail -n 3 "$TMP/cmp")"
echo "able to fork again: the daemon came back and the whole tree reads right"
for p in $(cat "$CG/cgroup.procs"); do echo "$p" >/sys/fs/cgroup/pids/cgroup.procs; done
rmdir "$CG" && CG=
"$ANOLE" umount "$TMP/m" || fail "umount failed"
wait_daemon_gone
echo ok
