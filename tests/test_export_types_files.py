"""The contract's file toolkit (exporter.export_types): a batch written in a partner's dialect,
encoding and compression reads back as it went in, through Python's csv and real decompressors;
a value the encoding cannot hold names its row and column; the file name's macros."""
import csv
import gzip
import io
import subprocess
import zipfile
from datetime import date

import pytest
from werkzeug.datastructures import MultiDict

from exporter.export_types import (DEFAULT_FILE_NAME, Batch, FileEncodingError, FileFormat, FileSettings,
                                   file_name_for, suffix_problem, write_file, zip_member)

DAY = date(2026, 11, 27)
COLUMNS = ["first_name", "note", "city"]
ROWS = [
    [("first_name", "Jane"), ("note", 'said "hi", left | ; \t tab'), ("city", "Zürich")],
    [("first_name", "José & Co"), ("note", "two\nlines"), ("city", "")],
    [("first_name", "=cmd"), ("note", "-49.95"), ("city", "Köln")],
]


def batch(rows=ROWS, tmp_path=None):
    return Batch(columns=COLUMNS, rows=iter(rows), profile_name="Call center partials", idempotency_key="42",
                 route_id=7, file_date=DAY, work_dir=str(tmp_path) if tmp_path else "")


def values(rows):
    return [[value for _, value in row] for row in rows]


def read_back(data, file_format):
    """The file's rows as Python's csv reads them in the same dialect."""
    text = data.decode("utf-8-sig" if file_format.encoding == "utf-8-bom" else file_format.codec)
    options = file_format.writer_options()
    options.pop("lineterminator")
    return list(csv.reader(io.StringIO(text, newline=""), **options))


@pytest.mark.parametrize("delimiter", ["comma", "tab", "pipe", "semicolon"])
@pytest.mark.parametrize("quoting", ["minimal", "all"])
@pytest.mark.parametrize("line_ending", ["crlf", "lf"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-bom", "latin-1"])
def test_each_dialect_reads_back_with_pythons_csv(tmp_path, delimiter, quoting, line_ending, encoding):
    file_format = FileFormat(delimiter, quoting, line_ending, encoding)
    written = write_file(batch(tmp_path=tmp_path), file_format)
    data = open(written.path, "rb").read()
    assert written.rows == 3 and written.size == len(data)
    assert read_back(data, file_format) == [COLUMNS] + values(ROWS)
    sep = {"comma": ",", "tab": "\t", "pipe": "|", "semicolon": ";"}[delimiter]
    end = {"crlf": b"\r\n", "lf": b"\n"}[line_ending]
    first = data.split(end)[0]
    assert first == {"minimal": "first_name{0}note{0}city", "all": '"first_name"{0}"note"{0}"city"'}[quoting] \
        .format(sep).encode().join([b"\xef\xbb\xbf" if encoding == "utf-8-bom" else b"", b""])
    assert data.endswith(end) and (b"\r\n" not in data if line_ending == "lf" else True)
    assert ("Zürich".encode("latin-1") in data) == (encoding == "latin-1")


def test_rfc_4180_stays_the_default():
    written = write_file(batch(), FileFormat())
    assert open(written.path, "rb").read().startswith(b'first_name,note,city\r\nJane,"said ""hi"", left')


def test_a_value_latin_1_cannot_hold_names_its_row_and_column(tmp_path):
    rows = ROWS + [[("first_name", "Ann"), ("note", "fine"), ("city", "北京")]]
    with pytest.raises(FileEncodingError) as caught:
        write_file(batch(rows, tmp_path), FileFormat(encoding="latin-1"))
    assert str(caught.value).startswith("row 4, column city: the character '北' (U+5317) cannot be written in "
                                        "Latin-1")
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind
    with pytest.raises(FileEncodingError, match="the header row, column Straße€"):
        write_file(Batch(columns=["Straße€"], rows=iter([]), profile_name="p", idempotency_key="1"),
                   FileFormat(encoding="latin-1"))


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_gzip_reads_back_through_the_gzip_command(tmp_path, encoding):
    file_format = FileFormat(delimiter="semicolon", encoding=encoding, compression="gzip")
    written = write_file(batch(tmp_path=tmp_path), file_format, "x.csv.gz")
    plain = subprocess.run(["gzip", "-dc", written.path], capture_output=True, check=True).stdout
    assert read_back(plain, file_format) == [COLUMNS] + values(ROWS)


def test_zip_reads_back_through_unzip_as_one_csv_named_after_the_file(tmp_path):
    file_format = FileFormat(delimiter="pipe", compression="zip")
    written = write_file(batch(tmp_path=tmp_path), file_format, "partials_20261127.zip")
    listing = subprocess.run(["python3", "-m", "zipfile", "-l", written.path], capture_output=True, text=True).stdout
    assert "partials_20261127.csv" in listing
    with zipfile.ZipFile(written.path) as archive:
        assert archive.testzip() is None and archive.namelist() == ["partials_20261127.csv"]
        assert read_back(archive.read("partials_20261127.csv"), file_format) == [COLUMNS] + values(ROWS)
    assert zip_member("a.csv.zip.pgp") == "a.csv" and zip_member(".zip") == "data.csv"


def test_the_format_is_read_from_the_settings_and_unknown_values_are_refused():
    assert FileFormat.of({}) == FileFormat()
    settings = {"delimiter": "tab", "quoting": "all", "line_ending": "lf", "encoding": "latin-1",
                "compression": "gzip", "header_row": False, "neutralise_formulas": True}
    assert FileFormat.of(settings) == FileFormat("tab", "all", "lf", "latin-1", "gzip", "", False, True)
    with pytest.raises(ValueError, match="delimiter 'colon'"):
        FileFormat.of({"delimiter": "colon"})


# --- file names -----------------------------------------------------------------------------

def test_the_file_name_macros_fill_in_the_day():
    assert file_name_for(DEFAULT_FILE_NAME, "Call center: partials!", 12, DAY) == "call-center-partials_12_20261127.csv"
    assert file_name_for("{yyyy}-{mm}-{dd}_{yyyymmdd}_{date}_{date:%d%b}.csv", "x", 3, date(2027, 1, 5)) \
        == "2027-01-05_20270105_2027-01-05_05Jan.csv"


def test_the_file_name_must_say_how_the_file_is_made():
    assert suffix_problem("a.csv.gz", FileFormat(compression="gzip")) is None
    assert suffix_problem("a.zip", FileFormat(compression="zip")) is None
    assert suffix_problem("a.csv.gz.pgp", FileFormat(compression="gzip", pgp_key="k")) is None
    assert "must end with .gz when Compression is gzip" in suffix_problem("a.csv", FileFormat(compression="gzip"))
    assert "must end with .pgp or .gpg" in suffix_problem("a.csv.gz", FileFormat(compression="gzip", pgp_key="k"))
    assert "ends with .gz, but Compression is none" in suffix_problem("a.csv.gz", FileFormat())


def settings_form(**data):
    form = type("Settings", (FileSettings,), {})(formdata=MultiDict(data))
    form.validate()
    return form


@pytest.mark.parametrize("data,field,message", [
    ({"compression": "gzip"}, "file_name", "File Name must end with .gz when Compression is gzip"),
    ({"file_name": "{date}.csv.gz"}, "file_name", "File Name ends with .gz, but Compression is none"),
    ({"file_name": "{customer}.csv"}, "file_name", "unknown macro {customer}"),
    ({"delimiter": "colon"}, "delimiter", "Not a valid choice"),
    ({"encoding": "utf-16"}, "encoding", "Not a valid choice"),
    ({"pgp_key": "hello", "file_name": "{date}.csv.pgp"}, "pgp_key", "PGP Public Key is not an armored public key"),
])
def test_bad_file_settings_are_named_beside_the_field(data, field, message):
    errors = settings_form(**data).errors
    assert list(errors) == [field] and message in errors[field][0]


def test_a_file_types_own_fields_come_first():
    from wtforms import StringField

    form = type("Settings", (FileSettings,), {"host": StringField("Host")})()
    names = [f.short_name for f in form]
    assert names[0] == "host" and names[1:4] == ["file_name", "send_at", "time_zone"]
    assert {"delimiter", "quoting", "line_ending", "encoding", "compression", "pgp_key"} <= set(names)


# --- PGP ------------------------------------------------------------------------------------

@pytest.fixture
def partner():
    from .pgp import Partner

    key = Partner()
    yield key
    key.close()


@pytest.mark.parametrize("compression", ["none", "gzip", "zip"])
def test_an_encrypted_file_decrypts_with_gpg_to_the_file_as_written(tmp_path, partner, compression):
    file_format = FileFormat(delimiter="pipe", compression=compression, pgp_key=partner.public_key)
    written = write_file(batch(tmp_path=tmp_path), file_format, "x.csv.pgp")
    data = open(written.path, "rb").read()
    assert "Zürich".encode() not in data and written.size == len(data)
    plain = partner.decrypt(data)
    if compression == "gzip":
        plain = gzip.decompress(plain)
    elif compression == "zip":
        plain = zipfile.ZipFile(io.BytesIO(plain)).read("x.csv")
    assert read_back(plain, file_format) == [COLUMNS] + values(ROWS)
    assert [p.name for p in tmp_path.iterdir()] == [written.path.rsplit("/", 1)[1]]  # no keyring left behind


def test_a_pasted_key_shows_its_fingerprint_and_expiry(partner):
    from exporter.export_types import pgp_key_info

    key = pgp_key_info(partner.public_key)
    assert key.fingerprint == partner.fingerprint and key.user_ids == ("Partner <partner@example.com>",)
    assert 364 <= key.days_left() <= 365
    form = settings_form(pgp_key=partner.public_key, file_name="{date}.csv.pgp")
    assert form.errors == {}
    assert form.pgp_key.description.startswith(f"Fingerprint {partner.fingerprint} (Partner <partner@example.com>); "
                                               f"expires on ")
    assert "(in 364 days)" in form.pgp_key.description


def test_an_expired_key_or_a_private_one_is_refused_at_save():
    from .pgp import Partner

    old = Partner(expires_in_days=5, made_days_ago=10, name="Old")
    try:
        errors = settings_form(pgp_key=old.public_key, file_name="{date}.csv.pgp").errors
        assert errors == {"pgp_key": [f"PGP Public Key {old.fingerprint} expired on "
                                      f"{(date.today() - __import__('datetime').timedelta(days=5)):%Y-%m-%d}: "
                                      f"ask the partner for a current key"]}
        secret = old.gpg("--armor", "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys").decode()
        errors = settings_form(pgp_key=secret, file_name="{date}.csv.pgp").errors
        assert "PGP Public Key is a private key" in errors["pgp_key"][0]
    finally:
        old.close()
