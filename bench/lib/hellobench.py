#!/usr/bin/env python3
"""HelloBench's workloads and their timed runs, for bench/startup.

    hellobench.py list
    hellobench.py record ANOLE REGISTRY WORK NAME...
    hellobench.py run ANOLE REGISTRY WORK REPS MODES NAME...   (TSV on stdout)

REGISTRY is host:port; images are REGISTRY/hb/NAME:oci (a plain OCI image,
gzip layer) and REGISTRY/hb/NAME:anole (converted). MODES is a
comma-separated subset of:

  a  skopeo copy + umoci unpack + runc run (the classic pull path)
  b  anole run --prefetch=none
  c  anole run (the recorded prefetch list)
  d  anole ctr-pull + ctr run through the anole snapshotter: a containerd
     and `anole snapshotter` of the run's own (root, state and sockets in
     WORK), started before the clock starts, as on a node

Every run starts from an empty cache (and dropped page cache) and ends when
the workload is ready: its line appeared, or nginx answered 200. Servers
are then stopped with SIGTERM. The output has one row per run:
image mode rep ready_ms bytes_transferred requests fetched_bytes read_bytes
(the last two from the anole daemon; "-" for mode a).
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
PG = "/usr/lib/postgresql/15/bin/postgres"
WORKLOADS = {
    "minbase": {"cmd": ["sh", "-c", "echo hello"], "ready": "hello"},
    "python3": {"cmd": ["python3", "-c", "print('hello')"], "ready": "hello"},
    "perl": {"cmd": ["perl", "-e", 'print "hello\\n"'], "ready": "hello"},
    "gcc": {"cmd": ["sh", "-c", "printf '%s' '" + HELLO_C + "' >/tmp/h.c && "
                    "gcc -o /tmp/h /tmp/h.c && /tmp/h"], "ready": "hello"},
    "nodejs": {"cmd": ["node", "-e", "console.log('hello')"], "ready": "hello"},
    "redis": {"cmd": ["redis-server", "--save", "", "--appendonly", "no"],
              "ready": "Ready to accept connections", "server": True},
    "nginx": {"cmd": ["nginx", "-g", "daemon off;"], "ready_url": "http://127.0.0.1:80/",
              "server": True},
    "postgres": {"cmd": [PG, "-D", "/var/lib/postgresql/15/main", "-c",
                         "config_file=/etc/postgresql/15/main/postgresql.conf", "-c",
                         "unix_socket_directories=/tmp", "-c", "listen_addresses=", "-c",
                         "ssl=off", "-c", "external_pid_file="],
                 "user": "postgres", "ready": "database system is ready to accept connections",
                 "server": True},
}
TIMEOUT = 300


def log(msg):
    print("hellobench: " + msg, file=sys.stderr, flush=True)


def until_ready(argv, w, env=None):
    """Start argv; return (ms to ready, exit status, output tail)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    lines = queue.Queue()
    tail = []

    def reader():
        for raw in p.stdout:
            lines.put((time.monotonic(), raw.decode(errors="replace")))
        lines.put((time.monotonic(), None))

    threading.Thread(target=reader, daemon=True).start()
    ready_at = None
    eof = False
    while ready_at is None and time.monotonic() - t0 < TIMEOUT:
        try:
            t, line = lines.get(timeout=0.005 if "ready_url" in w else 1)
        except queue.Empty:
            t, line = None, ""
        if line is None:
            eof = True
            break
        if line:
            tail = (tail + [line.rstrip()])[-20:]
            if "ready" in w and w["ready"] in line:
                ready_at = t
        if "ready_url" in w and ready_at is None:
            try:
                with urllib.request.urlopen(w["ready_url"], timeout=1) as r:
                    if r.status == 200:
                        ready_at = time.monotonic()
            except OSError:
                pass
    if os.environ.get("HB_TRACE"):  # wall-clock start and ready, to line up with logs
        log("TRACE start %.3f ready %.3f" % (time.time() - (time.monotonic() - t0),
                                             time.time() - (time.monotonic() - (ready_at or t0))))
    if ready_at is not None and w.get("server"):
        p.send_signal(signal.SIGTERM)
    try:
        status = p.wait(timeout=30 if ready_at is not None or eof else 1)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)  # anole run: a second signal kills
        try:
            status = p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            status = p.wait()
    # drain what is left, for the tail
    while True:
        try:
            _, line = lines.get(timeout=1)
        except queue.Empty:
            break
        if line is None:
            break
        tail = (tail + [line.rstrip()])[-20:]
    ms = None if ready_at is None else (ready_at - t0) * 1000.0
    return ms, status, "\n".join(tail)


def proxy_stats(registry):
    with urllib.request.urlopen("http://%s/_bench/stats" % registry, timeout=10) as r:
        return json.load(r)


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def anole_env(work):
    env = dict(os.environ)
    env["ANOLE_RUNTIME_DIR"] = os.path.join(work, "rt")
    env["ANOLE_CACHE_DIR"] = os.path.join(work, "cache")
    return env


def wait_daemon_gone(work):
    pid = os.path.join(work, "rt", "daemon.pid")
    for _ in range(200):
        if not os.path.exists(pid):
            return
        time.sleep(0.05)
    log("the daemon in %s did not quit" % work)


def metrics(work):
    out = {}
    try:
        with open(os.path.join(work, "rt", "metrics.prom")) as f:
            for line in f:
                if not line.startswith("#") and " " in line:
                    k, v = line.split()
                    out[k] = float(v) if "." in v else int(v)
    except OSError:
        pass
    return out


def anole_argv(anole, ref, w, extra):
    # the host's network, as the classic runc run has: servers are probed
    # from the host (ready_url)
    argv = [anole, "run", "-q", "--net=host"] + extra
    if "user" in w:
        argv += ["-u", w["user"]]
    return argv + [ref, "--"] + w["cmd"]


def run_classic(registry, name, w, work, cid):
    """skopeo copy + umoci unpack + runc run, timed as one."""
    layout, bundle = os.path.join(work, "layout"), os.path.join(work, "bundle")
    script = os.path.join(work, "classic.sh")
    with open(script, "w") as f:
        f.write("""set -e
skopeo copy -q --src-tls-verify=false docker://%(reg)s/hb/%(name)s:oci oci:%(layout)s:img
umoci unpack --image %(layout)s:img %(bundle)s >/dev/null
python3 - %(bundle)s %(user)s <<'EOF'
import json, sys
b, user = sys.argv[1], sys.argv[2]
p = b + "/config.json"
c = json.load(open(p))
c["process"]["args"] = json.load(open(b + "/../args.json"))
c["process"]["terminal"] = False
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]  # as anole run (docker's set less NET_RAW)
c["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
if user != "-":
    import os
    for line in open(b + "/rootfs/etc/passwd"):
        f = line.split(":")
        if f[0] == user:
            c["process"]["user"] = {"uid": int(f[2]), "gid": int(f[3])}
json.dump(c, open(p, "w"))
EOF
exec runc run -b %(bundle)s %(cid)s
""" % {"reg": registry, "name": name, "layout": layout, "bundle": bundle, "cid": cid,
       "user": w.get("user", "-")})
    with open(os.path.join(work, "args.json"), "w") as f:
        json.dump(w["cmd"], f)
    r = until_ready(["sh", script], w)
    subprocess.run(["runc", "delete", "-f", cid], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return r


def containerd_up(anole, work):
    """A containerd and `anole snapshotter` of WORK's own; their Popens."""
    sock, snap = os.path.join(work, "containerd.sock"), os.path.join(work, "snap.sock")
    proxy = subprocess.run([anole, "snapshotter", "--print-config", "--socket", snap],
                           check=True, capture_output=True, text=True).stdout
    # as tests/lib/containerd: nothing of the host's containerd is touched
    cfg = """version = 2
root = "%(w)s/root"
state = "%(w)s/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "%(s)s"
[ttrpc]
  address = "%(s)s.ttrpc"
[debug]
  address = "%(w)s/debug.sock"
""" % {"w": work, "s": sock}
    cfg += "".join(l + "\n" for l in proxy.splitlines() if not l.startswith("version"))
    with open(os.path.join(work, "containerd.toml"), "w") as f:
        f.write(cfg)
    logf = open(os.path.join(work, "services.log"), "ab")
    procs = [subprocess.Popen([anole, "snapshotter", "--socket", snap, "--root",
                               os.path.join(work, "snaproot")], stdout=logf, stderr=logf,
                              env=anole_env(work)),
             subprocess.Popen(["containerd", "--config", os.path.join(work, "containerd.toml")],
                              stdout=logf, stderr=logf)]
    for _ in range(300):
        r = subprocess.run(["ctr", "--address", sock, "plugins", "ls"], capture_output=True,
                           text=True, check=False)
        if any(l.split()[:2] == ["io.containerd.snapshotter.v1", "anole"] and l.split()[-1] == "ok"
               for l in r.stdout.splitlines()):
            return procs
        time.sleep(0.1)
    raise SystemExit("hellobench: containerd did not load the anole snapshotter (see %s)" %
                     os.path.join(work, "services.log"))


def containerd_down(procs, work):
    for p in reversed(procs):
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    # the snapshotter leaves its lazy mounts for a restart to find: gone
    # with the run, deepest first, and the anole daemon it started with them
    with open("/proc/self/mountinfo") as f:
        mounts = [l.split()[4] for l in f if l.split()[4].startswith(work + "/")]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)


def daemon_kill(work):
    """What is left of the anole daemon the snapshotter started."""
    for name in ("keeper", "holder", "daemon"):
        try:
            with open(os.path.join(work, "rt", name + ".pid")) as f:
                os.kill(int(f.read().split()[0]), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def run_containerd(anole, registry, name, w, work):
    """anole ctr-pull + ctr run --snapshotter anole, timed as one."""
    sock = os.path.join(work, "containerd.sock")
    ref = "%s/hb/%s:anole" % (registry, name)
    cmd = w["cmd"]
    if "user" in w:  # ctr 1.6 has no --user; util-linux is in every image
        cmd = ["setpriv", "--reuid=" + w["user"], "--regid=" + w["user"], "--init-groups"] + cmd
    script = os.path.join(work, "ctr.sh")
    with open(script, "w") as f:
        f.write('set -e\n"$1" ctr-pull --address "$2" "$3" >/dev/null\n'
                'a=$1 s=$2 r=$3; shift 3\n'
                'exec ctr --address "$s" run --rm --net-host --snapshotter anole "$r" hb-d "$@"\n')
    procs = containerd_up(anole, work)
    try:
        r = until_ready(["sh", script, anole, sock, ref] + cmd, w)
        subprocess.run(["ctr", "--address", sock, "task", "kill", "-s", "KILL", "hb-d"],
                       capture_output=True, check=False)
        subprocess.run(["ctr", "--address", sock, "container", "rm", "hb-d"],
                       capture_output=True, check=False)
        return r
    finally:
        containerd_down(procs, work)


def one_run(anole, registry, name, mode, work):
    w = WORKLOADS[name]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    drop_caches()
    before = proxy_stats(registry)
    fetched = read = "-"
    waits = None
    if mode == "a":
        ms, status, tail = run_classic(registry, name, w, work, "hb-%d" % os.getpid())
    elif mode == "d":
        ms, status, tail = run_containerd(anole, registry, name, w, work)
        # the daemon outlives the snapshotter (it serves mounts a restarted
        # one finds again); its counters reach metrics.prom every 2 s
        time.sleep(2.5)
        m = metrics(work)
        daemon_kill(work)
        fetched = m.get("anole_fetched_bytes_total", "-")
        read = m.get("anole_read_bytes_total", "-")
    else:
        ref = "docker://%s/hb/%s:anole" % (registry, name)
        extra = ["--prefetch=none"] if mode == "b" else []
        ms, status, tail = until_ready(anole_argv(anole, ref, w, extra), w, anole_env(work))
        wait_daemon_gone(work)
        m = metrics(work)
        fetched = m.get("anole_fetched_bytes_total", "-")
        read = m.get("anole_read_bytes_total", "-")
        waits = (m.get("anole_read_waits_total", 0), m.get("anole_read_wait_seconds_total", 0))
    after = proxy_stats(registry)
    ok_status = (0, 143) if w.get("server") else (0,)
    if ms is None or status not in ok_status:
        log("%s (%s): not ready or failed (status %s):\n%s" % (name, mode, status, tail))
        ms = None
    if os.environ.get("HB_LOGDIR") and mode != "a":  # keep the daemon's log
        shutil.copy(os.path.join(work, "rt", "daemon.log"),
                    os.path.join(os.environ["HB_LOGDIR"], "%s-%s-%d.log" % (name, mode, time.time())))
    shutil.rmtree(work, ignore_errors=True)
    # the stats request itself opened one connection
    conns = after.get("connections", 1) - before.get("connections", 0) - 1
    return ms, after["bytes"] - before["bytes"], after["requests"] - before["requests"], \
        fetched, read, waits, conns


def cmd_record(anole, registry, work, names):
    for name in names:
        w = WORKLOADS[name]
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        ref = "docker://%s/hb/%s:anole" % (registry, name)
        argv = [anole, "prefetch", "record", "-q", "--net=host"]
        if "user" in w:
            argv += ["-u", w["user"]]
        argv += [ref, "--"] + w["cmd"]
        ms, status, tail = until_ready(argv, w, anole_env(work))
        wait_daemon_gone(work)
        if ms is None or "recorded" not in tail:
            raise SystemExit("hellobench: recording %s failed (status %s):\n%s" %
                             (name, status, tail))
        log("%s: %s" % (name, [l for l in tail.splitlines() if "recorded" in l][-1]))
        shutil.rmtree(work, ignore_errors=True)


def cmd_run(anole, registry, work, reps, modes, names):
    print("image\tmode\trep\tready_ms\tbytes\trequests\tfetched\tread", flush=True)
    for name in names:
        for rep in range(1, reps + 1):
            for mode in modes:
                ms, nbytes, nreq, fetched, read, waits, conns = one_run(anole, registry, name,
                                                                        mode, work)
                row = [name, mode, rep, "-" if ms is None else "%.0f" % ms, nbytes, nreq,
                       fetched, read]
                print("\t".join(str(x) for x in row), flush=True)
                log("%-8s %s #%d: %s ms, %.1f MiB in %d requests on %d connections%s" %
                    (name, mode, rep, row[3], nbytes / 1048576.0, nreq, conns,
                     "; %d reads waited %.2f s in all" % waits if waits else ""))


def main():
    a = sys.argv[1:]
    if a[:1] == ["list"]:
        print(" ".join(WORKLOADS))
    elif a[:1] == ["record"] and len(a) >= 5:
        cmd_record(a[1], a[2], a[3], a[4:])
    elif a[:1] == ["run"] and len(a) >= 7:
        cmd_run(a[1], a[2], a[3], int(a[4]), a[5].split(","), a[6:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
