"""Response rules and capture: what a partner's answer means, and what to keep from it.

Part of the plugin contract's toolkit (exporter.export_types re-exports it). Success is the
status plus one rule over the body; a rejection rule makes a failure permanent (status
`rejected`, no more retries); a reason rule finds the partner's own words for a failure; a
capture rule takes a value (a lead or conversion id) to keep on the delivery. Plain Python.

Rule kinds:
- contains: the body contains the text.
- regex: Python's re, searched in the body; capture and reason take group 1 (else the match).
- json: a JSON path condition over a JSON body, in a small documented subset:
  `$` then `.name`, `["name"]` or `[0]` steps, optionally `== <JSON value>` or `!= <JSON value>`,
  e.g. `$.status == "accepted"`, `$.result.ok == true`, `$.errors[0].message`. Without a
  comparison the rule holds when the value is there and not null, false or "".
- xpath: ElementTree's XPath subset over an XML body (namespaces ignored), with a final
  `/@name` for an attribute or `/text()`, optionally `== "text"` or `!= "text"`, e.g.
  `/response/status == "accepted"`, `.//lead/@id`. A DOCTYPE is refused: no entities expand.
"""
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

KINDS = {"contains": "Body contains", "regex": "Body matches (regex)", "json": "JSON path", "xpath": "XPath"}
# Kinds that can take a value out of the answer (capture, reason).
EXTRACTING = {k: v for k, v in KINDS.items() if k != "contains"}
MAX_EXPRESSION = 500
MAX_CAPTURE = 255  # the delivery's column


class RuleProblem(ValueError):
    """A rule that cannot be read; said at save, beside the field."""


# --- JSON path subset ---------------------------------------------------------------------------

_STEP = re.compile(r'\.([A-Za-z_$][\w$-]*)|\[([0-9]+)\]|\[("(?:[^"\\]|\\.)*")\]|\[\'([^\']*)\'\]')
_COMPARISON = re.compile(r"\s*(==|!=)\s*(.+?)\s*$", re.S)


def _json_path(expression):
    """'$.a[0]["b c"]' -> ['a', 0, 'b c']."""
    text = expression.strip()
    if not text.startswith("$"):
        raise RuleProblem("a JSON path starts with $ (e.g. $.status)")
    steps, at = [], 1
    while at < len(text):
        match = _STEP.match(text, at)
        if not match:
            raise RuleProblem(f"cannot read the JSON path at {text[at:at + 20]!r} (use .name, [0] or [\"name\"])")
        name, index, quoted, single = match.groups()
        steps.append(int(index) if index is not None else json.loads(quoted) if quoted else single if single is not None else name)
        at = match.end()
    return steps


def _split_comparison(expression):
    """(path text, operator or None, literal text or None), the operator outside any quotes."""
    in_quotes, quote, i = False, "", 0
    while i < len(expression):
        c = expression[i]
        if in_quotes:
            if c == "\\":
                i += 1
            elif c == quote:
                in_quotes = False
        elif c in "\"'":
            in_quotes, quote = True, c
        elif expression.startswith(("==", "!="), i):
            return expression[:i].strip(), expression[i:i + 2], expression[i + 2:].strip()
        i += 1
    return expression.strip(), None, None


def _literal(text, kind):
    try:
        return json.loads(text)
    except ValueError:
        if kind == "xpath" and len(text) >= 2 and text[0] == text[-1] == "'":
            return text[1:-1]
        raise RuleProblem(f"{text!r} is not a value to compare with (write \"text\", a number, true, false or null)")


def _walk(value, steps):
    for step in steps:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


_MISSING = object()


# --- XPath (ElementTree's subset) -----------------------------------------------------------------

_TAIL = re.compile(r"/(@[\w.:-]+|text\(\))$")


def _xpath(expression):
    """(root tag or None, ElementTree path, what to read: '@name', 'text()' or None)."""
    path = expression.strip()
    read = None
    tail = _TAIL.search(path)
    if tail:
        read, path = tail.group(1), path[:tail.start()]
    root = None
    if path.startswith("//"):
        path = "." + path
    elif path.startswith("/"):
        root, _, path = path[1:].partition("/")
        path = path or "."
    if path.startswith("@"):
        read, path = path, "."
    try:
        ET.fromstring("<x/>").find(path or ".")
    except (SyntaxError, KeyError, TypeError) as exc:
        raise RuleProblem(f"not an XPath ElementTree can read: {exc}") from None
    return root, path or ".", read


def _xml(body):
    if re.search(r"<!DOCTYPE|<!ENTITY", body[:4096], re.I):
        return None  # entities are never expanded: such an answer is not read
    try:
        root = ET.fromstring(body.encode("utf-8"))
    except ET.ParseError:
        return None
    for element in root.iter():  # namespaces ignored: .//status finds {urn:x}status
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.rsplit("}", 1)[1]
    return root


# --- a rule -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    kind: str
    expression: str

    def __post_init__(self):
        if self.kind not in KINDS:
            raise RuleProblem(f"unknown rule kind {self.kind!r}")
        if not self.expression.strip():
            raise RuleProblem("the rule is empty")
        if len(self.expression) > MAX_EXPRESSION:
            raise RuleProblem(f"at most {MAX_EXPRESSION} characters")
        object.__setattr__(self, "_parsed", self._parse())

    def _parse(self):
        if self.kind == "contains":
            return None
        if self.kind == "regex":
            try:
                return re.compile(self.expression)
            except re.error as exc:
                raise RuleProblem(f"not a regular expression: {exc}") from None
        path, operator, literal = _split_comparison(self.expression)
        value = _literal(literal, self.kind) if operator else None
        if self.kind == "json":
            return _json_path(path), operator, value
        return (*_xpath(path), operator, value)

    def __str__(self):
        return self.expression

    def _found(self, body):
        """The value the rule points at in the body (_MISSING when it is not there)."""
        if self.kind == "regex":
            match = self._parsed.search(body)
            if not match:
                return _MISSING
            return match.group(1) if match.re.groups else match.group(0)
        if self.kind == "json":
            try:
                data = json.loads(body)
            except ValueError:
                return _MISSING
            return _walk(data, self._parsed[0])
        root_tag, path, read, _, _ = self._parsed
        root = _xml(body)
        if root is None or (root_tag and root.tag != root_tag):
            return _MISSING
        element = root.find(path)
        if element is None:
            return _MISSING
        if read and read.startswith("@"):
            return element.get(read[1:], _MISSING)
        return element.text or ""

    def holds(self, body):
        """Whether the body satisfies the rule."""
        if self.kind == "contains":
            return self.expression in body
        found = self._found(body)
        if self.kind == "regex":
            return found is not _MISSING
        operator, value = self._parsed[-2:]
        if operator is None:
            return found is not _MISSING and found not in (None, False, "")
        if self.kind == "xpath" and not isinstance(value, str) and value is not None:
            value = json.dumps(value)  # XML is text: == 1 compares with "1"
        equal = found is not _MISSING and found == value and isinstance(found, bool) == isinstance(value, bool)
        return equal if operator == "==" else not equal

    def extract(self, body):
        """The value the rule points at, as text ("" when not there)."""
        if self.kind == "contains":
            return self.expression if self.expression in body else ""
        found = self._found(body)
        if found is _MISSING or found is None:
            return ""
        if isinstance(found, bool):
            return "true" if found else "false"
        return found.strip() if isinstance(found, str) else json.dumps(found, ensure_ascii=False)


def rule_or_none(kind, expression):
    """A Rule, or None for an empty expression; RuleProblem when it cannot be read."""
    if not (expression or "").strip():
        return None
    return Rule(kind or "contains", expression)


# --- the verdict on an answer ---------------------------------------------------------------------

@dataclass
class Verdict:
    ok: bool
    rejected: bool = False  # permanent: the partner refused this for good; no retry
    error: str = ""
    reason: str = ""  # the partner's own words for a failure
    captured: str = ""


REASON_KEYS = ("reason", "err_msg", "error_message", "errorMessage", "message", "error", "msg", "errors", "detail")
_TEXT_REASON = re.compile(r"\b(?:err_msg|error_message)=([^;&\r\n]+)")  # TUNE's key=value answers


def default_reason(body):
    """The partner's reason without a rule: a JSON answer's reason/err_msg/message/error, an XML
    answer's <reason>/<error>/<message>, or TUNE's `err_msg=...`."""
    text = (body or "").strip()
    if text.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key in REASON_KEYS:
                value = data.get(key)
                if value not in (None, "", [], {}, False):
                    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.startswith("<"):
        root = _xml(text)
        if root is not None:
            for tag in ("reason", "error", "message", "err_msg"):
                found = root.find(f".//{tag}") if root.tag != tag else root
                if found is not None and (found.text or "").strip():
                    return found.text.strip()
    match = _TEXT_REASON.search(text)
    return match.group(1).strip() if match else ""


def plain(text, limit=300):
    """One line of the partner's words, for the Deliveries list and the history."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass(frozen=True)
class ResponseRules:
    success: Rule | None = None
    rejection: Rule | None = None
    reason: Rule | None = None
    capture: Rule | None = None

    @classmethod
    def from_settings(cls, settings):
        """The rules a type's settings hold (the ResponseRuleSettings fields)."""
        get = settings.get
        return cls(rule_or_none(get("success_rule") or "contains", get("success_text")),
                   rule_or_none(get("reject_rule") or "contains", get("reject_text")),
                   rule_or_none(get("reason_rule") or "json", get("reason_text")),
                   rule_or_none(get("capture_rule") or "json", get("capture_text")))

    def reason_in(self, body):
        found = self.reason.extract(body) if self.reason else ""
        return plain(found or default_reason(body))

    def judge(self, status, body):
        """The verdict on an answer of this status and body (redirects are the type's business)."""
        body = body or ""
        if self.rejection and status < 500 and self.rejection.holds(body):
            reason = self.reason_in(body) or f"the answer matches the rejection rule {self.rejection}"
            return Verdict(False, rejected=True, reason=reason, error=f"rejected by the partner: {reason}")
        if not 200 <= status < 300:
            reason = self.reason_in(body)
            return Verdict(False, reason=reason, error=f"HTTP {status}" + (f": {reason}" if reason else ""))
        if self.success and not self.success.holds(body):
            reason = self.reason_in(body)
            if reason:
                return Verdict(False, reason=reason, error=f"not accepted by the partner: {reason}")
            if self.success.kind == "contains":
                return Verdict(False, error=f"response does not contain the Success Text {self.success.expression!r}")
            return Verdict(False, error=f"response does not satisfy the success rule {self.success}")
        captured = self.capture.extract(body)[:MAX_CAPTURE] if self.capture else ""
        return Verdict(True, captured=plain(captured, MAX_CAPTURE))
