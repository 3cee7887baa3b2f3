"""The mapping engine: a profile's field mappings turn an order record into ordered pairs.

Plain Python, shared by every export type: the postback makes a query string of the
pairs, a file type a CSV row. Compile once per profile version, render many records.
"""
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from . import catalog, security

FORMATS = {
    "": "As is",
    "date": "Date pattern (strftime, e.g. %m/%d/%Y)",
    "digits": "Digits only",
    "upper": "UPPER CASE",
    "lower": "lower case",
    "sha256": "SHA-256 (hex)",
}

_DATE_INPUTS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d", "%m/%d/%Y")


class MappingError(ValueError):
    """A mapping that cannot be compiled; `field` names the offending attribute."""

    def __init__(self, index, field, message):
        super().__init__(f"mapping {index + 1}: {field}: {message}")
        self.index, self.field, self.message = index, field, message


@dataclass(frozen=True)
class CompiledMapping:
    export_name: str
    field: str
    static_value: str = ""
    format: str = ""
    format_arg: str = ""
    default_value: str = ""


def _attr(m, name, default=""):
    value = m.get(name, default) if isinstance(m, Mapping) else getattr(m, name, default)
    return default if value is None else value


def _to_text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(_to_text(v) for v in value)
    return str(value)


def _parse_date(text):
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for pattern in _DATE_INPUTS:
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    return None


def apply_format(text, fmt, arg=""):
    """One value through one format; a value the format cannot read is left as it is."""
    if not fmt or not text:
        return text
    if fmt == "digits":
        return re.sub(r"\D", "", text)
    if fmt == "upper":
        return text.upper()
    if fmt == "lower":
        return text.lower()
    if fmt == "sha256":
        return hashlib.sha256(text.encode()).hexdigest()
    if fmt == "date":
        parsed = _parse_date(text)
        return parsed.strftime(arg) if parsed and arg else text
    raise ValueError(f"unknown format {fmt!r}")


def validate(mappings: Sequence[Any]):
    """Check mappings against the catalog; raise MappingError naming the first bad one."""
    for i, m in enumerate(mappings):
        name, field = _attr(m, "export_name").strip(), _attr(m, "field")
        if not name:
            raise MappingError(i, "export_name", "Export Name is required")
        if field == catalog.STATIC:
            if _attr(m, "static_value") == "":
                raise MappingError(i, "static_value", "Static needs a Static Value")
        elif not catalog.is_field(field):
            raise MappingError(i, "field", f"{field!r} is not in the field catalog")
        fmt = _attr(m, "format")
        if fmt not in FORMATS:
            raise MappingError(i, "format", f"unknown format {fmt!r}")
        if fmt == "date" and not _attr(m, "format_arg"):
            raise MappingError(i, "format_arg", "a date format needs a pattern")


class Renderer:
    """Renders records with compiled mappings: record -> [(export_name, text), ...]."""

    def __init__(self, mappings):
        self.mappings = tuple(mappings)
        self.columns = [m.export_name for m in self.mappings]
        # By position, never by Export Name: two mappings may share a name (a CSV header and a
        # query string both allow it), and masking must follow the mapping's field.
        self.fields = [m.field for m in self.mappings]
        self.sensitive = [field in catalog.SENSITIVE for field in self.fields]
        self.sensitive_columns = frozenset(m.export_name for m in self.mappings if m.field in catalog.SENSITIVE)

    def __call__(self, record: Mapping[str, Any]):
        return [(m.export_name, self._value(m, record)) for m in self.mappings]

    def masked(self, row):
        """The row with each sensitive value masked (first 6 + last 4 of a card at most)."""
        return [(name, security.masked(value, field) if sensitive and value else value)
                for (name, value), field, sensitive in zip(row, self.fields, self.sensitive)]

    @staticmethod
    def _value(m, record):
        if m.field == catalog.STATIC:
            text = m.static_value
        else:
            text = apply_format(_to_text(record.get(m.field)), m.format, m.format_arg)
        return text if text != "" else m.default_value


def compile(mappings: Sequence[Any]) -> Renderer:  # noqa: A001 - the design's name
    """Validate mappings (model objects or dicts) and freeze them into a Renderer."""
    validate(mappings)
    return Renderer(
        CompiledMapping(
            export_name=_attr(m, "export_name").strip(),
            field=_attr(m, "field"),
            static_value=_attr(m, "static_value"),
            format=_attr(m, "format"),
            format_arg=_attr(m, "format_arg"),
            default_value=_attr(m, "default_value"),
        )
        for m in mappings
    )
