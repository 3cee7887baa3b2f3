"""The FTP export type against real FTP, FTPS and SFTP servers on loopback."""
import hashlib
import os
from datetime import date

import pytest
from werkzeug.datastructures import MultiDict

from exporter.export_types import Batch
from exporter_ftp import DEFAULT_FILE_NAME, FtpSettings, FtpType, file_name_for

from .ftp_servers import FtpServer, SftpServer, free_port

DAY = date(2026, 11, 27)
COLUMNS = ["first_name", "note", "city"]
ROWS = [
    [("first_name", "Jane"), ("note", 'said "hi", left'), ("city", "Zürich")],
    [("first_name", "José & Co"), ("note", "two\nlines"), ("city", "")],
]
# RFC 4180: CRLF after each record, quotes doubled, fields with , " or a line break quoted; UTF-8.
EXPECTED = ('first_name,note,city\r\n'
            'Jane,"said ""hi"", left",Zürich\r\n'
            'José & Co,"two\nlines",\r\n').encode()
FILE = "call-center-partials_7_20261127.csv"


def batch(rows=ROWS, route_id=7, allow_private=True, work_dir=""):
    return Batch(columns=COLUMNS, rows=iter(rows), profile_name="Call center partials", idempotency_key="42",
                 route_id=route_id, file_date=DAY, allow_private_targets=allow_private, work_dir=work_dir)


# --- settings -------------------------------------------------------------------------------

def form(**data):
    values = {"protocol": "ftp", "host": "ftp.example.com", "username": "u", "file_name": DEFAULT_FILE_NAME,
              "send_at": "01:00", "time_zone": "UTC", **data}
    f = FtpSettings(formdata=MultiDict({k: v for k, v in values.items() if v is not None}))
    f.validate()
    return f


def test_settings_defaults_and_documented_placeholders():
    f = FtpSettings()
    assert f.protocol.data == "ftp" and [c.value for c in f.protocol.choices] == ["ftp", "ftps", "sftp"]
    assert f.file_name.data == "{profile}_{route}_{date:%Y%m%d}.csv"
    assert f.header_row.data is True and f.send_empty.data is False
    for placeholder in ("{profile}", "{route}", "{date:%Y%m%d}"):
        assert placeholder in f.file_name.description
    assert form().errors == {}


@pytest.mark.parametrize("field,value,message", [
    ("host", "", "Host is required"),
    ("host", "ftp://ftp.example.com", "name or address only"),
    ("port", "70000", "between 1 and 65535"),
    ("username", "", "Username is required"),
    ("file_name", "{customer}.csv", "unknown macro {customer}"),
    ("file_name", "{date.year}.csv", "unknown macro {date.year}"),
    ("file_name", "{date:%Y", "not a valid pattern"),
    ("file_name", "out/{date}.csv", "no /"),
    ("send_at", "25:00", "HH:MM"),
    ("send_at", "1am", "HH:MM"),
    ("time_zone", "Mars/Olympus", "not an IANA time zone"),
])
def test_settings_bad_input_is_named_beside_the_field(field, value, message):
    errors = form(**{field: value}).errors
    assert list(errors) == [field]
    assert message in errors[field][0]


def test_empty_file_name_send_at_and_time_zone_take_their_defaults(ftp_server):
    assert form(file_name="", send_at="", time_zone="").errors == {}
    assert form(file_name=None, send_at=None, time_zone=None).errors == {}  # a profile imported without them
    assert FtpType(ftp_server.settings(file_name="")).send(batch()).details["file_name"] == FILE


def test_port_defaults_by_protocol():
    assert FtpType({"protocol": "ftp", "host": "h"}).port == 21
    assert FtpType({"protocol": "ftps", "host": "h"}).port == 21
    assert FtpType({"protocol": "sftp", "host": "h"}).port == 22
    assert FtpType({"protocol": "sftp", "host": "h", "port": 2222}).port == 2222


def test_file_name_placeholders():
    assert file_name_for(DEFAULT_FILE_NAME, "Call center: partials!", 12, DAY) == "call-center-partials_12_20261127.csv"
    assert file_name_for("{date}-{route}.txt", "x", 3, DAY) == "2026-11-27-3.txt"


# --- the upload -----------------------------------------------------------------------------

def test_the_file_arrives_byte_exact_over_each_protocol(file_server):
    outcome = FtpType(file_server.settings()).send(batch())
    assert outcome.ok, outcome.error
    assert file_server.files() == {FILE: EXPECTED}  # and no temporary .part left behind
    assert outcome.method == ("SFTP PUT" if file_server.protocol == "sftp" else "STOR")
    assert outcome.target == f"{file_server.protocol}://partner@127.0.0.1:{file_server.port}/{FILE}"
    assert file_server.password not in outcome.target + outcome.response_body
    assert outcome.summary == f"file {FILE} uploaded (2 rows)"
    assert outcome.details == {"file_name": FILE, "rows": 2, "bytes": len(EXPECTED),
                               "sha256": hashlib.sha256(EXPECTED).hexdigest(), "uploaded": True}


def test_the_server_replies_are_kept(ftp_server, ftps_server):
    replies = FtpType(ftp_server.settings()).send(batch()).response_body.splitlines()
    assert replies[0] == "220 test FTP server ready"
    assert replies[1].startswith("230 ") and replies[-2].startswith("226 ") and replies[-1].startswith("250 ")
    tls = FtpType(ftps_server.settings()).send(batch()).response_body
    assert "234 AUTH TLS successful." in tls and "200 Protection set to Private" in tls


def test_upload_goes_to_the_remote_directory_and_replaces_an_older_file(file_server):
    (file_server.root_path / "in").mkdir()
    (file_server.root_path / "in" / FILE).write_bytes(b"old contents")
    outcome = FtpType(file_server.settings(directory="/in")).send(batch())
    assert outcome.ok, outcome.error
    assert file_server.files("in") == {FILE: EXPECTED}
    assert outcome.target.endswith(f":{file_server.port}/in/{FILE}")


def test_header_row_off(ftp_server):
    FtpType(ftp_server.settings(header_row=False)).send(batch())
    assert ftp_server.files()[FILE] == EXPECTED.split(b"\r\n", 1)[1]


def test_no_rows_and_send_empty_files_off_uploads_nothing(ftp_server):
    outcome = FtpType(ftp_server.settings()).send(batch(rows=[]))
    assert outcome.ok
    assert ftp_server.files() == {}
    assert outcome.details["uploaded"] is False and outcome.details["rows"] == 0
    assert outcome.summary == f"file {FILE} not uploaded: no rows (Send Empty Files is off)"


def test_no_rows_and_send_empty_files_on_uploads_the_header(ftp_server):
    outcome = FtpType(ftp_server.settings(send_empty=True)).send(batch(rows=[]))
    assert outcome.ok and outcome.details["uploaded"] is True
    assert ftp_server.files() == {FILE: b"first_name,note,city\r\n"}


def test_the_file_is_written_in_the_batchs_work_dir_and_removed_after(tmp_path):
    work, partner, seen = tmp_path / "work", tmp_path / "partner", []
    work.mkdir(mode=0o700)
    partner.mkdir()
    server = FtpServer(partner, on_received=lambda path: seen.extend(os.listdir(work))).start()
    try:
        assert FtpType(server.settings()).send(batch(work_dir=str(work))).ok
    finally:
        server.stop()
    assert len(seen) == 1 and seen[0].startswith("exporter-")  # there while it was uploaded
    assert os.listdir(work) == []


# --- replacing the partner's older file -------------------------------------------------------

@pytest.mark.parametrize("make", [FtpServer, SftpServer], ids=["ftp", "sftp"])
def test_a_refused_rename_leaves_the_partners_older_file_alone(tmp_path, make):
    (tmp_path / FILE).write_bytes(b"yesterday's upload")
    server = make(tmp_path, rename="refused").start()  # may upload and delete, not rename
    try:
        outcome = FtpType(server.settings()).send(batch())
    finally:
        server.stop()
    assert not outcome.ok and outcome.error.startswith(f"rename .{FILE}.part to {FILE} failed: ")
    assert (tmp_path / FILE).read_bytes() == b"yesterday's upload"


@pytest.mark.parametrize("make", [FtpServer, SftpServer], ids=["ftp", "sftp"])
def test_a_server_that_never_renames_over_a_file_still_gets_the_new_one(tmp_path, make):
    (tmp_path / FILE).write_bytes(b"yesterday's upload")
    server = make(tmp_path, rename="no_overwrite").start()
    try:
        outcome = FtpType(server.settings()).send(batch())
    finally:
        server.stop()
    assert outcome.ok, outcome.error
    assert server.files() == {FILE: EXPECTED}  # no .part, no old copy left beside it


@pytest.mark.parametrize("make", [FtpServer, SftpServer], ids=["ftp", "sftp"])
def test_a_new_file_on_a_server_that_never_renames_over_a_file(tmp_path, make):
    server = make(tmp_path, rename="no_overwrite").start()
    try:
        outcome = FtpType(server.settings()).send(batch())
    finally:
        server.stop()
    assert outcome.ok, outcome.error
    assert server.files() == {FILE: EXPECTED}


# --- failures -------------------------------------------------------------------------------

def test_bad_password_fails_with_the_servers_reply(file_server):
    outcome = FtpType(file_server.settings(password="wrong")).send(batch())
    assert not outcome.ok
    expected = "Authentication failed." if file_server.protocol == "sftp" else "530 Authentication failed."
    assert outcome.error == f"login as partner failed: {expected}"
    assert file_server.files() == {}


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_server_down_fails_with_the_connection_error(protocol):
    port = free_port()
    outcome = FtpType({"protocol": protocol, "host": "127.0.0.1", "port": port, "username": "u",
                       "password": "p"}).send(batch())
    assert not outcome.ok
    words, detail = outcome.error.split("\n", 1)  # plain words first, the raw error one click away
    assert words == f"connect to 127.0.0.1:{port} failed: connection refused"
    assert detail == "ConnectionRefusedError: [Errno 111] Connection refused"


def test_full_disk_fails_with_the_servers_reply(tmp_path):
    server = FtpServer(tmp_path, full_disk=True).start()
    try:
        outcome = FtpType(server.settings()).send(batch())
    finally:
        server.stop()
    assert not outcome.ok
    assert outcome.error.startswith(f"upload .{FILE}.part failed: 55")
    assert "No space left on device" in outcome.error
    assert "230 Login successful." in outcome.response_body


def test_missing_remote_directory(ftp_server):
    outcome = FtpType(ftp_server.settings(directory="/nowhere")).send(batch())
    assert not outcome.ok and outcome.error.startswith("change to directory /nowhere failed: 550")


def test_ftps_refuses_a_self_signed_certificate_unless_told(ftps_server):
    outcome = FtpType(ftps_server.settings(verify_tls=True)).send(batch())
    assert not outcome.ok
    words, detail = outcome.error.split("\n", 1)
    assert words == "TLS (AUTH TLS) failed: TLS certificate not trusted: self-signed certificate"
    assert "CERTIFICATE_VERIFY_FAILED" in detail
    assert ftps_server.files() == {}


def test_sftp_host_key_fingerprint_is_checked(sftp_server):
    from exporter_ftp.transfer import fingerprint

    right = fingerprint(SftpServer.host_key)
    assert FtpType(sftp_server.settings(host_key=right)).send(batch()).ok
    outcome = FtpType(sftp_server.settings(host_key="SHA256:" + "A" * 43)).send(batch(rows=ROWS[:1]))
    assert not outcome.ok and outcome.error.startswith(f"host key check failed: the server's key is {right}")
    assert sftp_server.files() == {FILE: EXPECTED}  # the first upload only


def test_private_targets_are_refused_unless_allowed(ftp_server):
    outcome = FtpType(ftp_server.settings()).send(batch(allow_private=False))
    assert not outcome.ok and "private address" in outcome.error and "EXPORTER_ALLOW_PRIVATE_TARGETS" in outcome.error
    assert ftp_server.files() == {}


# --- test connection ------------------------------------------------------------------------

def test_test_connection_lists_the_remote_directory(file_server):
    (file_server.root_path / "in").mkdir()
    (file_server.root_path / "in" / "yesterday.csv").write_bytes(b"a\r\n")
    outcome = FtpType(file_server.settings(directory="in")).test_connection(allow_private_targets=True)
    assert outcome.ok, outcome.error
    assert outcome.summary == "logged in as partner; 1 entries in in"
    assert outcome.response_body.splitlines()[-1].endswith(" yesterday.csv")
    assert outcome.method == "LIST"


def test_test_connection_reports_a_bad_login(file_server):
    outcome = FtpType(file_server.settings(password="wrong")).test_connection(allow_private_targets=True)
    assert not outcome.ok and outcome.error.startswith("login as partner failed")


def test_test_connection_refuses_private_targets_unless_told(app, ftp_server):
    # The plugin decides only on what the core passes: not on the app it happens to run in.
    assert app.config["ALLOW_PRIVATE_TARGETS"]
    assert "private address" in FtpType(ftp_server.settings()).test_connection().error
    assert FtpType(ftp_server.settings()).test_connection(allow_private_targets=True).ok


def test_a_test_send_is_named_as_a_test(ftp_server):
    test = batch()
    test.is_test = True
    assert FtpType(ftp_server.settings()).send(test).ok
    assert list(ftp_server.files()) == [f"TEST_{FILE}"]


def test_a_silent_server_says_timed_out_after_the_timeout():
    """A server that accepts the connection and never greets: the words name the timeout."""
    import socket

    from exporter_ftp.transfer import FtpConnection, TransferError

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        connection = FtpConnection("127.0.0.1", port, "u", "p", timeout=1)
        with pytest.raises(TransferError) as failed:
            connection.login()
    finally:
        listener.close()
    words, detail = str(failed.value).split("\n", 1)
    assert words.endswith("failed: timed out after 1 s")
    assert "timed out" in detail
