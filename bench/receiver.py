"""The benches' HTTP receiver: fast enough not to be what is measured.

    python bench/receiver.py [--hosts 10] [--delay 0.05]

Listens on one port of 127.0.0.1 .. 127.0.0.<hosts> (all loopback on Linux) and prints that
port on its first line. HTTP/1.1 keep-alive, one thread per connection, TCP_NODELAY, and each
answer written in one send: http.server's default (headers and body in two writes) stalls a
keep-alive client about 40 ms per request (Nagle plus delayed ACK). Every request is recorded
(arrival time, host, path with query, Idempotency-Key); `delay` seconds pass before each answer.

It runs in a process of its own, so that it never shares a GIL with a bench's client.
The bench reads and clears the record at GET /_bench/arrivals (tests/receiver.py is the tests' one).
"""
import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTROL = "/_bench/"


class Record:
    """What arrived, and the most requests in flight per host at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clear()

    def clear(self):
        self.arrivals = []  # [time.time(), host, path, idempotency key]
        self.in_flight = {}
        self.max_in_flight = {}

    def enter(self, arrival):
        host = arrival[1]
        with self.lock:
            self.arrivals.append(arrival)
            now = self.in_flight[host] = self.in_flight.get(host, 0) + 1
            self.max_in_flight[host] = max(self.max_in_flight.get(host, 0), now)

    def leave(self, host):
        with self.lock:
            self.in_flight[host] -= 1

    def take(self):
        with self.lock:
            taken = {"arrivals": self.arrivals, "max_in_flight": self.max_in_flight}
            self.arrivals, self.max_in_flight = [], {}
            return taken


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):
        arrived = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith(CONTROL):
            return self.answer(json.dumps(self.server.record.take()).encode(), "application/json")
        host = self.server.server_address[0]
        self.server.record.enter([arrived, host, self.path, self.headers.get("Idempotency-Key")])
        try:
            if self.server.delay:
                time.sleep(self.server.delay)
        finally:
            self.server.record.leave(host)
        self.answer(b"OK")

    do_POST = do_PUT = do_GET

    def answer(self, body, content_type="text/plain"):
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        try:
            self.wfile.write(head.encode() + body)  # one send
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def serve(hosts=1, delay=0.0, port=0):
    """Servers on 127.0.0.1 .. 127.0.0.<hosts>, all on one port, sharing one Record; the port."""
    record = Record()
    for _ in range(20):  # another program may hold the port on one of the addresses: pick again
        servers = []
        try:
            for k in range(1, hosts + 1):
                server = ThreadingHTTPServer((f"127.0.0.{k}", port if k == 1 else servers[0].server_address[1]),
                                             Handler)
                server.daemon_threads = True
                server.record, server.delay = record, delay
                servers.append(server)
        except OSError:
            for server in servers:
                server.server_close()
            continue
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return servers[0].server_address[1]
    raise RuntimeError("no port free on every host")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    print(serve(args.hosts, args.delay), flush=True)
    try:
        sys.stdin.read()  # until the bench closes our stdin (or dies)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
