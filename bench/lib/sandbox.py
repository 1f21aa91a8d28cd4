#!/usr/bin/env python3
"""bench/sandbox's runs: time to first output and memory per sandbox.

    sandbox.py start WAY C ARGV...     C sandboxes at once, each ARGV; prints
                                       one line per sandbox: ms to its first
                                       byte of stdout (or "-" on failure)
    sandbox.py density WAY N ARGV...   N sandboxes of ARGV (a command that
                                       prints a line, then sleeps), all up at
                                       once; prints the PSS in KiB of each
                                       one's process tree, then stops them

WAY only labels errors. ARGV's first byte of stdout is the clock's end.
"""
import os
import signal
import subprocess
import sys
import threading
import time

TIMEOUT = 300  # a sandbox not up by then is stopped and counted failed


def first_byte(argv, out, i):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    watchdog = threading.Timer(TIMEOUT, lambda: stop([p]))
    watchdog.start()
    b = p.stdout.read(1)
    t = time.monotonic()
    watchdog.cancel()
    p.stdout.read()
    err = p.stderr.read().decode(errors="replace")
    st = p.wait()
    out[i] = (t - t0) * 1000.0 if b and st == 0 else None
    if out[i] is None:
        print("sandbox: run %d failed (status %d): %s" % (i, st, err.strip()[-300:]),
              file=sys.stderr)


def cmd_start(c, argv):
    out = [None] * c
    ts = [threading.Thread(target=first_byte, args=(argv, out, i)) for i in range(c)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for v in out:
        print("-" if v is None else "%.0f" % v)


def children(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def tree(pid):
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += children(p)
    return seen


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmd_density(n, argv):
    ps = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, start_new_session=True)
          for _ in range(n)]
    try:
        for i, p in enumerate(ps):
            if not p.stdout.readline():
                sys.exit("sandbox: sandbox %d of %d ended before it was up" % (i + 1, n))
        time.sleep(2)  # what starts after the first line (a guest's idle work)
        for p in ps:
            print(sum(pss_kib(q) for q in tree(p.pid)))
    finally:
        stop(ps)


def wait_all(ps, seconds):
    deadline = time.monotonic() + seconds
    while any(p.poll() is None for p in ps) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop(ps):
    """anole ends a sandbox on SIGTERM (a second one if its command
    ignores the first), undoing its mounts; SIGKILL is the last resort."""
    for second in (False, True):
        for p in ps:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        wait_all(ps, 60 if second else 3)
    for p in ps:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def main():
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "start":
        cmd_start(int(a[2]), a[3:])
    elif len(a) >= 4 and a[0] == "density":
        cmd_density(int(a[2]), a[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
