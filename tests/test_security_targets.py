"""Export targets (issue 9, points 1-3): the URL is read as the sender reads it, the address
connected to is the one checked (pinned: DNS rebinding), and every private range is refused,
already when a profile is saved or imported."""
import datetime
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from exporter_ftp import FtpType
from exporter_postback import PostbackType

from exporter.profiles import as_code as profiles_io
from exporter import security
from exporter.export_types import Batch
from exporter.extensions import db
from exporter.models import Profile

from .factories import make_profile
from .plugins.ftp_servers import FtpServer, SftpServer

PUBLIC = "93.184.215.14"  # a public address; nothing answers it from the test machine on a test port
PAIRS = [("first_name", "Jane")]


def postback(url, allow_private=False, **settings):
    batch = Batch(columns=["first_name"], rows=[PAIRS], profile_name="p", idempotency_key="1",
                  allow_private_targets=allow_private)
    return PostbackType({"url": url, "timeout": 2, **settings}).send(batch)


def file_batch(allow_private=False):
    return Batch(columns=["first_name"], rows=iter([PAIRS]), profile_name="p", idempotency_key="1", route_id=1,
                 file_date=datetime.date(2026, 11, 27), allow_private_targets=allow_private)


@pytest.fixture
def rebinding_dns(monkeypatch):
    """A resolver we control for names under .rebind.test: the first answer is public, every later
    one is 127.0.0.1 (a DNS rebinding attack). DNS itself is not a part we run, so patching
    socket.getaddrinfo is the honest stand-in; every connection still goes over real sockets."""
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".rebind.test"):
            asked.append(host)
            address = PUBLIC if len(asked) == 1 else "127.0.0.1"
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture
def names_dns(monkeypatch):
    """A resolver we control: every name under .partner.test is 127.0.0.1."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".partner.test"):
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# --- 1. the backslash ---------------------------------------------------------------------------

def test_a_backslash_url_never_reaches_the_loopback_receiver(receiver):
    url = f"http://127.0.0.1:{receiver.port}\\@8.8.8.8/"
    outcome = postback(url)
    assert not outcome.ok and "backslash" in outcome.error
    assert receiver.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:5077\\@8.8.8.8/", "http://8.8.8.8 @127.0.0.1/",
                                 "http://example.com\t.evil/", "http://[::1\\]/"])
def test_urls_that_parsers_read_differently_are_refused_at_save(url):
    from werkzeug.datastructures import MultiDict
    from exporter_postback import PostbackSettings

    form = PostbackSettings(formdata=MultiDict({"url": url, "method": "GET"}))
    assert not form.validate() and form.errors["url"]


@pytest.mark.parametrize("url, host, port", [
    ("http://partner.test?@8.8.8.8/", "partner.test", 80), ("http://partner.test#@8.8.8.8/", "partner.test", 80),
    ("https://u:p@partner.test:8443/p?next=http://8.8.8.8/", "partner.test", 8443),
    ("http://8.8.8.8:80@partner.test/p", "partner.test", 80)])
def test_the_target_is_the_host_every_parser_connects_to_whatever_the_path_and_query_say(url, host, port):
    """parse_target reads the scheme and authority alone (and keeps what it read): what follows
    the first / ? or # never changes where a send goes."""
    for _ in range(2):  # parsed, then remembered
        target = security.parse_target(url)
        assert (target.host, target.port) == (host, port)


# --- 2. DNS rebinding ---------------------------------------------------------------------------

def test_postback_connects_to_the_address_it_checked(receiver, rebinding_dns):
    outcome = postback(f"http://api.rebind.test:{receiver.port}/p")
    assert not outcome.ok
    assert receiver.requests == []
    assert rebinding_dns == ["api.rebind.test"]  # asked once; the connection went to that answer


def test_pinned_https_keeps_host_sni_and_the_certificate_check_on_the_name(tmp_path, names_dns):
    server = TlsServer(tmp_path, "files.partner.test")
    try:
        with security.pinned_session(allow_private=True) as session:
            response = session.get(f"https://files.partner.test:{server.port}/x", verify=server.cert, timeout=5)
            assert response.status_code == 200
            assert server.seen == [("files.partner.test", f"files.partner.test:{server.port}")]
            with pytest.raises(Exception, match="certificate|hostname"):  # the name, not the address, is checked
                session.get(f"https://other.partner.test:{server.port}/x", verify=server.cert, timeout=5)
    finally:
        server.stop()


def test_ftp_connects_to_the_address_it_checked(tmp_path, rebinding_dns):
    server = FtpServer(tmp_path).start()
    try:
        outcome = FtpType(server.settings(host="files.rebind.test")).send(file_batch())
        assert not outcome.ok
        assert server.files() == {}
        assert rebinding_dns == ["files.rebind.test"]
    finally:
        server.stop()


def test_sftp_connects_to_the_address_it_checked(tmp_path, rebinding_dns):
    server = SftpServer(tmp_path).start()
    try:
        outcome = FtpType(server.settings(host="files.rebind.test")).send(file_batch())
        assert not outcome.ok
        assert server.files() == {}
        assert rebinding_dns == ["files.rebind.test"]
    finally:
        server.stop()


def test_ftp_to_a_name_still_uploads_when_private_targets_are_allowed(tmp_path, names_dns):
    server = FtpServer(tmp_path).start()
    try:
        outcome = FtpType(server.settings(host="files.partner.test")).send(file_batch(allow_private=True))
        assert outcome.ok, outcome.error
        assert list(server.files()) == ["p_1_20261127.csv"]
    finally:
        server.stop()


# --- 3. more private ranges, refused at save and import --------------------------------------

@pytest.mark.parametrize("address", [
    "64:ff9b::7f00:1", "64:ff9b::a00:1",  # NAT64 of 127.0.0.1, 10.0.0.1
    "2002:7f00:1::1", "2002:c0a8:1::1",  # 6to4 of 127.0.0.1, 192.168.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1",  # multicast
    "240.0.0.1", "255.255.255.255", "0.0.0.0", "100.64.0.1", "::", "::ffff:10.0.0.1"])
def test_private_and_reserved_ranges_are_refused(address):
    assert security.address_problem(address)
    with pytest.raises(security.TargetRefused, match="EXPORTER_ALLOW_PRIVATE_TARGETS=true"):
        security.resolve_target(address, 80, allow_private=False)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_pass(address):
    assert security.address_problem(address) is None


def test_a_private_target_is_refused_when_the_profile_is_saved(app, logged_in):
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    profile = make_profile(url="https://example.com/p")
    response = logged_in.post(f"/profiles/{profile.id}", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0", "active": "y",
        "settings-url": "http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "settings-method": "GET"})
    assert response.status_code == 422
    assert "EXPORTER_ALLOW_PRIVATE_TARGETS=true" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Profile, profile.id).settings["url"] == "https://example.com/p"


def test_a_private_target_is_refused_when_profiles_are_imported(app):
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    data = {"version": 1, "profiles": [
        {"name": "Files", "export_type": "ftp", "settings": {"host": "10.0.0.5", "username": "u"}}]}
    with pytest.raises(profiles_io.ImportProblem, match="settings.host.*EXPORTER_ALLOW_PRIVATE_TARGETS=true"):
        profiles_io.import_all(data)
    app.config["ALLOW_PRIVATE_TARGETS"] = True
    assert profiles_io.import_all(data) == (1, 0)


# --- a TLS server for the pinning test --------------------------------------------------------

class TlsServer:
    """HTTPS on 127.0.0.1 with a certificate for one name; records (SNI, Host) of each request."""

    def __init__(self, folder, name):
        self.cert, key = certificate(folder, name)
        self.seen, sni = [], {}
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        context.sni_callback = lambda sock, server_name, ctx: sni.__setitem__("name", server_name)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.seen.append((sni.get("name"), self.headers.get("Host")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def certificate(folder, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path
