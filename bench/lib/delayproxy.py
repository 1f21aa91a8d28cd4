#!/usr/bin/env python3
"""A read-only registry front that adds round-trip latency and counts bytes.

    delayproxy.py UPSTREAM_UNIX_SOCKET DELAY_MS    (prints its port)

Listens on 127.0.0.1 (of the network namespace it runs in). Each GET or
HEAD waits DELAY_MS before it is passed to the registry, which listens on
a unix socket, so only the client side of the traffic crosses the shaped
loopback. The kernel here has no netem; one delay per request stands in
for the round trip a request costs on a real network, and one more per
new connection for the TCP handshake's (keep-alive saves it; TLS, which
would cost another, is not modelled).

GET /_bench/stats answers {"bytes": N, "requests": N, "connections": N}:
response bytes (status line, headers and body) sent since the start.
"""
import http.client
import http.server
import json
import os
import socket
import sys
import threading
import time

upstream, delay = sys.argv[1], int(sys.argv[2]) / 1000.0
lock = threading.Lock()
# DELAYPROXY_LOG=FILE: one line per request (start and end times, status,
# bytes, path, range), to see where a start-up spends its time
reqlog = open(os.environ["DELAYPROXY_LOG"], "a", buffering=1) if os.environ.get("DELAYPROXY_LOG") else None
stats = {"bytes": 0, "requests": 0, "connections": 0}
PASS = ("content-type", "content-length", "docker-content-digest", "www-authenticate",
        "content-range", "location", "accept-ranges", "etag")


class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(upstream)


class CountingWriter:
    def __init__(self, w):
        self.w = w

    def write(self, b):
        with lock:
            stats["bytes"] += len(b)
        return self.w.write(b)

    def __getattr__(self, name):
        return getattr(self.w, name)


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        with lock:
            stats["connections"] += 1
        if delay:
            time.sleep(delay)  # the handshake's round trip
        # as Go's net/http (docker-registry) does: without it, Nagle and
        # the client's delayed ACKs hold a kept-alive response's last bytes
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()
        self.wfile = CountingWriter(self.wfile)

    def do_HEAD(self):
        self.forward(head=True)

    def do_GET(self):
        if self.path == "/_bench/stats":
            with lock:
                body = json.dumps(stats).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.w_raw(body)
            return
        self.forward(head=False)

    def w_raw(self, body):
        self.wfile.w.write(body)  # the stats are not counted in themselves

    def forward(self, head):
        t0 = time.time()
        try:
            self.forward_timed(head)
        finally:
            if reqlog:
                with lock:
                    reqlog.write("%.3f %.3f %s %s %s\n" % (t0, time.time(), self.path[-20:],
                                 self.headers.get("Range", "-"), getattr(self, "_status", "-")))

    def forward_timed(self, head):
        with lock:
            stats["requests"] += 1
        if delay:
            time.sleep(delay)
        conn = UnixConnection("registry", timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_accept_encoding=True)
            for k in ("Authorization", "Accept", "Range"):
                v = self.headers.get_all(k)
                if v:
                    conn.putheader(k, ", ".join(v))
            conn.endheaders()
            resp = conn.getresponse()
            self._status = resp.status
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() in PASS:
                    self.send_header(k, v)
            self.end_headers()
            if not head:
                while True:
                    chunk = resp.read(65536)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
        finally:
            conn.close()

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that went away mid-body (a run that ended, a cancelled
        # prefetch) is normal here
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


server = Server(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
