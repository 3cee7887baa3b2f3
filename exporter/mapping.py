"""The mapping engine: a profile's field mappings turn an order record into ordered pairs.

Plain Python, shared by every export type: the postback makes a query string of the
pairs, a file type a CSV row. Compile once per profile version, render many records.
"""
import functools
import hashlib
import operator
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from . import catalog, security
from .body_templates import as_flag, as_number

FORMATS = {
    "": "As is",
    "date": "Date pattern (strftime, e.g. %m/%d/%Y)",
    "digits": "Digits only",
    "upper": "UPPER CASE",
    "lower": "lower case",
    "sha256": "SHA-256 (hex)",
    # Text everywhere (a query string, a CSV cell); a JSON number or boolean in a JSON body.
    "number": "Number (a JSON number in JSON bodies)",
    "boolean": "Boolean (true/false)",
}
TYPED_FORMATS = {"number": as_number, "boolean": as_flag}

_NOT_DIGITS = re.compile(r"\D")
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
    secret: bool = False  # a Static Value stored encrypted: sent as it is, masked wherever shown


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
    if fmt in TYPED_FORMATS:  # an empty one too: null or false in a JSON body
        return TYPED_FORMATS[fmt](text)
    if not fmt or not text:
        return text
    if fmt == "digits":
        return _NOT_DIGITS.sub("", text)
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
    """Renders records with compiled mappings: record -> [(export_name, text), ...].

    The mappings become two small Python functions, generated once here (as namedtuple and
    dataclasses do): one reads a flat record (catalog.record_from_order's), the other,
    `from_order(order, event_type, card_number=None)`, an order as stored, with no record
    built in between: the same pairs as self(catalog.record_from_order(order, event_type,
    card_number)). Per record: one dict lookup per mapped field, nothing else looked up.
    """

    def __init__(self, mappings):
        self.mappings = tuple(mappings)
        self.columns = [m.export_name for m in self.mappings]
        # By position, never by Export Name: two mappings may share a name (a CSV header and a
        # query string both allow it), and masking must follow the mapping's field.
        self.fields = [m.field for m in self.mappings]
        self.sensitive = [field in catalog.SENSITIVE for field in self.fields]
        self.sensitive_columns = frozenset(m.export_name for m in self.mappings if m.field in catalog.SENSITIVE)
        self.secret = [m.secret for m in self.mappings]
        self.masks = any(self.sensitive) or any(self.secret)  # something to mask in what is shown or kept
        self.wants_card = any(m.field == "cardNumber" for m in self.mappings)
        # Expiry, ACH numbers: stored encrypted in the order (security.scrub_order), opened to render.
        self.opens_order = any(sensitive and field != "cardNumber" for field, sensitive in zip(self.fields, self.sensitive))
        self._from_record = _generate(self.mappings, _record_source)
        self.from_order = _generate(self.mappings, _order_source)  # a plain function: no method call
        # The same, values only ([text, ...]): a daily file's CSV rows need no names.
        self.values_from_order = _generate(self.mappings, _order_source, named=False)

    def __call__(self, record: Mapping[str, Any]):
        return self._from_record(record, None, None)

    def masked(self, row):
        """The row with each sensitive value masked (first 6 + last 4 of a card at most), and each
        secret Static Value as the mask."""
        if not self.masks:
            return row
        return [(name, value) for name, value in zip((name for name, _ in row),
                                                      self.masked_values([value for _, value in row]))]

    def masked_values(self, values):
        """masked() of a row of values only (values_from_order's)."""
        if not self.masks:
            return values
        return [security.MASK if secret else security.masked(value, field) if sensitive and value else value
                for value, field, sensitive, secret in zip(values, self.fields, self.sensitive, self.secret)]


# --- the generated render functions ---------------------------------------------------------
# Only repr()s of strings and names bound in the function's namespace go into the source:
# nothing an admin types is ever parsed as code.

def _record_source(field, read):
    return read(field)


def _order_source(field, read):
    """Where record_from_order would have put the field, read from the order itself."""
    if field == "eventType":
        return "event_type"
    if field == "cardNumber":
        return "(card_number or get('cardNumber'))"
    if field in ("productId", "productName"):
        return f"(_joined(products, {field!r}) if products else {read(field)})"
    return read(field)


def _joined(products, key):
    if len(products) == 1:  # most orders: no join to make
        value = products[0].get(key, "")
        return value if value.__class__ is str else str(value)
    return ",".join([str(p.get(key, "")) for p in products])


def _formatter(fmt, arg):
    """text -> text for one format, as apply_format does it (an empty value stays empty)."""
    if fmt in ("upper", "lower"):
        return getattr(str, fmt)
    if fmt == "digits":
        return functools.partial(_NOT_DIGITS.sub, "")
    return lambda text: apply_format(text, fmt, arg)


def _generate(mappings, source, named=True):
    """render(record, event_type, card_number) -> pairs (values only unless named): first reading
    record[key] (a record usually has every mapped field), and when one is missing, record.get(key)
    for each."""
    namespace = {"_to_text": _to_text, "_joined": _joined}

    def literal(value, name):  # a str as its repr; anything else bound by name
        if isinstance(value, str):
            return repr(value)
        namespace[name] = value
        return name

    def pairs(read):
        items = []
        for i, m in enumerate(mappings):
            name = literal(m.export_name, f"_name{i}")
            if m.field == catalog.STATIC:
                static = m.static_value or m.default_value
                if m.format in TYPED_FORMATS:  # a static number or boolean: typed once, here
                    namespace[f"_static{i}"] = TYPED_FORMATS[m.format](static)
                    items.append(item(name, f"_static{i}"))
                else:
                    items.append(item(name, literal(static, f'_static{i}')))
                continue
            # a str as it is, an int by str() (no call of ours: ids and prices are most of the rest)
            text = (f"(v if (c := (v := {source(m.field, read)}).__class__) is str "
                    f"else str(v) if c is int else _to_text(v))")
            if m.format:
                namespace[f"_format{i}"] = _formatter(m.format, m.format_arg)
                text = f"_format{i}({text})"
            if m.default_value != "":
                default = literal(m.default_value, f"_default{i}")
                if m.format in TYPED_FORMATS:  # the default is a number or boolean too
                    default = namespace[f"_default{i}"] = TYPED_FORMATS[m.format](m.default_value)
                    default = f"_default{i}"
                text = f"(t if (t := {text}) != '' else {default})"
            items.append(item(name, text))
        return "[" + ", ".join(items) + "]"

    def item(name, text):
        return f"({name}, {text})" if named else text

    fast, slow = pairs(lambda key: f"record[{key!r}]"), pairs(lambda key: f"get({key!r})")
    # Names made only where they are used: binding record.get costs as much as a mapped field.
    fast_needs = "get = record.get\n" if "get(" in fast else ""
    fast_needs += "products = record.get('products')\n" if "products" in fast else ""
    slow_needs = "" if "get(" in fast else "get = record.get\n"
    code = ("def render(record, event_type=None, card_number=None):\n"
            + "".join(f"    {line}\n" for line in fast_needs.splitlines())
            + f"    try:\n        return {fast}\n    except KeyError:\n"
            + "".join(f"        {line}\n" for line in slow_needs.splitlines())
            + f"        return {slow}\n")
    exec(code, namespace)  # noqa: S102 - see above: no admin text is code
    return namespace["render"]


def compile(mappings: Sequence[Any], secret_key=None) -> Renderer:  # noqa: A001 - the design's name
    """Validate mappings (model objects or dicts) and freeze them into a Renderer. A Static Value
    stored encrypted is decrypted with secret_key, to be sent; without a key (a preview) it is
    the mask."""
    validate(mappings)
    return Renderer(
        CompiledMapping(
            export_name=_attr(m, "export_name").strip(),
            field=_attr(m, "field"),
            static_value=_static_value(_attr(m, "static_value"), secret_key),
            format=_attr(m, "format"),
            format_arg=_attr(m, "format_arg"),
            default_value=_attr(m, "default_value"),
            secret=_attr(m, "static_value").startswith(security.ENCRYPTED_PREFIX),
        )
        for m in mappings
    )


def _static_value(value, secret_key):
    if not value.startswith(security.ENCRYPTED_PREFIX):
        return value
    return security.decrypt(secret_key, value) if secret_key else security.MASK


# --- compiled once per profile version --------------------------------------------------------
# The cache lives here, in each process, keyed on the mappings' content (not on the profile's
# updated_at): an edited mapping is a new key and renders anew, whatever touched the profile.

_ATTRS = ("export_name", "field", "static_value", "format", "format_arg", "default_value")
_content_of = operator.attrgetter(*_ATTRS)


def renderer_for(profile, secret_key=None) -> Renderer:
    """The renderer of a profile's mappings as they are now (anything with .mappings), cached;
    secret_key opens secret Static Values (see compile)."""
    return _cached(tuple(tuple(m.get(name) for name in _ATTRS) if isinstance(m, dict) else _content_of(m)
                         for m in profile.mappings), secret_key)


@functools.lru_cache(maxsize=512)
def _cached(content, secret_key):
    return compile([{name: value for name, value in zip(_ATTRS, m) if value is not None} for m in content],
                   secret_key)
