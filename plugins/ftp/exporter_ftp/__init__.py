"""The FTP export type: one CSV file per route per day, uploaded to a partner's server.

The core hands send() a day's rows as a stream (exporter/daily_files.py). The file is
written by the contract's write_file as the rows arrive (CSV in the profile's dialect and
encoding, compressed and encrypted as its settings say), in the batch's private work
directory (it may hold card numbers), then uploaded under a temporary name and renamed, so a
partner never reads half a file.
"""
import contextlib
import os
import re
import time
from datetime import date
from urllib.parse import quote

from wtforms import BooleanField, IntegerField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, NumberRange, Optional, ValidationError

from exporter.export_types import (DAILY_FILE, DEFAULT_FILE_NAME, FILE_NAME_HELP, FILE_NAME_MACROS, ExportType,
                                   FileEncodingError, FileSettings, Outcome, PgpKeyError, TargetRefused, csv_text,
                                   file_name_for, file_sha256, resolve_target, slug, write_file)

from .transfer import DEFAULT_TIMEOUT, FtpConnection, SftpConnection, TransferError

PROTOCOLS = [SelectChoice("ftp", "FTP"), SelectChoice("ftps", "FTPS (explicit TLS)"),
             SelectChoice("sftp", "SFTP (SSH)")]
DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}
PLACEHOLDERS = FILE_NAME_MACROS  # the file name's macros live in the contract, shared by every file type
__all__ = ["DEFAULT_FILE_NAME", "FILE_NAME_HELP", "FtpSettings", "FtpType", "file_name_for", "file_sha256", "slug"]


# --- settings -------------------------------------------------------------------------------

def _one_line(form, field):
    if any(c in (field.data or "") for c in "\r\n\x00"):
        raise ValidationError(f"{field.label.text} must not contain a line break (CR, LF) or NUL")


def _host(form, field):
    if re.search(r"[\s/:@\x00]", field.data or ""):
        raise ValidationError("Host is a name or address only, e.g. ftp.example.com (no scheme, port or path)")


class FtpSettings(FileSettings):
    """The server and login; the file's name, schedule and format come after, from FileSettings."""
    protocol = SelectField("Protocol", choices=PROTOCOLS, default="ftp")
    host = StringField("Host", validators=[DataRequired("Host is required"), _host])
    port = IntegerField("Port", validators=[Optional(), NumberRange(1, 65535, "Port is between 1 and 65535")],
                        description="Empty: 21 for FTP and FTPS, 22 for SFTP.")
    username = StringField("Username", validators=[DataRequired("Username is required"), _one_line])
    password = PasswordField("Password")
    directory = StringField("Remote Directory", default="/", validators=[_one_line],
                            description="Where the files go; relative paths start at the login directory.")
    verify_tls = BooleanField("Verify TLS Certificate", default=True,
                              description="FTPS: refuse a certificate that no public authority signed.")
    host_key = StringField("Host Key Fingerprint", description="SFTP: the server's key as ssh-keygen -l shows it "
                           "(SHA256:...). Empty: any key (the attempt log shows the server's).")


# --- the type -------------------------------------------------------------------------------

class FtpType(ExportType):
    key = "ftp"
    label = "FTP"
    schedule = DAILY_FILE
    settings_form = FtpSettings
    secret_settings = ("password",)

    @property
    def protocol(self):
        return self.settings.get("protocol") or "ftp"

    @property
    def host(self):
        return (self.settings.get("host") or "").strip()

    @property
    def port(self):
        return int(self.settings.get("port") or DEFAULT_PORTS.get(self.protocol, 21))

    @property
    def directory(self):
        return (self.settings.get("directory") or "").strip()

    @property
    def method(self):
        return SftpConnection.method if self.protocol == "sftp" else FtpConnection.method

    def describe(self):
        return f"{self.protocol}://{self.host}:{self.port}{self.directory or '/'}"

    def url(self, name=""):
        """Where a file goes, without the password: ftp://user@host:port/dir/name."""
        path = "/".join(part for part in (self.directory.strip("/"), name) if part)
        user = quote(self.settings.get("username") or "", safe="")
        return f"{self.protocol}://{user}@{self.host}:{self.port}/{path}"

    def connection(self, address=None):
        """A connection to the host's checked address (resolve_target): a second DNS answer is
        never asked for, so it cannot point inside. FTPS still checks the certificate on the name."""
        s = self.settings
        args = (self.host, self.port, s.get("username") or "", s.get("password") or "")
        if self.protocol == "sftp":
            return SftpConnection(*args, host_key=s.get("host_key") or "", timeout=DEFAULT_TIMEOUT, address=address)
        return FtpConnection(*args, tls=self.protocol == "ftps", verify_tls=s.get("verify_tls", True),
                             timeout=DEFAULT_TIMEOUT, address=address)

    def preview(self, columns, row):
        file_format = self.file_format()
        return csv_text(columns, [row], file_format.header, file_format.neutralise, file_format)

    def send(self, batch):
        name = self.file_name(batch.profile_name, batch.route_id if batch.route_id is not None else batch.route_name,
                              batch.file_date or date.today(), batch.is_test)
        outcome = Outcome(ok=False, method=self.method, target=self.url(name))
        try:
            address = resolve_target(self.host, self.port, batch.allow_private_targets)[0]
        except TargetRefused as exc:
            outcome.error = str(exc)
            return outcome
        started = time.monotonic()
        try:
            written = write_file(batch, self.file_format(name), name)
        except (FileEncodingError, PgpKeyError) as exc:  # the file cannot be made as the settings say
            outcome.error = f"file {name} not made: {exc}"
            return outcome
        path, rows, size, sha256 = written.path, written.rows, written.size, written.sha256
        try:
            outcome.details = {"file_name": name, "rows": rows, "bytes": size, "sha256": sha256}
            outcome.request_body = f"{name}: {rows} rows, {size} bytes, sha256 {sha256}"
            if rows == 0 and not self.settings.get("send_empty"):
                outcome.ok, outcome.details["uploaded"] = True, False
                outcome.summary = f"file {name} not uploaded: no rows (Send Empty Files is off)"
                return outcome
            self._upload(path, name, outcome, address)
        finally:
            with contextlib.suppress(FileNotFoundError):  # already swept as stale: nothing left to remove
                os.unlink(path)
            outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        outcome.details["uploaded"] = outcome.ok
        if outcome.ok:
            outcome.summary = f"file {name} uploaded ({rows} rows)"
        return outcome

    def _upload(self, path, name, outcome, address):
        connection = self.connection(address)
        try:
            connection.login()
            connection.cd(self.directory)
            connection.upload(path, name)
            outcome.ok = True
        except TransferError as exc:
            outcome.error = str(exc)
        finally:
            connection.close()
            outcome.response_body = "\n".join(connection.replies)

    def test_connection(self, allow_private_targets=False):
        """Log in and list the Remote Directory; the Outcome's response_body is the listing."""
        outcome = Outcome(ok=False, method="LIST", target=self.url())
        try:
            address = resolve_target(self.host, self.port, allow_private_targets)[0]
        except TargetRefused as exc:
            outcome.error = str(exc)
            return outcome
        started, connection, lines = time.monotonic(), self.connection(address), []
        try:
            connection.login()
            connection.cd(self.directory)
            lines = connection.listing()
            outcome.ok = True
            outcome.summary = f"logged in as {self.settings.get('username')}; {len(lines)} entries in " \
                              f"{self.directory or 'the login directory'}"
        except TransferError as exc:
            outcome.error = str(exc)
        finally:
            connection.close()
            outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
            outcome.response_body = "\n".join(connection.replies + lines)
        return outcome
