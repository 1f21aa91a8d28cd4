#!/usr/bin/env python3
"""Idle connections for bench/smc's memory measurement.

smc-idle.py server PORTFILE N       accepts N connections, answers one byte
                                    on each, keeps them open
smc-idle.py client PORTFILE N PRE GO READY
                                    touches PRE, waits for GO, opens N
                                    connections (one byte each way, so both
                                    ends finished their handshake), touches
                                    READY, keeps them open

Both keep their connections until killed (at most 20 minutes). Blocking
send/recv only. The one byte each way is what makes a connection's
handshake run (its first operation) and touches its rings' first pages.
"""
import os
import signal
import socket
import sys
import time


def wait_path(path):
    while not os.path.exists(path):
        time.sleep(0.05)


def touch(path):
    open(path, "w").close()


def server(portfile, n):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    keep = []
    for _ in range(n):
        c, _addr = ls.accept()
        if c.recv(1) != b"x":
            sys.exit("bad byte")
        c.send(b"y")
        keep.append(c)
    signal.pause()


def client(portfile, n, pre, go, ready):
    port = int(open(portfile).read())
    touch(pre)
    wait_path(go)
    keep = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.send(b"x")
        if s.recv(1) != b"y":
            sys.exit("bad byte")
        keep.append(s)
    touch(ready)
    signal.pause()


def main():
    signal.alarm(1200)
    a = sys.argv
    if a[1] == "server":
        server(a[2], int(a[3]))
    elif a[1] == "client":
        client(a[2], int(a[3]), a[4], a[5], a[6])
    else:
        sys.exit(2)


main()
