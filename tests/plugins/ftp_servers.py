"""Real file servers on loopback, each in a thread: FTP and FTPS (pyftpdlib) and SFTP (paramiko).

Each serves a temporary directory to one user. start() and stop() may be called again
on the same port, for "the server is down, then up" tests.
"""
import datetime
import errno
import logging
import os
import pathlib
import socket
import threading

import paramiko
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from .. import clock

USER, PASSWORD = "partner", "s3cret-pw"

# Quiet, and configured, so that pyftpdlib does not set up logging of its own.
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FileServer:
    protocol = ""

    def __init__(self, root, port=None):
        self.root, self.root_path = str(root), pathlib.Path(root)
        self.host, self.port = "127.0.0.1", port or free_port()
        self.user, self.password = USER, PASSWORD

    def settings(self, **overrides):
        """FTP profile settings that point at this server."""
        settings = {"protocol": self.protocol, "host": self.host, "port": self.port, "username": self.user,
                    "password": self.password, "directory": "/", "time_zone": "UTC", "send_at": "01:00"}
        settings.update(overrides)
        return settings

    def files(self, directory=""):
        """{name: bytes} of the files in a directory of the served tree."""
        folder = os.path.join(self.root, directory)
        return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
                if os.path.isfile(os.path.join(folder, name))}


# --- FTP and FTPS ---------------------------------------------------------------------------

class FullDiskFS(AbstractedFS):
    """A file system whose disk is full: every upload fails as it would on a full disk."""

    def open(self, filename, mode):
        if "w" in mode or "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().open(filename, mode)


class NoOverwriteFS(AbstractedFS):
    """A file system that refuses to rename over an existing file, as some servers do."""

    def rename(self, src, dst):
        if os.path.exists(dst):
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        return super().rename(src, dst)


class FtpServer(FileServer):
    """rename: "ok"; "refused" (the user may not rename, but may delete); "no_overwrite" (never
    over an existing file). on_received(path) runs in the server when an upload has arrived,
    before the client hears so."""
    protocol = "ftp"
    handler_base = FTPHandler

    def __init__(self, root, port=None, full_disk=False, rename="ok", on_received=None):
        super().__init__(root, port)
        self.full_disk, self.rename, self.on_received = full_disk, rename, on_received
        self.server = self.thread = None

    def handler(self):
        authorizer = DummyAuthorizer()
        perm = "elradmwMT" if self.rename == "refused" else "elradfmwMT"
        authorizer.add_user(self.user, self.password, self.root, perm=perm)
        fs = FullDiskFS if self.full_disk else NoOverwriteFS if self.rename == "no_overwrite" else AbstractedFS
        attrs = {"authorizer": authorizer, "banner": "test FTP server ready", "auth_failed_timeout": 0.1,
                 "abstracted_fs": fs}
        if self.on_received:
            attrs["on_file_received"] = lambda handler, path: self.on_received(path)
        return type("Handler", (self.handler_base,), attrs)

    def start(self):
        # An IO loop of its own: pyftpdlib's default one is shared by every server in the process.
        self.server = FTPServer((self.host, self.port), self.handler(), ioloop=IOLoop())
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(self.server, self.stopping), daemon=True)
        self.thread.start()
        return self

    @staticmethod
    def _serve(server, stopping):
        # pyftpdlib's loop is not thread-safe: run it in short turns and close it from here.
        while not stopping.is_set():
            server.ioloop.loop(timeout=0.02, blocking=False)
        server.close_all()

    def stop(self):
        if self.server is not None:
            self.stopping.set()
            self.thread.join(5)
            self.server = None


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1 made now, and its key, as PEM files; their paths."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # Valid now by the test run's clock and by the real one, which OpenSSL reads (tests/clock.py).
    now, real = datetime.datetime.now(datetime.timezone.utc), clock.real_now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, real) - datetime.timedelta(minutes=5))
            .not_valid_after(max(now, real) + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


class FtpsServer(FtpServer):
    """FTPS with explicit TLS, required on both the control and the data connection."""
    protocol = "ftps"
    handler_base = TLS_FTPHandler

    def __init__(self, root, cert_folder, port=None):
        super().__init__(root, port)
        self.certfile, self.keyfile = self_signed_certificate(cert_folder)

    def settings(self, **overrides):
        # The test's certificate is self-signed: the profile must say it accepts that.
        return super().settings(**{"verify_tls": False, **overrides})

    def handler(self):
        handler = super().handler()
        handler.certfile, handler.keyfile = self.certfile, self.keyfile
        handler.tls_control_required = handler.tls_data_required = True
        return handler


# --- SFTP -----------------------------------------------------------------------------------

class _Auth(paramiko.ServerInterface):
    def __init__(self, server):
        self.server = server

    def get_allowed_auths(self, username):
        return "password"

    def check_auth_password(self, username, password):
        ok = (username, password) == (self.server.user, self.server.password)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self):
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr):
        return paramiko.SFTP_OK


class _Folder(paramiko.SFTPServerInterface):
    """A directory tree served over SFTP; paths are confined to it ("/" is its top)."""

    def __init__(self, server, *args, root, rename="ok", **kwargs):
        super().__init__(server, *args, **kwargs)
        self.root, self.renames = root, rename

    def _real(self, path):
        path = os.path.normpath("/" + self.canonicalize(path)).lstrip("/")
        return os.path.join(self.root, path)

    def _call(self, fn, *args):
        try:
            result = fn(*args)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno)
        return paramiko.SFTP_OK if result is None else result

    def list_folder(self, path):
        real = self._real(path)

        def entries():
            out = []
            for name in sorted(os.listdir(real)):
                attr = paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(real, name)), name)
                out.append(attr)
            return out

        return self._call(entries)

    def stat(self, path):
        return self._call(lambda: paramiko.SFTPAttributes.from_stat(os.stat(self._real(path))))

    lstat = stat

    def open(self, path, flags, attr):
        def opened():
            fd = os.open(self._real(path), flags | getattr(os, "O_BINARY", 0), 0o644)
            mode = "wb" if flags & os.O_WRONLY else ("r+b" if flags & os.O_RDWR else "rb")
            if flags & os.O_APPEND:
                mode = mode.replace("w", "a")
            f = os.fdopen(fd, mode)
            handle = _Handle(flags)
            handle.filename, handle.readfile, handle.writefile = path, f, f
            return handle

        return self._call(opened)

    def remove(self, path):
        return self._call(os.remove, self._real(path))

    def rename(self, oldpath, newpath):
        if self.renames == "refused":
            return paramiko.SFTP_PERMISSION_DENIED
        if os.path.exists(self._real(newpath)):  # plain SFTP rename never replaces a file
            return paramiko.SFTP_FAILURE
        return self._call(os.rename, self._real(oldpath), self._real(newpath))

    def posix_rename(self, oldpath, newpath):
        if self.renames == "refused":
            return paramiko.SFTP_PERMISSION_DENIED
        if self.renames == "no_overwrite":  # a server without posix-rename@openssh.com
            return paramiko.SFTP_OP_UNSUPPORTED
        return self._call(os.replace, self._real(oldpath), self._real(newpath))

    def mkdir(self, path, attr):
        return self._call(os.mkdir, self._real(path))

    def rmdir(self, path):
        return self._call(os.rmdir, self._real(path))

    def chattr(self, path, attr):
        return paramiko.SFTP_OK

    def canonicalize(self, path):
        return os.path.normpath(path if path.startswith("/") else "/" + path)


class SftpServer(FileServer):
    """rename: as FtpServer's ("no_overwrite": no posix-rename, and a plain rename never replaces)."""
    protocol = "sftp"
    host_key = paramiko.ECDSAKey.generate()  # one per test session: generating keys is slow

    def __init__(self, root, port=None, rename="ok"):
        super().__init__(root, port)
        self.rename = rename
        self.listener = self.thread = None
        self.transports = []

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((self.host, self.port))
        self.listener.listen(8)
        self.listener.settimeout(0.05)  # accept() wakes up to see whether the server is stopping
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # a timeout: look again
                continue
            conn.settimeout(None)
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _Folder, root=self.root,
                                            rename=self.rename)
            self.transports.append(transport)
            try:
                transport.start_server(server=_Auth(self))
            except (paramiko.SSHException, EOFError, OSError):
                transport.close()

    def stop(self):
        if self.listener is not None:
            self.stopping.set()
            self.thread.join(5)
            self.listener.close()
            for transport in self.transports:
                transport.close()
            self.listener = None
