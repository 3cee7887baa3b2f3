"""The benches' HTTP receiver: fast enough not to be what is measured.

    python bench/receiver.py [--hosts 10] [--delay 0.05]

Listens on one port of 127.0.0.1 .. 127.0.0.<hosts> (all loopback on Linux) and prints that
port on its first line. HTTP/1.1 keep-alive on one asyncio loop (a thread per connection and
http.server's header parsing cost a request several times the CPU, and on a 2-core machine
that CPU is taken from what is measured), TCP_NODELAY, each answer written in one send:
http.server's default (headers and body in two writes) stalls a keep-alive client about 40 ms
per request (Nagle plus delayed ACK). Every request is recorded (arrival time, host, path with
query, Idempotency-Key); `delay` seconds pass before each answer, without holding the others.

It runs in a process of its own, so that it never shares a GIL with a bench's client.
The bench reads and clears the record at GET /_bench/arrivals (tests/receiver.py is the tests' one).
"""
import argparse
import asyncio
import json
import socket
import sys
import threading
import time

CONTROL = b"/_bench/"


class Record:
    """What arrived, and the most requests in flight per host at once (one loop: no locks)."""

    def __init__(self):
        self.arrivals = []  # [time.time(), host, path, idempotency key]
        self.in_flight = {}
        self.max_in_flight = {}

    def enter(self, arrival):
        host = arrival[1]
        self.arrivals.append(arrival)
        now = self.in_flight[host] = self.in_flight.get(host, 0) + 1
        if now > self.max_in_flight.get(host, 0):
            self.max_in_flight[host] = now

    def leave(self, host):
        self.in_flight[host] -= 1

    def take(self):
        taken = {"arrivals": self.arrivals, "max_in_flight": self.max_in_flight}
        self.arrivals, self.max_in_flight = [], {}
        return taken


def answer(body, content_type=b"text/plain"):
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (content_type, len(body), body)


OK = answer(b"OK")


class Connection(asyncio.Protocol):
    """One keep-alive connection: requests parsed as they come, answered in order."""

    def __init__(self, record, delay, loop):
        self.record, self.delay, self.loop = record, delay, loop
        self.buffer = b""
        self.transport = self.host = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = sock.getsockname()[0]

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            self.buffer = self.buffer[end + 4 + length:]
            self.handle(time.time(), head[0].split(" ")[1], headers)

    def handle(self, arrived, path, headers):
        if path.encode().startswith(CONTROL):
            self.transport.write(answer(json.dumps(self.record.take()).encode(), b"application/json"))
            return
        self.record.enter([arrived, self.host, path, headers.get("idempotency-key")])
        if self.delay:
            self.loop.call_later(self.delay, self.respond)
        else:
            self.respond()

    def respond(self):
        self.record.leave(self.host)
        if not self.transport.is_closing():
            self.transport.write(OK)


def serve(hosts=1, delay=0.0, port=0):
    """Servers on 127.0.0.1 .. 127.0.0.<hosts>, all on one port, on one loop in a thread of its
    own, sharing one Record; the port."""
    loop = asyncio.new_event_loop()
    record = Record()
    started = {}

    async def listen():
        for _ in range(20):  # another program may hold the port on one of the addresses: pick again
            servers = []
            try:
                for k in range(1, hosts + 1):
                    chosen = port if k == 1 else servers[0].sockets[0].getsockname()[1]
                    servers.append(await loop.create_server(lambda: Connection(record, delay, loop),
                                                            f"127.0.0.{k}", chosen, backlog=1024))
            except OSError:
                for server in servers:
                    server.close()
                continue
            return servers[0].sockets[0].getsockname()[1]
        raise RuntimeError("no port free on every host")

    def run():
        asyncio.set_event_loop(loop)
        try:
            started["port"] = loop.run_until_complete(listen())
        except Exception as exc:
            started["error"] = exc
        ready.set()
        loop.run_forever()

    ready = threading.Event()
    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    if "error" in started:
        raise started["error"]
    return started["port"]


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
