"""A failed postback explained in plain words on the first line of the error (what lists and
the dashboard show), with the exception as raised one click away: real refused ports, a
real slow receiver, a real TLS server with a self-signed certificate."""
import http.server
import socket
import ssl
import threading
import time

import pytest

from exporter.export_types import Batch
from exporter.delivery.queue import free_port
from exporter_postback import PostbackType
from exporter_postback.errors import plain_error

from ..receiver import Reply
from .ftp_servers import self_signed_certificate

PAIRS = [("first_name", "Jane"), ("email", "jane@example.com")]


def send(url, **settings):
    batch = Batch(columns=[n for n, _ in PAIRS], rows=[PAIRS], profile_name="Call center partials",
                  idempotency_key="17", allow_private_targets=True)
    return PostbackType({"url": url, "method": "GET", **settings}).send(batch)


def test_a_refused_port_says_connection_refused_by_host_and_port():
    port = free_port()
    outcome = send(f"http://127.0.0.1:{port}/partials.php")
    words, detail = outcome.error.split("\n", 1)
    assert words == f"connection refused by 127.0.0.1:{port}"
    assert detail.startswith("ConnectionError: ") and "Connection refused" in detail
    assert "Jane" not in outcome.error and "partials.php?..." in detail  # the query stays in the request


def test_a_slow_receiver_says_timed_out_after_the_timeout(receiver):
    receiver.script = [Reply(200, "late", delay=2.5)]
    started = time.monotonic()
    outcome = send(receiver.url + "/slow", timeout=1)
    assert time.monotonic() - started < 2.4
    host = receiver.url.split("//")[1]
    assert outcome.error.splitlines()[0] == f"timed out after 1 s waiting for {host} to answer"
    assert outcome.error.splitlines()[1].startswith("ReadTimeout: ")


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on loopback with a self-signed certificate: not trusted by default."""
    cert, key = self_signed_certificate(str(tmp_path))
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_a_self_signed_certificate_says_tls_certificate_not_trusted(tls_server):
    outcome = send(tls_server + "/partials.php")
    words, detail = outcome.error.split("\n", 1)
    assert words.startswith("TLS certificate of 127.0.0.1 not trusted")
    assert "self-signed" in words or "self signed" in words
    assert detail.startswith("SSLError: ") and "CERTIFICATE_VERIFY_FAILED" in detail


def test_a_host_that_does_not_resolve_says_so():
    outcome = send("http://no-such-host.invalid/partials.php")
    assert outcome.error.splitlines()[0] == "could not resolve host no-such-host.invalid"


def test_a_server_that_hangs_up_says_it_closed_the_connection():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def hang_up():
        for _ in range(2):  # requests may try twice on a dropped keep-alive
            connection, _ = listener.accept()
            connection.recv(65536)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        outcome = send(f"http://127.0.0.1:{port}/p")
    finally:
        listener.close()
    assert outcome.error.splitlines()[0] == f"127.0.0.1:{port} closed the connection without answering"


def test_plain_error_never_shows_the_query():
    import requests

    url = "http://127.0.0.1:1/p?email=jane@example.com"
    try:
        requests.get(url, timeout=1)
    except requests.RequestException as exc:
        assert "jane" not in plain_error(exc, url, 1)
