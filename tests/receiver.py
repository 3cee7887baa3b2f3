"""A real HTTP receiver on loopback for tests: records every request, answers as scripted."""
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes
    raw_request_line: str
    # Every header line in the order received, repeats kept (values as http.server decodes them: latin-1).
    header_items: list = field(default_factory=list)
    received_at: float = field(default_factory=time.time)
    reply: "Reply | None" = None  # how it was answered


@dataclass
class Reply:
    status: int = 200
    body: str = "OK"
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """Answers each request with the next scripted Reply (the default once the script runs out)."""

    def __init__(self, port=0, host="127.0.0.1"):
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        # A partner that decides from the request (e.g. a duplicate email): Received -> Reply,
        # used when the script is empty.
        self.answer = None
        self._lock = threading.Lock()
        # Requests being answered right now, overall and by Host, and the most ever at once.
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_host: dict[str, int] = {}
        self.max_in_flight_by_host: dict[str, int] = {}
        receiver = self

        self._connections = set()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else a keep-alive client stalls ~40 ms per request

            def setup(self):
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self):
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with receiver._lock:
                    receiver.requests.append(Received(self.command, self.path, dict(self.headers), body,
                                                      self.requestline, list(self.headers.items())))
                    if receiver.script:
                        reply = receiver.script.pop(0)
                    elif receiver.answer is not None:
                        reply = receiver.answer(receiver.requests[-1])
                    else:
                        reply = receiver.default
                    receiver.requests[-1].reply = reply
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                receiver._enter(host)
                try:
                    if reply.delay:
                        time.sleep(reply.delay)
                finally:
                    receiver._leave(host)
                data = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = _handle

        self.host = host  # any of 127.0.0.0/8 is loopback: several hosts on one machine
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = None

    def _enter(self, host):
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            now = self.in_flight_by_host[host] = self.in_flight_by_host.get(host, 0) + 1
            self.max_in_flight_by_host[host] = max(self.max_in_flight_by_host.get(host, 0), now)

    def _leave(self, host):
        with self._lock:
            self.in_flight -= 1
            self.in_flight_by_host[host] -= 1

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Down, as a partner's server goes down: its open keep-alive connections are cut too."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait_for(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.requests) >= count:
                return self.requests
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


# --- answers as each kind of partner gives them -------------------------------------------------

def tune(success=True, err_msg="", conversion_id="88213"):
    """An affiliate network's text answer, TUNE-style: always 200, the verdict inside."""
    if success:
        return Reply(200, f"success=true; conversion_id={conversion_id}")
    return Reply(200, f"success=false; err_msg={err_msg}")


def json_lead(status="accepted", lead_id=88213, reason=""):
    """A lead-distribution API's JSON answer (LeadConduit-like): 200 either way."""
    body = {"status": status, **({"lead_id": lead_id} if status == "accepted" else {"reason": reason})}
    return Reply(200, json.dumps(body), {"Content-Type": "application/json"})


def xml_lead(status="ok", lead_id="77", error=""):
    """A dialer's XML answer."""
    inner = f'<lead id="{lead_id}"/>' if status == "ok" else f"<error>{error}</error>"
    return Reply(200, f'<?xml version="1.0"?><response><status>{status}</status>{inner}</response>',
                 {"Content-Type": "application/xml"})
