"""The FTP export type: one CSV file per route per day, uploaded to a partner's server.

The core hands send() a day's rows as a stream (exporter/daily_files.py). The file is
written to a temporary file as the rows arrive (CSV per RFC 4180, UTF-8, CRLF), in the
batch's private work directory (it may hold card numbers), then uploaded under a temporary
name and renamed, so a partner never reads half a file.
"""
import contextlib
import hashlib
import os
import re
import string
import tempfile
import time
from datetime import date
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wtforms import BooleanField, Form, IntegerField, PasswordField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, NumberRange, Optional, ValidationError

from exporter.export_types import DAILY_FILE, DEFAULT_SEND_AT, ExportType, Outcome, TargetRefused, csv_text, resolve_target, write_csv

from .transfer import DEFAULT_TIMEOUT, FtpConnection, SftpConnection, TransferError

PROTOCOLS = [SelectChoice("ftp", "FTP"), SelectChoice("ftps", "FTPS (explicit TLS)"),
             SelectChoice("sftp", "SFTP (SSH)")]
DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}
DEFAULT_FILE_NAME = "{profile}_{route}_{date:%Y%m%d}.csv"
PLACEHOLDERS = ("profile", "route", "date")
FILE_NAME_HELP = ("Placeholders: {profile} the Profile Name as a slug (call-center-partials), "
                  "{route} the route's id, {date:%Y%m%d} the file's day in any strftime pattern "
                  "({date} alone is 2026-11-27).")


# --- settings -------------------------------------------------------------------------------

def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def file_name_for(pattern, profile, route, day):
    """The pattern with its placeholders filled; ValueError says what is wrong with a pattern."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid pattern: {exc}") from None
    for name in fields:
        if name not in PLACEHOLDERS:  # also refuses {date.year}, {0}, {profile[0]}: plain names only
            raise ValueError(f"unknown placeholder {{{name}}}: use {{profile}}, {{route}} or {{date:...}}")
    try:
        name = pattern.format(profile=slug(profile), route=slug(route), date=day)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid pattern: {exc}") from None
    if any(c in name for c in "\r\n\x00"):
        raise ValueError("must not contain a line break (CR, LF) or NUL: the server would read a second command")
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError("must make a file name (no / or \\)")
    return name


def _file_name(form, field):
    try:
        file_name_for(field.data or "", "Call center partials", 1, date(2026, 11, 27))
    except ValueError as exc:
        raise ValidationError(f"File Name {exc}")


def _time_of_day(form, field):
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", (field.data or "").strip()):
        raise ValidationError("Send At is a time of day as HH:MM (24-hour), e.g. 01:00")


def _time_zone(form, field):
    try:
        ZoneInfo((field.data or "").strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{field.data!r} is not an IANA time zone (e.g. America/New_York, UTC)")


def _one_line(form, field):
    if any(c in (field.data or "") for c in "\r\n\x00"):
        raise ValidationError(f"{field.label.text} must not contain a line break (CR, LF) or NUL")


def _host(form, field):
    if re.search(r"[\s/:@\x00]", field.data or ""):
        raise ValidationError("Host is a name or address only, e.g. ftp.example.com (no scheme, port or path)")


class FtpSettings(Form):
    protocol = SelectField("Protocol", choices=PROTOCOLS, default="ftp")
    host = StringField("Host", validators=[DataRequired("Host is required"), _host])
    port = IntegerField("Port", validators=[Optional(), NumberRange(1, 65535, "Port is between 1 and 65535")],
                        description="Empty: 21 for FTP and FTPS, 22 for SFTP.")
    username = StringField("Username", validators=[DataRequired("Username is required"), _one_line])
    password = PasswordField("Password")
    directory = StringField("Remote Directory", default="/", validators=[_one_line],
                            description="Where the files go; relative paths start at the login directory.")
    # Left empty (or absent from an imported profile), these three take their defaults.
    file_name = StringField("File Name", default=DEFAULT_FILE_NAME, description=FILE_NAME_HELP,
                            validators=[Optional(), _file_name])
    send_at = StringField("Send At", default=DEFAULT_SEND_AT, render_kw={"type": "time"},
                          validators=[Optional(), _time_of_day],
                          description="Each day at this time (HH:MM, in the Time Zone) the file of the day before "
                                      f"is sent. Empty: {DEFAULT_SEND_AT}.")
    time_zone = StringField("Time Zone", default="UTC", validators=[Optional(), _time_zone],
                            description="An IANA name, e.g. America/New_York. A day runs midnight to midnight here. "
                                        "Empty: UTC.")
    header_row = BooleanField("Header Row", default=True, description="First line: the Export Names.")
    neutralise_formulas = BooleanField(
        "Neutralise Spreadsheet Formulas", default=True,
        description="A value starting with = + - @ (not a plain number) gets a leading ' so that a spreadsheet "
                    "shows it instead of running it as a formula.")
    send_empty = BooleanField("Send Empty Files", default=False,
                              description="Upload a file even on a day without rows.")
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

    @property
    def neutralise(self):
        """On for every profile made since the setting exists; a profile without it keeps its files as they were."""
        return bool(self.settings.get("neutralise_formulas", False))

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
        return csv_text(columns, [row], self.settings.get("header_row", True), self.neutralise)

    def send(self, batch):
        name = file_name_for(self.settings.get("file_name") or DEFAULT_FILE_NAME,
                             batch.profile_name, batch.route_id if batch.route_id is not None else batch.route_name,
                             batch.file_date or date.today())
        if batch.is_test:  # a Send test from the profile page: never mistaken for a day's file
            name = f"TEST_{name}"
        outcome = Outcome(ok=False, method=self.method, target=self.url(name))
        try:
            address = resolve_target(self.host, self.port, batch.allow_private_targets)[0]
        except TargetRefused as exc:
            outcome.error = str(exc)
            return outcome
        started = time.monotonic()
        path, rows = write_temporary(batch, header=self.settings.get("header_row", True), neutralise=self.neutralise)
        try:
            size, sha256 = os.path.getsize(path), file_sha256(path)
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


# --- the file -------------------------------------------------------------------------------

def write_temporary(batch, header=True, neutralise=False):
    """Stream the batch's rows into a temporary UTF-8 CSV file; its path and the row count."""
    fd, path = tempfile.mkstemp(prefix="exporter-", suffix=".csv", dir=batch.work_dir or None)  # mode 0600
    try:
        with open(fd, "w", encoding="utf-8", newline="") as f:
            rows = write_csv(f, batch.columns, batch.rows, header, neutralise)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        close = getattr(batch.rows, "close", None)
        if close:
            close()  # a stream from the database ends here, read whole or not
    return path, rows


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
