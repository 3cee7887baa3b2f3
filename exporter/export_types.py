"""The plugin contract for export types, and the registry that finds them by entry point.

A plugin imports only this module (and WTForms). The built-in types in plugins/ register
through the `exporter.export_types` entry-point group exactly as a third party's would.

Over 400 lines: the contract is one module by design (its path never moves, and plugins import
only it): the classes, the registry, and the file toolkit every file type shares.
"""
import contextlib
import csv
import functools
import gzip
import hashlib
import io
import logging
import os
import re
import shutil
import string
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from importlib.metadata import entry_points
from typing import Any, ClassVar, Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wtforms import BooleanField, Form, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.fields.core import UnboundField
from wtforms.validators import Length, Optional, ValidationError

# The body and answer toolkit is part of the contract too: any type may build bodies from the
# pairs, judge answers by response rules and capture a value, as the Postback type does.
from .body_templates import BODY_FORMATS, CONTENT_TYPES, BodyProblem, BodyTemplate, Flag, Number, TemplateProblem, build_body, check_template, check_xml_name, json_body, nested, typed, xml_body
from .response_rules import EXTRACTING, KINDS, ResponseRules, Rule, RuleProblem, Verdict, default_reason, rule_or_none

# The private-target guard is part of the contract: plugins import it from here. A type
# connects only to the address resolve_target checked (PinnedAdapter / pinned_session for HTTP).
from .security import PinnedAdapter, Target, TargetRefused, address_problem, check_target_host, check_target_url, parse_target, pinned_session, resolve_target

GROUP = "exporter.export_types"
PER_EVENT = "per_event"
DAILY_FILE = "daily_file"
# A daily-file type's Send At when a profile has none: after midnight, so late events get in.
DEFAULT_SEND_AT = "01:00"

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What one send carries: rows of (export_name, value) pairs in mapping order."""
    columns: list[str]
    rows: Iterable[list[tuple[str, str]]]
    profile_name: str
    idempotency_key: str
    route_id: int | None = None
    route_name: str = ""
    file_date: date | None = None
    is_test: bool = False
    # Settings that hold for every type and every send, from the core's configuration.
    allow_private_targets: bool = False
    # A private directory (mode 0700) for the send's temporary files, emptied of stale ones
    # before each daily file; empty: the system's temporary directory (a test send's sample).
    work_dir: str = ""


@dataclass
class Outcome:
    """What a send did: the request as sent, the answer as received, and whether it counts."""
    ok: bool
    method: str = ""
    target: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: str = ""
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    elapsed_ms: int | None = None
    error: str = ""
    retry_after: float | None = None
    # One line for the customer's history: "postback delivered (HTTP 200)".
    summary: str = ""
    # Anything else worth showing on the delivery page (file name, rows, bytes, checksum).
    details: dict[str, Any] = field(default_factory=dict)
    # The partner refused this export for good (a rejection rule held): no retry, status rejected.
    rejected: bool = False
    # A value taken from the answer (the partner's lead or conversion id): kept on the delivery,
    # named in the history message, and a reversal's original.captured_id.
    captured: str = ""


class ExportType:
    """Base class of every export type. Subclass, set the ClassVars, implement send()."""
    key: ClassVar[str]
    label: ClassVar[str]
    schedule: ClassVar[str] = PER_EVENT
    settings_form: ClassVar[type[Form]]
    secret_settings: ClassVar[tuple[str, ...]] = ()
    # Settings that hold a URL: its userinfo and credential-like query values are secrets (stored
    # encrypted, shown as ****); the type gets the whole URL, the screens only the masked one.
    url_settings: ClassVar[tuple[str, ...]] = ("url",)

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = dict(settings)

    def send(self, batch: Batch) -> Outcome:
        raise NotImplementedError

    def preview(self, columns, row) -> str:
        """What one rendered row looks like on the wire; a CSV header and row by default."""
        return csv_text(columns, [row])

    def describe(self) -> str:
        """A short description of the target for lists (a URL, host:port/dir)."""
        return ""

    # Optional: types that can check their target without sending define test_connection().
    test_connection = None

    def file_name(self, profile_name, route, day, is_test=False):
        """A daily-file type's name for the file of a route and day (the screens show the next
        one); from the File Name setting (FileSettings) by default. None: a per-event type."""
        if self.schedule != DAILY_FILE:
            return None
        name = file_name_for(self.settings.get("file_name") or DEFAULT_FILE_NAME, profile_name, route, day)
        return f"TEST_{name}" if is_test else name  # a Send test is never mistaken for a day's file

    def file_format(self, name=""):
        """How the type's file is written, from its FileSettings (see FileFormat.of)."""
        return FileFormat.of(self.settings, name)


# --- settings fields for bodies and answers, for a type's settings_form to inherit --------------

def _choices(items):
    return [SelectChoice(value, label) for value, label in items]


def _rule_check(kind_field):
    def check(form, field):
        try:
            rule_or_none(form[kind_field].data, field.data)
        except RuleProblem as exc:
            raise ValidationError(str(exc))
    return check


def _template_check(form, field):
    try:
        check_template(field.data or "", form.template_content_type.data or "application/json")
    except TemplateProblem as exc:
        raise ValidationError(f"Body Template {exc}")


def _root_check(form, field):
    try:
        check_xml_name(field.data or "lead")
    except BodyProblem as exc:
        raise ValidationError(str(exc))


class ToolkitFields(Form):
    """The toolkit's fields come after a type's own on its form: each subclass gets fresh copies
    (WTForms orders fields by when they were made), in the toolkit's order."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        inherited = {}
        for base in reversed(cls.__mro__[1:]):
            if base.__module__ == __name__:
                inherited.update({k: v for k, v in vars(base).items() if isinstance(v, UnboundField)})
        for name, unbound in sorted(inherited.items(), key=lambda kv: kv[1].creation_counter):
            if name not in vars(cls):
                setattr(cls, name, unbound.field_class(*unbound.args, **unbound.kwargs))


class BodyTemplateFields(ToolkitFields):
    """What a body format needs besides the pairs: XML's root element, a full template."""
    xml_root = StringField("XML Root Element", default="lead", validators=[Length(max=100), _root_check],
                           description="For an XML body: the document's root element. Export Names such as "
                                       "lead.contact.email nest, lead.@id is an attribute")
    body_template = TextAreaField("Body Template", validators=[Length(max=20_000), _template_check],
                                  description="For a template body (Jinja2 syntax, sandboxed): each mapped value is a "
                                              "variable ({{ first_name }}, {{ lead.contact.email }}, "
                                              "{{ values['first-name'] }}), escaped for the content type; "
                                              "|json writes a whole JSON value")
    template_content_type = SelectField("Template Content Type", choices=_choices(CONTENT_TYPES.items()),
                                        default="application/json")


class BodySettings(BodyTemplateFields):
    """BodyTemplateFields and the choice of body format, for a type with no method of its own."""
    body_format = SelectField("Body", choices=_choices(BODY_FORMATS.items()), default="json")


class ResponseRuleSettings(ToolkitFields):
    """Response rules and capture (response_rules.py): success, permanent rejection, the
    partner's reason, and a value to keep. ResponseRules.from_settings(settings) reads them."""
    success_rule = SelectField("Success Rule", choices=_choices(KINDS.items()), default="contains")
    success_text = StringField("Success Text", validators=[Length(max=500), _rule_check("success_rule")],
                               description='A 2xx answer succeeds only when this holds, e.g. SUCCESS, '
                                           '$.status == "accepted", /response/status == "ok" (empty: any 2xx)')
    reject_rule = SelectField("Rejection Rule", choices=_choices(KINDS.items()), default="contains")
    reject_text = StringField("Rejection Text", validators=[Length(max=500), _rule_check("reject_rule")],
                              description="When a 2xx or 4xx answer matches, the partner refused this export for "
                                          "good: status rejected, never retried (e.g. duplicate)")
    reason_rule = SelectField("Reason From", choices=_choices(EXTRACTING.items()), default="json")
    reason_text = StringField("Reason", validators=[Length(max=500), _rule_check("reason_rule")],
                              description="Where the partner says why, e.g. $.reason or err_msg=([^;]*) "
                                          "(empty: reason, err_msg, message or error when there)")
    capture_rule = SelectField("Capture From", choices=_choices(EXTRACTING.items()), default="json")
    capture_text = StringField("Capture", validators=[Length(max=500), _rule_check("capture_rule")],
                               description="A value to keep from a successful answer, e.g. $.lead_id: shown on the "
                                           "delivery, in the history, and a reversal's original.captured_id")



# --- files: CSV in a partner's dialect, compressed, encrypted ---------------------------------
# Every file type offers the same choices through FileSettings (below); FileFormat is what
# they say, write_file() writes a batch's rows by it. See docs/plugins.md, "Files".

DELIMITERS = {"comma": ",", "tab": "\t", "pipe": "|", "semicolon": ";"}
QUOTING = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_ALL}
LINE_ENDINGS = {"crlf": "\r\n", "lf": "\n"}
ENCODINGS = {"utf-8": "UTF-8", "utf-8-bom": "UTF-8 with BOM", "latin-1": "Latin-1"}
COMPRESSIONS = {"none": "", "gzip": ".gz", "zip": ".zip"}
PGP_SUFFIXES = (".pgp", ".gpg")
# gzip's own default: the level partners' tools and the gzip command use; 9 costs twice the time for 1-2 %.
COMPRESS_LEVEL = 6


class FileEncodingError(ValueError):
    """A value the file's encoding cannot hold: the row (1 is the first after the header; 0 the
    header) and the column are named, so the delivery page says what to correct."""

    def __init__(self, row, column, char, encoding):
        where = "the header row" if row == 0 else f"row {row}"
        super().__init__(f"{where}, column {column}: the character {char!r} (U+{ord(char):04X}) cannot be written "
                         f"in {ENCODINGS.get(encoding, encoding)}: correct the value, or choose the Encoding UTF-8")
        self.row, self.column = row, column


@dataclass(frozen=True)
class FileFormat:
    """How a file is written: its CSV dialect, encoding, compression and PGP key (empty: none)."""
    delimiter: str = "comma"
    quoting: str = "minimal"
    line_ending: str = "crlf"
    encoding: str = "utf-8"
    compression: str = "none"
    pgp_key: str = ""
    header: bool = True
    neutralise: bool = False
    member: str = "data.csv"  # the CSV's name inside a zip archive

    @classmethod
    def of(cls, settings, name=""):
        """The format FileSettings' fields stored (a setting left out takes its default);
        `name`, the file's name, names the CSV inside a zip."""
        s = settings or {}

        def pick(key, allowed):
            value = s.get(key) or getattr(cls, key)
            if value not in allowed:
                raise ValueError(f"{key} {value!r} is not one of {', '.join(allowed)}")
            return value

        return cls(pick("delimiter", DELIMITERS), pick("quoting", QUOTING), pick("line_ending", LINE_ENDINGS),
                   pick("encoding", ENCODINGS), pick("compression", COMPRESSIONS),
                   (s.get("pgp_key") or "").strip(), bool(s.get("header_row", True)),
                   bool(s.get("neutralise_formulas", False)), zip_member(name) if name else cls.member)

    def writer_options(self):
        return {"delimiter": DELIMITERS[self.delimiter], "quoting": QUOTING[self.quoting],
                "lineterminator": LINE_ENDINGS[self.line_ending]}

    @property
    def codec(self):
        """Python's name of the encoding (the BOM is written by open_text, not by the codec)."""
        return "latin-1" if self.encoding == "latin-1" else "utf-8"

    @property
    def unencrypted(self):
        """The same file before encryption: the copy kept for download is written so."""
        return replace(self, pgp_key="")


RFC_4180 = FileFormat()


def csv_writer(f, file_format=None):
    """A csv.writer in the format's dialect; RFC 4180 by default: comma, double quotes doubled,
    CRLF after every record (open f with newline="")."""
    return csv.writer(f, **(file_format or RFC_4180).writer_options())


# A cell a spreadsheet would run as a formula starts with one of these (OWASP's list).
FORMULA_STARTS = frozenset("=+-@\t\r")
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def neutralised(value) -> str:
    """The value as a spreadsheet shows it but never runs it: a leading apostrophe before = + - @
    tab or CR. A plain number (-49.95, +1e3) is left as it is: it is no formula."""
    if value is None:
        return ""
    text = value if value.__class__ is str else str(value)  # most cells are already text
    if text and text[0] in FORMULA_STARTS and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class CsvRows:
    """Rows that write themselves as CSV, for write_csv (a daily file's: the core writes the copy
    it keeps in the same pass). Iterated, they are rows like any other."""

    def write_csv(self, f, columns, header=True, neutralise=False, file_format=None) -> int:
        raise NotImplementedError


def write_csv(f, columns, rows, header=True, neutralise=False, file_format=None) -> int:
    """Rows of (export_name, value) pairs as CSV into an open text file; the number of rows.
    neutralise: spreadsheet formulas are neutralised in every cell (see neutralised()).
    file_format: the dialect (RFC 4180 when None); a cell the file's encoding cannot hold
    raises FileEncodingError naming its row and column."""
    if isinstance(rows, CsvRows):  # the same bytes, written by the rows in one pass
        return rows.write_csv(f, columns, header, neutralise, file_format)
    writer, count, number = csv_writer(f, file_format), 0, 0
    cell = neutralised if neutralise else (lambda value: value)
    cells = [cell(name) for name in columns]
    try:
        if header:
            writer.writerow(cells)
        for row in rows:
            number = count + 1
            cells = [cell(value) for _, value in row]
            writer.writerow(cells)
            count += 1
    except UnicodeEncodeError as exc:  # the row being written is the one
        raise encoding_error(cells, columns, number, exc) from None
    return count


def encoding_error(cells, columns, row, exc):
    """The FileEncodingError of a row whose write raised exc (UnicodeEncodeError)."""
    for column, value in zip(columns, cells):
        for char in str(value):
            try:
                char.encode(exc.encoding)
            except UnicodeEncodeError:
                return FileEncodingError(row, column, char, exc.encoding)
    char = exc.object[exc.start]
    return FileEncodingError(row, "?", char, exc.encoding)


def csv_text(columns, rows, header=True, neutralise=False, file_format=None) -> str:
    """The same CSV as a string, for previews."""
    buf = io.StringIO(newline="")
    write_csv(buf, columns, rows, header, neutralise, file_format)
    return buf.getvalue()


@contextlib.contextmanager
def open_text(raw, file_format):
    """A text file writing into the binary file `raw` in the format's encoding (a BOM first for
    UTF-8 with BOM), compressed as it says (gzip, or a zip archive holding file_format.member).
    Leaves raw open."""
    with contextlib.ExitStack() as stack:
        stream = raw
        if file_format.compression == "gzip":
            stream = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                       compresslevel=COMPRESS_LEVEL, mtime=0))
        elif file_format.compression == "zip":
            archive = stack.enter_context(zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED,
                                                          compresslevel=COMPRESS_LEVEL))
            info = zipfile.ZipInfo(file_format.member, date_time=datetime.now().timetuple()[:6])
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            stream = stack.enter_context(archive.open(info, "w", force_zip64=True))
        text = io.TextIOWrapper(stream, encoding=file_format.codec, errors="strict", newline="")
        try:
            if file_format.encoding == "utf-8-bom":
                text.write("\ufeff")
            yield text
        finally:
            text.detach()  # flushes; the stack closes the compressor, never raw


def zip_member(name):
    """The CSV's name inside a zip archive named `name`: the name less .pgp and .zip (.csv added
    when nothing is left of an extension)."""
    base = name
    for suffix in (*PGP_SUFFIXES, ".zip"):
        base = base.removesuffix(suffix)
    return base if "." in base.lstrip(".") else f"{base or 'data'}.csv"


@dataclass
class WrittenFile:
    """A file write_file() made: its temporary path (the caller removes it), rows, bytes, SHA-256."""
    path: str
    rows: int
    size: int
    sha256: str


def write_file(batch, file_format, name="") -> WrittenFile:
    """The batch's rows as the format's file (CSV, then compressed, then encrypted to its PGP
    key), in a new temporary file of batch.work_dir (mode 0600: it may hold card numbers).
    `name` is the file's name (a zip's CSV is named after it). The rows are closed at the end,
    read whole or not. Raises FileEncodingError (a value the encoding cannot hold) or
    PgpKeyError (a key gpg will not encrypt to): say it in the Outcome's error."""
    file_format = replace(file_format, member=zip_member(name)) if name else file_format
    fd, path = tempfile.mkstemp(prefix="exporter-", suffix=".part", dir=batch.work_dir or None)
    try:
        with open(fd, "wb") as raw:
            with open_text(raw, file_format) as f:
                rows = write_csv(f, batch.columns, batch.rows, file_format.header, file_format.neutralise, file_format)
        if file_format.pgp_key:
            pgp_encrypt(path, file_format.pgp_key, compressed=file_format.compression != "none")
        return WrittenFile(path, rows, os.path.getsize(path), file_sha256(path))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    finally:
        close = getattr(batch.rows, "close", None)
        if close:
            close()  # a stream from the database ends here, read whole or not


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- PGP: python-gnupg driving GnuPG, in a keyring of its own made for each use -----------------

class PgpKeyError(ValueError):
    """A pasted key gpg cannot encrypt to: not a public key, several, expired, no encryption key."""


@dataclass(frozen=True)
class PgpKey:
    fingerprint: str
    user_ids: tuple[str, ...]
    expires: datetime | None  # UTC; None: never

    def days_left(self, now=None):
        if self.expires is None:
            return None
        return (self.expires - (now or datetime.now(timezone.utc))).total_seconds() / 86400

    def describe(self, now=None):
        left = self.days_left(now)
        when = "never expires" if left is None else (
            f"expired on {self.expires:%Y-%m-%d}" if left <= 0 else
            f"expires on {self.expires:%Y-%m-%d %H:%M} UTC (in {int(left)} day{'' if int(left) == 1 else 's'})")
        return f"Fingerprint {self.fingerprint} ({', '.join(self.user_ids) or 'no user id'}); {when}."


@contextlib.contextmanager
def _keyring(armored, work_dir=None):
    """gpg (python-gnupg) over a new keyring holding only this key; removed afterwards."""
    import gnupg  # only the files that encrypt pay for it

    home = tempfile.mkdtemp(prefix="gpg-", dir=work_dir or None)
    try:
        try:
            gpg = gnupg.GPG(gnupghome=home, options=["--no-autostart"])
        except OSError as exc:
            raise PgpKeyError(f"GnuPG (gpg) cannot run here: {exc}") from None
        result = gpg.import_keys(armored)
        if not result.fingerprints:
            raise PgpKeyError("is not an OpenPGP public key gpg can read: paste the whole block, from "
                              "-----BEGIN PGP PUBLIC KEY BLOCK----- to its END line")
        yield gpg
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _utc(epoch):
    return datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else None


@functools.lru_cache(maxsize=64)
def pgp_key_info(armored) -> PgpKey:
    """The pasted key's fingerprint, user ids and expiry (the earlier of its primary key's and
    its newest encryption subkey's); PgpKeyError when it is not one public key with an
    encryption key."""
    text = (armored or "").strip()
    if "PRIVATE KEY" in text:
        raise PgpKeyError("is a private key: paste the partner's public key, and never a private one")
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in text:
        raise PgpKeyError("is not an armored public key: paste the block from -----BEGIN PGP PUBLIC KEY BLOCK----- "
                          "to its END line")
    with _keyring(text) as gpg:
        keys = gpg.list_keys()
    if len(keys) != 1:
        raise PgpKeyError(f"holds {len(keys)} keys: paste the partner's one key")
    key = keys[0]
    subkeys = [info for info in (key.get("subkey_info") or {}).values()
               if "e" in (info.get("cap") or "") and info.get("trust") != "r"]
    if "e" in "".join(c for c in key.get("cap") or "" if c.islower()):
        subkeys.append(key)  # a primary key that encrypts itself (an old RSA key without subkeys)
    if not subkeys:
        raise PgpKeyError(f"{key['fingerprint']} has no encryption key: ask the partner for their encryption key")
    ends = [_utc(info.get("expires")) for info in subkeys]
    sub_end = None if None in ends else max(ends)
    ends = [end for end in (_utc(key.get("expires")), sub_end) if end is not None]
    return PgpKey(key["fingerprint"], tuple(key.get("uids") or ()), min(ends) if ends else None)


def check_pgp_key(armored, now=None) -> PgpKey:
    """pgp_key_info(), refusing a key that has expired."""
    key = pgp_key_info((armored or "").strip())
    left = key.days_left(now)
    if left is not None and left <= 0:
        raise PgpKeyError(f"{key.fingerprint} expired on {key.expires:%Y-%m-%d}: ask the partner for a current key")
    return key


def pgp_encrypt(path, armored, compressed=False):
    """Replace the file at path by its encryption to the key (binary OpenPGP). gpg's own
    compression is left off for a file compressed already: it would only cost time."""
    key = check_pgp_key(armored)
    out = path + ".pgp"
    with _keyring(armored.strip(), os.path.dirname(path)) as gpg, open(path, "rb") as f:
        result = gpg.encrypt_file(f, [key.fingerprint], always_trust=True, armor=False, output=out,
                                  extra_args=["--compress-algo", "none"] if compressed else None)
    if not result.ok:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
        raise PgpKeyError(f"gpg could not encrypt to {key.fingerprint}: {result.status or result.stderr.strip()}")
    os.chmod(out, 0o600)
    os.replace(out, path)


# --- file names -----------------------------------------------------------------------------

DEFAULT_FILE_NAME = "{profile}_{route}_{date:%Y%m%d}.csv"
FILE_NAME_MACROS = ("profile", "route", "date", "yyyy", "mm", "dd", "yyyymmdd")
FILE_NAME_HELP = ("Macros: {profile} the Profile Name as a slug (call-center-partials), {route} the route's id, "
                  "and the file's day in the Time Zone: {yyyymmdd} (20261127), {yyyy}, {mm}, {dd}, "
                  "{date} (2026-11-27) or {date:%Y%m%d} in any strftime pattern. End it with .gz or .zip "
                  "for a compressed file, then .pgp or .gpg when it is encrypted.")


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def file_name_for(pattern, profile, route, day):
    """The pattern with its macros filled; ValueError says what is wrong with a pattern."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid pattern: {exc}") from None
    for name in fields:
        if name not in FILE_NAME_MACROS:  # also refuses {date.year}, {0}, {profile[0]}: plain names only
            raise ValueError(f"unknown macro {{{name}}}: use {', '.join('{%s}' % m for m in FILE_NAME_MACROS)}")
    try:
        name = pattern.format(profile=slug(profile), route=slug(route), date=day, yyyy=f"{day:%Y}",
                              mm=f"{day:%m}", dd=f"{day:%d}", yyyymmdd=f"{day:%Y%m%d}")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid pattern: {exc}") from None
    if any(c in name for c in "\r\n\x00"):
        raise ValueError("must not contain a line break (CR, LF) or NUL: the server would read a second command")
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError("must make a file name (no / or \\)")
    return name


def suffix_problem(name, file_format):
    """Why a file name does not say what the file is (.gz, .zip, .pgp), or None."""
    rest, pgp = name, bool(file_format.pgp_key)
    if pgp:
        if not rest.endswith(PGP_SUFFIXES):
            return "must end with .pgp or .gpg when a PGP Public Key is set (e.g. ..._{yyyymmdd}.csv.gz.pgp)"
        rest = rest[:-4]
    wanted = COMPRESSIONS[file_format.compression]
    then = " before .pgp" if pgp else ""
    if wanted and not rest.endswith(wanted):
        return f"must end with {wanted}{then} when Compression is {file_format.compression}"
    for suffix in COMPRESSIONS.values():
        if suffix and suffix != wanted and rest.endswith(suffix):
            return f"ends with {suffix}, but Compression is {file_format.compression}"
    return None


# --- the settings every file type offers ----------------------------------------------------

def _time_of_day(form, field):
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", (field.data or "").strip()):
        raise ValidationError("Send At is a time of day as HH:MM (24-hour), e.g. 01:00")


def _time_zone(form, field):
    try:
        ZoneInfo((field.data or "").strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{field.data!r} is not an IANA time zone (e.g. America/New_York, UTC)")


def _pgp_key(form, field):
    if (field.data or "").strip():
        try:
            check_pgp_key(field.data)
        except PgpKeyError as exc:
            raise ValidationError(f"PGP Public Key {exc}")


def _file_fields():
    """FileSettings' fields, made anew for each subclass so that they come after its own."""
    return {
        # Empty: the default name, which validate_file_name checks too (against the compression).
        "file_name": StringField("File Name", default=DEFAULT_FILE_NAME, description=FILE_NAME_HELP),
        "send_at": StringField("Send At", default=DEFAULT_SEND_AT, render_kw={"type": "time"},
                               validators=[Optional(), _time_of_day],
                               description="Each day at this time (HH:MM, in the Time Zone) the file of the day "
                                           f"before is sent. Empty: {DEFAULT_SEND_AT}."),
        "time_zone": StringField("Time Zone", default="UTC", validators=[Optional(), _time_zone],
                                 description="An IANA name, e.g. America/New_York. A day runs midnight to midnight "
                                             "here. Empty: UTC."),
        "send_empty": BooleanField("Send Empty Files", default=False,
                                   description="Send a file even on a day without rows."),
        "header_row": BooleanField("Header Row", default=True, description="First line: the Export Names."),
        "neutralise_formulas": BooleanField(
            "Neutralise Spreadsheet Formulas", default=True,
            description="A value starting with = + - @ (not a plain number) gets a leading ' so that a spreadsheet "
                        "shows it instead of running it as a formula."),
        "delimiter": SelectField("Delimiter", default="comma", choices=[
            SelectChoice("comma", "Comma (,)"), SelectChoice("tab", "Tab"), SelectChoice("pipe", "Pipe (|)"), SelectChoice("semicolon", "Semicolon (;)")]),
        "quoting": SelectField("Quoting", default="minimal", choices=[
            SelectChoice("minimal", "Minimal: only values that need it"), SelectChoice("all", "All values")]),
        "line_ending": SelectField("Line Endings", default="crlf", choices=[
            SelectChoice("crlf", "CRLF (Windows, RFC 4180)"), SelectChoice("lf", "LF (Unix)")]),
        "encoding": SelectField("Encoding", default="utf-8", choices=[SelectChoice(k, v) for k, v in ENCODINGS.items()],
                                description="UTF-8 with BOM is what Excel needs to read UTF-8. A value Latin-1 "
                                            "cannot hold stops the file, naming its row and column."),
        "compression": SelectField("Compression", default="none", choices=[
            SelectChoice("none", "None"), SelectChoice("gzip", "gzip (.gz)"), SelectChoice("zip", "zip (.zip)")],
            description="The File Name ends with .gz or .zip to match."),
        "pgp_key": TextAreaField("PGP Public Key", validators=[Optional(), _pgp_key], render_kw={"rows": 4},
                                 description="The partner's armored public key: files are encrypted to it "
                                             "(the File Name ends with .pgp or .gpg). Empty: not encrypted."),
    }


class FileSettings(Form):
    """The settings of a daily file: name, schedule, and how it is written (FileFormat.of reads
    them). Subclass it for a file type's settings form: its fields come after the subclass's own."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, unbound in _file_fields().items():
            setattr(cls, name, unbound)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        text = (self.pgp_key.data or "").strip()
        if text:  # the stored key's fingerprint and expiry, shown beside it
            with contextlib.suppress(PgpKeyError):
                self.pgp_key.description = pgp_key_info(text).describe()

    def validate_file_name(self, field):
        pattern = field.data or DEFAULT_FILE_NAME
        try:
            name = file_name_for(pattern, "Call center partials", 1, date(2026, 11, 27))
        except ValueError as exc:
            raise ValidationError(f"File Name {exc}")
        try:
            file_format = FileFormat.of(self.data)
        except ValueError:
            return  # a choice no select offers: its own field says so
        problem = suffix_problem(name, file_format)
        if problem:
            raise ValidationError(f"File Name {problem}")


for _name, _unbound in _file_fields().items():
    setattr(FileSettings, _name, _unbound)


@dataclass
class Registered:
    key: str
    package: str
    version: str
    status: str  # "ok" or the reason the type is not available
    cls: type[ExportType] | None = None


class Registry:
    """Export types found through entry points, and what went wrong with the rest."""

    def __init__(self, entries: list[Registered]):
        self.entries = entries
        self.types = {e.key: e.cls for e in entries if e.status == "ok"}

    def get(self, key) -> type[ExportType] | None:
        return self.types.get(key)

    def choices(self):
        return [(key, cls.label) for key, cls in sorted(self.types.items(), key=lambda kv: kv[1].label)]


def _check(cls, name):
    if not (isinstance(cls, type) and issubclass(cls, ExportType)):
        return "does not subclass exporter.export_types.ExportType"
    if getattr(cls, "key", None) != name:
        return f"its key {getattr(cls, 'key', None)!r} differs from the entry-point name {name!r}"
    if cls.schedule not in (PER_EVENT, DAILY_FILE):
        return f"unknown schedule {cls.schedule!r}"
    if not (isinstance(getattr(cls, "settings_form", None), type) and issubclass(cls.settings_form, Form)):
        return "settings_form is not a WTForms Form"
    return "ok"


def discover(eps=None) -> Registry:
    """Load every entry point of the group; a broken one is reported, never fatal."""
    eps = entry_points(group=GROUP) if eps is None else eps
    found, keys = [], {}
    for ep in sorted(eps, key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        package = dist.name if dist else ep.value.split(":")[0]
        version = dist.version if dist else ""
        try:
            cls = ep.load()
            status = _check(cls, ep.name)
        except Exception as exc:  # a broken plugin must not stop the app
            log.exception("export type %s failed to load", ep.name)
            cls, status = None, f"failed to import: {type(exc).__name__}: {exc}"
        if status == "ok" and ep.name in keys:
            status = f"duplicate key: {keys[ep.name]} already registers {ep.name!r}"
            cls = None
        elif status == "ok":
            keys[ep.name] = package
        found.append(Registered(ep.name, package, version, status, cls if status == "ok" else None))
    return Registry(found)
