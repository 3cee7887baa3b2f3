"""Talking to the partner's server: FTP (ftplib), FTPS with explicit TLS (ftplib), SFTP (paramiko).

Each connection logs in, changes to the remote directory, uploads under a temporary name
then renames (so a partner never reads half a file), and lists the directory. Every
server reply is kept in `replies` for the attempt log; a failure raises TransferError
naming the step and carrying the server's own words.

The partner's older file of the same name is never deleted on a guess: only when it exists
and the server refused to rename over it is it moved aside, replaced, then removed; if the
rename still fails it is moved back.
"""
import base64
import ftplib
import hashlib
import socket
import ssl

DEFAULT_TIMEOUT = 30


class TransferError(Exception):
    """A step that failed: `step` says what we were doing, the message what the server said."""

    def __init__(self, step, message):
        super().__init__(f"{step} failed: {message}")
        self.step = step


def part_name(name):
    """The temporary name a file is uploaded under: hidden, and not matching *.csv."""
    return f".{name}.part"


def _reply_text(exc, timeout=None):
    """The server's own words; a network failure in plain words, the raw error on the next line
    (lists show the first line, the attempt's page all of it)."""
    raw = str(exc).strip() or type(exc).__name__
    plain = _plain_network_error(exc, timeout)
    return f"{plain}\n{type(exc).__name__}: {raw}" if plain else raw


def _plain_network_error(exc, timeout):
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason
        return "TLS certificate not trusted" + (f": {reason}" if reason else "")
    if isinstance(exc, socket.gaierror):
        return "could not resolve host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout} s" if timeout else "timed out"
    if isinstance(exc, (ConnectionResetError, EOFError)):
        return "the server closed the connection"
    if isinstance(exc, ssl.SSLError):
        return "TLS handshake failed"
    return None


def aside_name(name):
    """Where the partner's older file waits while the new one takes its name."""
    return f".{name}.old"


class Connection:
    """What FTP and SFTP share: replacing the partner's older file without ever losing it."""

    def replace(self, temporary, name, refused):
        """The server refused to rename over `name`: move the old file aside, rename, drop the old.

        `refused` (the first rename's TransferError) is raised as it is when there is no `name`
        to replace or it cannot be moved aside (a refusal for another reason: permissions...).
        The old file is removed only once the new one has its name, and put back otherwise.
        """
        if not self.exists(name):
            raise refused
        aside = aside_name(name)
        self.forget(aside)  # our own leftover of an earlier try, if any
        try:
            self.rename(name, aside)
        except TransferError:
            raise refused from None
        try:
            self.rename(temporary, name)
        except TransferError:
            try:
                self.rename(aside, name)  # the partner keeps the file they had
            except TransferError:
                self.replies.append(f"the older {name} is left as {aside}")
            raise
        self.forget(aside)


class FtpConnection(Connection):
    """FTP, or FTPS with explicit TLS (AUTH TLS, then PROT P for the data channel)."""

    method = "STOR"

    def __init__(self, host, port, username, password, tls=False, verify_tls=True, timeout=DEFAULT_TIMEOUT,
                 address=None):
        self.host, self.port, self.username, self.password = host, port, username, password
        self.address = address or host  # where to connect: the address the target guard checked
        self.tls, self.verify_tls, self.timeout = tls, verify_tls, timeout
        self.replies = []
        self.ftp = None

    def _step(self, step, call, *args):
        try:
            reply = call(*args)
        except ftplib.all_errors as exc:
            raise TransferError(step, _reply_text(exc, self.timeout)) from exc
        if isinstance(reply, str) and reply:
            self.replies.append(reply)
        return reply

    def _context(self):
        context = ssl.create_default_context()
        if not self.verify_tls:  # a partner's self-signed certificate, accepted on the admin's word
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def login(self):
        self.ftp = ftplib.FTP_TLS(context=self._context(), timeout=self.timeout) if self.tls \
            else ftplib.FTP(timeout=self.timeout)
        self._step(f"connect to {self.host}:{self.port}", self.ftp.connect, self.address, self.port)
        self.ftp.host = self.host  # TLS (control and data) checks the certificate against the name
        if self.tls:
            self._step("TLS (AUTH TLS)", self.ftp.auth)
        self._step(f"login as {self.username}", self.ftp.login, self.username, self.password)
        if self.tls:
            self._step("TLS for data (PROT P)", self.ftp.prot_p)

    def cd(self, directory):
        if directory:
            self._step(f"change to directory {directory}", self.ftp.cwd, directory)

    def upload(self, local_path, name):
        """Upload under the temporary name, then rename over any older file of that name."""
        temporary = part_name(name)
        with open(local_path, "rb") as f:
            try:
                self._step(f"upload {temporary}", self.ftp.storbinary, f"STOR {temporary}", f)
            except TransferError:
                self.forget(temporary)
                raise
        try:
            self.rename(temporary, name)
        except TransferError as refused:
            self.replace(temporary, name, refused)  # servers that refuse to rename over a file

    def rename(self, old, new):
        self._step(f"rename {old} to {new}", self.ftp.rename, old, new)

    def exists(self, name):
        """Whether the directory holds `name`: SIZE, else the name list; unsure counts as no."""
        try:
            self.ftp.size(name)
            return True
        except ftplib.error_perm as exc:
            if str(exc).startswith("550"):
                return False
        except ftplib.all_errors:
            pass
        try:
            return name in {entry.rsplit("/", 1)[-1] for entry in self.ftp.nlst()}
        except ftplib.all_errors:
            return False

    def forget(self, name):
        try:
            self.ftp.delete(name)
        except ftplib.all_errors:
            pass

    def listing(self):
        lines = []
        self._step("list the directory", self.ftp.retrlines, "LIST", lines.append)
        return lines

    def close(self):
        if self.ftp is None:
            return
        try:
            self.ftp.quit()
        except (*ftplib.all_errors, AttributeError):  # never connected, or the server is gone
            self.ftp.close()


def fingerprint(key):
    """A host key's SHA256 fingerprint as ssh-keygen -l prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SftpConnection(Connection):
    """SFTP over SSH with a password; the host key is checked when a fingerprint is given."""

    method = "SFTP PUT"

    def __init__(self, host, port, username, password, host_key="", timeout=DEFAULT_TIMEOUT, address=None):
        self.host, self.port, self.username, self.password = host, port, username, password
        self.address = address or host  # where to connect: the address the target guard checked
        self.host_key, self.timeout = host_key.strip(), timeout
        self.replies = []
        self.transport = self.sftp = None

    def login(self):
        import paramiko

        try:
            sock = socket.create_connection((self.address, self.port), timeout=self.timeout)
        except OSError as exc:
            raise TransferError(f"connect to {self.host}:{self.port}", _reply_text(exc, self.timeout)) from exc
        self.transport = paramiko.Transport(sock)
        self.transport.banner_timeout = self.transport.auth_timeout = self.timeout
        try:
            self.transport.start_client(timeout=self.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransferError(f"SSH handshake with {self.host}:{self.port}", _reply_text(exc, self.timeout)) from exc
        key = self.transport.get_remote_server_key()
        self.replies.append(f"{self.transport.remote_version}; host key {key.get_name()} {fingerprint(key)}")
        if self.host_key and self.host_key != fingerprint(key):
            raise TransferError("host key check", f"the server's key is {fingerprint(key)}, "
                                                  f"not the Host Key Fingerprint {self.host_key}")
        try:
            self.transport.auth_password(self.username, self.password)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransferError(f"login as {self.username}", _reply_text(exc, self.timeout)) from exc
        self.replies.append(f"logged in as {self.username}")
        self.sftp = self._step("open SFTP", paramiko.SFTPClient.from_transport, self.transport)
        self.sftp.get_channel().settimeout(self.timeout)

    def _step(self, step, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (OSError, EOFError) as exc:
            raise TransferError(step, _reply_text(exc, self.timeout)) from exc
        except Exception as exc:  # paramiko.SSHException and its kin
            raise TransferError(step, f"{type(exc).__name__}: {exc}") from exc

    def cd(self, directory):
        if directory:
            self._step(f"change to directory {directory}", self.sftp.chdir, directory)
            self.replies.append(f"in {self.sftp.getcwd()}")

    def upload(self, local_path, name):
        temporary = part_name(name)
        try:
            attrs = self._step(f"upload {temporary}", self.sftp.put, local_path, temporary)
        except TransferError:
            self.forget(temporary)
            raise
        self.replies.append(f"PUT {temporary}: {attrs.st_size} bytes")
        try:
            # Atomic, and replaces an older file of that name.
            self._step(f"rename {temporary} to {name}", self.sftp.posix_rename, temporary, name)
        except TransferError as refused:
            # Servers without posix-rename@openssh.com: a plain rename, which never replaces a file.
            self.replies.append(f"posix-rename refused: {refused}")
            try:
                self.rename(temporary, name)
            except TransferError:
                self.replace(temporary, name, refused)
        self.replies.append(f"renamed {temporary} to {name}")

    def rename(self, old, new):
        self._step(f"rename {old} to {new}", self.sftp.rename, old, new)

    def exists(self, name):
        try:
            self.sftp.stat(name)
            return True
        except (OSError, EOFError):  # no such file, or not ours to look at: unsure counts as no
            return False

    def forget(self, name):
        try:
            self.sftp.remove(name)
        except (OSError, EOFError):
            pass

    def listing(self):
        return [str(attr) for attr in self._step("list the directory", self.sftp.listdir_attr, ".")]

    def close(self):
        if self.sftp is not None:
            self.sftp.close()
        if self.transport is not None:
            self.transport.close()
