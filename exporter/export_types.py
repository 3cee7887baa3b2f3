"""The plugin contract for export types, and the registry that finds them by entry point.

A plugin imports only this module (and WTForms). The built-in types in plugins/ register
through the `exporter.export_types` entry-point group exactly as a third party's would.
"""
import csv
import io
import logging
import re
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import entry_points
from typing import Any, ClassVar, Iterable, Mapping

from wtforms import Form, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.fields.core import UnboundField
from wtforms.validators import Length, ValidationError

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


# --- CSV, as every file type writes it -------------------------------------------------------

def csv_writer(f):
    """RFC 4180: comma, double quotes doubled, CRLF after every record (open f with newline="")."""
    return csv.writer(f, lineterminator="\r\n")


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

    def write_csv(self, f, columns, header=True, neutralise=False) -> int:
        raise NotImplementedError


def write_csv(f, columns, rows, header=True, neutralise=False) -> int:
    """Rows of (export_name, value) pairs as CSV into an open text file; the number of rows.
    neutralise: spreadsheet formulas are neutralised in every cell (see neutralised())."""
    if isinstance(rows, CsvRows):  # the same bytes, written by the rows in one pass
        return rows.write_csv(f, columns, header, neutralise)
    writer, count = csv_writer(f), 0
    cell = neutralised if neutralise else (lambda value: value)
    if header:
        writer.writerow([cell(name) for name in columns])
    for row in rows:
        writer.writerow([cell(value) for _, value in row])
        count += 1
    return count


def csv_text(columns, rows, header=True, neutralise=False) -> str:
    """The same CSV as a string, for previews."""
    buf = io.StringIO(newline="")
    write_csv(buf, columns, rows, header, neutralise)
    return buf.getvalue()


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
