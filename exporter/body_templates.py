"""Body templates: a request body built from a row's (Export Name, value) pairs, for any type.

Part of the plugin contract's toolkit (exporter.export_types re-exports it): nested JSON from
dotted and indexed Export Names, XML with a root element and @attributes, or a full Jinja2
template in a sandbox whose output size and render time are bounded. Plain Python: no Flask.

Over 400 lines: three builders (nested JSON, XML, a sandboxed Jinja2 template) share the
Export Name paths, typed values and the limits; each is short.
"""
import json
import math
import re
import sys
import threading
import time
from urllib.parse import quote_plus

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

# --- typed values: text that knows it is a number or a boolean -------------------------------
# A mapping's "number" and "boolean" formats make these. They are str, so a query string or a
# CSV cell is unchanged; the JSON builder and templates see the number or the boolean.


class Number(str):
    """A value formatted as a number: a JSON number in a JSON body ("" is null)."""
    __slots__ = ()

    def typed(self):
        text = self.strip()
        if not text:
            return None
        if re.fullmatch(r"-?[0-9]+", text):
            return int(text)
        try:
            value = float(text)
        except ValueError:
            return str(self)
        return value if math.isfinite(value) else str(self)


TRUE_WORDS = frozenset({"1", "true", "yes", "y", "on", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "off", "f", ""})


class Flag(str):
    """A value formatted as a boolean: true or false in a JSON body."""
    __slots__ = ()

    def typed(self):
        word = self.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return str(self)


def typed(value):
    """The JSON value of a row's value: a Number or Flag's number or boolean, else the text."""
    return value.typed() if isinstance(value, (Number, Flag)) else value


def as_number(text):
    """The "number" format: the text as a plain number ("1,234.50" -> 1234.50); unreadable text
    is left as it is (and sent as a string)."""
    text = (text or "").strip()
    if re.fullmatch(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", text):
        return Number(text)
    try:
        value = float(text.replace(",", "").lstrip("$"))
    except ValueError:
        return Number(text)
    if not math.isfinite(value):
        return Number(text)
    return Number(str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value))


def as_flag(text):
    """The "boolean" format: true or false (text that is neither is left as it is)."""
    word = (text or "").strip().lower()
    return Flag("true" if word in TRUE_WORDS else "false" if word in FALSE_WORDS else text)


# --- Export Names as paths ----------------------------------------------------------------------

class BodyProblem(ValueError):
    """A row that cannot become the body; the message names the Export Name."""


MAX_INDEX = 999
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[[0-9]+\])*)")


def path_of(name):
    """'lead.phones[0]' -> ['lead', 'phones', 0]; BodyProblem when it is no path."""
    steps = []
    for part in name.split("."):
        match = _SEGMENT.fullmatch(part)
        if not match:
            raise BodyProblem(f"Export Name {name!r}: not a path (write e.g. lead.contact.email or lead.phones[0])")
        steps.append(match.group(1))
        for index in re.findall(r"\[([0-9]+)\]", match.group(2)):
            if int(index) > MAX_INDEX:
                raise BodyProblem(f"Export Name {name!r}: index {index} is over {MAX_INDEX}")
            steps.append(int(index))
    return steps


_HOLE = object()


def _child(container, step, next_step, name):
    """The container under step, made as the next step needs (a dict for a name, a list for an index)."""
    want = list if isinstance(next_step, int) else dict
    if isinstance(step, int):
        container.extend([_HOLE] * (step + 1 - len(container)))
        current = container[step]
        if current is _HOLE:
            current = container[step] = want()
    else:
        current = container.setdefault(step, want())
    if not isinstance(current, want):
        raise BodyProblem(f"Export Name {name!r} conflicts with another Export Name ({_shape(current)} already there)")
    return current


def _shape(value):
    return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else "a value"


def _put(root, steps, value, name):
    container = root
    for step, next_step in zip(steps, steps[1:]):
        if isinstance(step, int) and not isinstance(container, list) or isinstance(step, str) and isinstance(container, list):
            raise BodyProblem(f"Export Name {name!r} conflicts with another Export Name")
        container = _child(container, step, next_step, name)
    last = steps[-1]
    if isinstance(last, int):
        container.extend([_HOLE] * (last + 1 - len(container)))
    if isinstance(container[last] if isinstance(last, int) else container.get(last), (dict, list)):
        raise BodyProblem(f"Export Name {name!r} conflicts with another Export Name (an object or list already there)")
    container[last] = value  # a repeated Export Name keeps its last value, as the flat JSON does


def _no_holes(value, where=""):
    if isinstance(value, dict):
        for key, item in value.items():
            _no_holes(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if item is _HOLE:
                raise BodyProblem(f"{where}[{i}] is not mapped, but a later index of {where} is")
            _no_holes(item, f"{where}[{i}]")


def nested(pairs):
    """The pairs as one JSON object, nested by their Export Names' paths, values typed."""
    root = {}
    for name, value in pairs:
        _put(root, path_of(name), typed(value), name)
    _no_holes(root)
    return root


def json_body(pairs):
    """Nested JSON (UTF-8, keys in mapping order)."""
    return json.dumps(nested(pairs), ensure_ascii=False)


# --- XML ----------------------------------------------------------------------------------------

_NAME_START = r"A-Z_a-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C-\u200D\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD"
XML_NAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\u00B7\u0300-\u036F\u203F-\u2040]*")
# Characters XML 1.0 cannot carry at all: each becomes U+FFFD.
_NOT_XML = re.compile("[^\u0009\u000A\u000D\u0020-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_ATTR_ESCAPES = {**_TEXT_ESCAPES, '"': "&quot;", "\t": "&#9;", "\n": "&#10;"}
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTR_SPECIAL = re.compile("[&<>\r\"\t\n]")


def xml_text(value):
    """Text as XML element content: escaped, and \\r kept (a parser would make it \\n)."""
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group()], _NOT_XML.sub("\uFFFD", str(value)))


def xml_attribute(value):
    """Text as a double-quoted attribute value: tab and line breaks survive normalisation."""
    return _ATTR_SPECIAL.sub(lambda m: _ATTR_ESCAPES[m.group()], _NOT_XML.sub("\uFFFD", str(value)))


class _Element:
    __slots__ = ("tag", "attributes", "children", "text")

    def __init__(self, tag):
        self.tag, self.attributes, self.children, self.text = tag, {}, {}, None

    def write(self, out):
        attributes = "".join(f' {k}="{xml_attribute(v)}"' for k, v in self.attributes.items())
        out.append(f"<{self.tag}{attributes}>")
        if self.text is not None:
            out.append(xml_text(self.text))
        for elements in self.children.values():
            for element in elements:
                element.write(out)
        out.append(f"</{self.tag}>")


def _xml_value(value):
    value = typed(value)
    if value is None:
        return ""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def check_xml_name(name, what="XML root element"):
    if not XML_NAME.fullmatch(name or "") or name.lower().startswith("xml"):
        raise BodyProblem(f"{what} {name!r} is not an XML element name")


def _xml_put(root, name, value):
    steps = path_of(name)
    attribute = steps.pop() if isinstance(steps[-1], str) and steps[-1].startswith("@") else None
    element = root
    i = 0
    while i < len(steps):
        tag = steps[i]
        if not isinstance(tag, str):
            raise BodyProblem(f"Export Name {name!r}: an index follows an element name")
        index = steps[i + 1] if i + 1 < len(steps) and isinstance(steps[i + 1], int) else 0
        i += 2 if i + 1 < len(steps) and isinstance(steps[i + 1], int) else 1
        check_xml_name(tag, f"Export Name {name!r}: element")
        if element.text is not None:
            raise BodyProblem(f"Export Name {name!r} conflicts with another Export Name (<{element.tag}> has a value)")
        siblings = element.children.setdefault(tag, [])
        siblings.extend([None] * (index + 1 - len(siblings)))
        if siblings[index] is None:
            siblings[index] = _Element(tag)
        element = siblings[index]
    if attribute is not None:
        check_xml_name(attribute[1:], f"Export Name {name!r}: attribute")
        element.attributes[attribute[1:]] = _xml_value(value)
    elif element.children:
        raise BodyProblem(f"Export Name {name!r} conflicts with another Export Name (<{element.tag}> has elements)")
    else:
        element.text = _xml_value(value)


def xml_body(pairs, root="lead"):
    """The pairs as an XML document under <root>: dotted names nest, `@name` is an attribute
    (`lead.@id` of <lead>, `@version` of the root), `name[1]` the second <name>."""
    check_xml_name(root)
    top = _Element(root)
    for name, value in pairs:
        _xml_put(top, name, value)
    _no_xml_holes(top, root)
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    top.write(out)
    return "".join(out)


def _no_xml_holes(element, where):
    for tag, elements in element.children.items():
        for i, child in enumerate(elements):
            if child is None:
                raise BodyProblem(f"{where}.{tag}[{i}] is not mapped, but a later {tag} is")
            _no_xml_holes(child, f"{where}.{tag}")


# --- a full template in a sandbox -------------------------------------------------------------

MAX_BODY_CHARS = 256 * 1024  # a partner's lead body is a few KB; far more is a template's loop gone wrong
RENDER_SECONDS = 2.0
MAX_RANGE = 10_000
CONTENT_TYPES = {
    "application/json": "JSON",
    "application/xml": "XML",
    "application/x-www-form-urlencoded": "Form (URL-encoded)",
    "text/plain": "Plain text",
}


def _json_escaped(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)[1:-1]  # inside the template's own quotes


def _xml_escaped(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else xml_attribute(value)  # right in text and in attributes alike


def _form_escaped(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else quote_plus(str(value))


ESCAPES = {"application/json": _json_escaped, "application/xml": _xml_escaped,
           "application/x-www-form-urlencoded": _form_escaped,
           "text/plain": lambda v: "" if v is None else str(v)}


class TemplateProblem(BodyProblem):
    """A template that cannot be compiled or rendered; `line` is the template's line, if known."""

    def __init__(self, message, line=None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.line, self.message = line, message


class _Limits:
    """The render's deadline, checked on every line of the template's code and every call."""

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def check(self):
        if time.monotonic() > self.deadline:
            raise SecurityError(f"the template took longer than {self.seconds:g} s to render")


class _Generator(CodeGenerator):
    """Every `~` join is checked for size as it is made, so a loop of joins cannot grow unbounded."""

    def visit_Concat(self, node, frame):
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


def _too_big(size):
    if size > MAX_BODY_CHARS:
        raise SecurityError(f"the template made a value over {MAX_BODY_CHARS:,} characters")


class _Sandbox(SandboxedEnvironment):
    code_generator_class = _Generator
    intercepted_binops = frozenset(["*", "**", "%", "+"])
    # Methods that make text of a size chosen by an argument or a format spec are refused.
    REFUSED_METHODS = frozenset({"format", "format_map", "expandtabs", "ljust", "rjust", "center", "zfill"})

    def __init__(self):
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self._local = threading.local()  # a compiled template may render on several sender threads
        self.globals.clear()
        self.globals["range"] = self._range
        self.filters = {name: self.filters[name] for name in SAFE_FILTERS}
        self.filters.update(replace=_bounded_replace, join=_bounded_join, xml=xml_attribute,
                            json=lambda v: Markup(json.dumps(typed(v) if isinstance(v, str) else v, ensure_ascii=False)))

    def _range(self, *args):
        self._tick()
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise SecurityError(f"range is at most {MAX_RANGE:,} long here")
        return numbers

    @property
    def limits(self):
        return getattr(self._local, "limits", None)

    @limits.setter
    def limits(self, value):
        self._local.limits = value

    def _tick(self):
        limits = self.limits
        if limits is not None:
            limits.check()

    def bounded(self, text):
        _too_big(len(text))
        return text

    def call_binop(self, context, operator, left, right):
        self._tick()
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("a power over 64 is not allowed here")
        if operator == "%" and isinstance(left, str):
            raise SecurityError("text formatting with % is not allowed here: use ~ to join text")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    _too_big(len(seq) * times)
        result = super().call_binop(context, operator, left, right)
        if operator == "+" and isinstance(result, (str, list, tuple)):
            _too_big(len(result))
        return result

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        __self._tick()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        if getattr(method, "__name__", "") in __self.REFUSED_METHODS and isinstance(getattr(method, "__self__", None), str):
            raise SecurityError(f"str.{method.__name__} is not allowed here")
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_BODY_CHARS:
                raise SecurityError(f"a number over {MAX_BODY_CHARS:,} is not allowed as an argument here")
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj, attribute):
        self._tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        self._tick()
        return super().getitem(obj, argument)


SAFE_FILTERS = ("abs", "capitalize", "default", "d", "e", "escape", "first", "float", "int", "last", "length",
                "count", "list", "lower", "upper", "title", "trim", "truncate", "round", "string", "sum", "min", "max",
                "tojson", "urlencode", "safe", "select", "reject", "selectattr", "rejectattr", "map", "sort",
                "unique", "reverse", "dictsort", "items", "striptags")


def _bounded_replace(text, old, new, count=None):
    text, old, new = str(text), str(old), str(new)
    found = text.count(old) if old else len(text) + 1
    if count is not None:
        found = min(found, int(count))
    _too_big(len(text) + found * max(len(new) - len(old), 0))
    return text.replace(old, new, -1 if count is None else int(count))


def _bounded_join(values, separator=""):
    values = [str(v) for v in values]
    _too_big(sum(map(len, values)) + len(str(separator)) * max(len(values) - 1, 0))
    return str(separator).join(values)


def _template_line(exc):
    """The template's line where a render failed (Jinja rewrites its frames to the template's)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return getattr(exc, "lineno", None) or line


def _variables(pairs):
    """What a template reads: each Export Name that is a path, nested (lead.contact.email), and
    every value by its Export Name in `values` (values["first-name"])."""
    variables = {}
    for name, value in pairs:
        try:
            _put(variables, path_of(name), typed(value), name)
        except BodyProblem:
            continue  # still readable through values[...]
    variables.pop("values", None)
    variables["values"] = {name: typed(value) for name, value in pairs}
    return variables


class BodyTemplate:
    """A full template (Jinja2 syntax) compiled once in a sandbox. Each {{ value }} is escaped for
    the content type (JSON: inside a string's quotes; XML: text or attribute; form: URL-encoded);
    `|json` writes a whole JSON value, `|safe` writes text as it is."""

    def __init__(self, source, content_type="application/json", seconds=RENDER_SECONDS):
        if content_type not in ESCAPES:
            raise TemplateProblem(f"unknown content type {content_type!r}")
        self.content_type, self.seconds = content_type, seconds
        escape = ESCAPES[content_type]
        self.env = _Sandbox()
        self.env.finalize = lambda value: value if isinstance(value, Markup) else Markup(escape(value))
        try:
            self.template = self.env.from_string(source or "")
        except TemplateSyntaxError as exc:
            raise TemplateProblem(exc.message or str(exc), exc.lineno) from None

    def render(self, pairs):
        """The body for a row; TemplateProblem naming the line when it cannot be made in bounds."""
        limits = self.env.limits = _Limits(self.seconds)
        out, size = [], 0
        previous = sys.gettrace()
        sys.settrace(_tracer(limits))
        try:
            for chunk in self.template.generate(_variables(pairs)):
                size += len(chunk)
                _too_big(size)
                out.append(chunk)
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as exc:
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            raise TemplateProblem(message, _template_line(exc)) from None
        finally:
            sys.settrace(previous)
            self.env.limits = None
        return "".join(out)


def _tracer(limits):
    """A trace that checks the deadline on each line of the template's own code (its loops run
    there), and costs nothing in any other frame."""
    def on_line(frame, event, arg):
        if event == "line":
            limits.check()
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code.co_filename == "<template>" else None
    return on_call


def check_template(source, content_type="application/json"):
    """Raise TemplateProblem (naming the line) when the template does not compile."""
    BodyTemplate(source, content_type)


# --- one entry point for a type ---------------------------------------------------------------

BODY_FORMATS = {
    "form": "Form (URL-encoded pairs)",
    "json": "JSON (flat object of the pairs)",
    "nested_json": "Nested JSON (dotted Export Names)",
    "xml": "XML (dotted Export Names, @attributes)",
    "template": "Template",
}


def flat_json(pairs):
    return json.dumps({name: typed(value) for name, value in pairs}, ensure_ascii=False)


def build_body(body_format, pairs, xml_root="lead", template="", content_type="application/json"):
    """(body text, Content-Type) of a row in a body format; BodyProblem naming what is wrong."""
    if body_format == "form":
        return "&".join(f"{quote_plus(n)}={quote_plus(str(v))}" for n, v in pairs), "application/x-www-form-urlencoded"
    if body_format == "json":
        return flat_json(pairs), "application/json"
    if body_format == "nested_json":
        return json_body(pairs), "application/json"
    if body_format == "xml":
        return xml_body(pairs, xml_root or "lead"), "application/xml"
    if body_format == "template":
        return _compiled(template, content_type).render(pairs), content_type
    raise BodyProblem(f"unknown body format {body_format!r}")


_TEMPLATES = {}


def _compiled(source, content_type):
    """A template compiled once per source (a worker renders many rows of one profile)."""
    key = (source, content_type)
    compiled = _TEMPLATES.get(key)
    if compiled is None:
        if len(_TEMPLATES) > 256:
            _TEMPLATES.clear()
        compiled = _TEMPLATES[key] = BodyTemplate(source, content_type)
    return compiled
