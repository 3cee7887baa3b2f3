"""The Postback export type: one HTTP request per event, the mapped pairs as parameters.

GET puts the pairs in the query string (the model's way), POST form-encodes them, POST
JSON sends them as one object in mapping order; nested JSON, XML and a full template are
the contract's body toolkit. A mapping whose Export Name starts with `header:` becomes a
request header instead. Redirects are never followed: a 3xx is a failure, retried like any
other, with the Location in the attempt log. The answer is judged by the toolkit's response
rules (success, permanent rejection, the partner's reason) and a value may be captured.
"""
import http.cookiejar
import math
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from requests.structures import CaseInsensitiveDict
from wtforms import IntegerField, PasswordField, SelectChoice, SelectField, TextAreaField, URLField
from wtforms.validators import DataRequired, NumberRange, Optional, ValidationError

from exporter.export_types import PER_EVENT, BodyTemplateFields, ExportType, Outcome, ResponseRules, ResponseRuleSettings, TargetRefused, build_body, parse_target, pinned_session

from . import errors, signing

METHODS = [SelectChoice("GET", "GET (query string)"), SelectChoice("POST", "POST (form-encoded)"),
           SelectChoice("POST_JSON", "POST (JSON)"), SelectChoice("POST_NESTED_JSON", "POST (nested JSON)"),
           SelectChoice("POST_XML", "POST (XML)"), SelectChoice("POST_TEMPLATE", "POST (template)")]
# Each POST method's body format in the toolkit (exporter.body_templates.build_body).
BODY_FORMATS = {"POST": "form", "POST_JSON": "json", "POST_NESTED_JSON": "nested_json", "POST_XML": "xml",
                "POST_TEMPLATE": "template"}
DEFAULT_TIMEOUT = 15
HEADER_PREFIX = "header:"
USER_AGENT = "Exporter/0.1"
MAX_RESPONSE_BYTES = 1024 * 1024  # enough for any partner's answer; more is not read
POOL_SIZE = 16  # keep-alive connections kept per host; the core limits how many are in flight
# Header names: RFC 9110 tokens.
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by Exporter (or by HTTP itself) on every request, so neither a line nor a mapping may.
RESERVED_HEADERS = {"content-length", "transfer-encoding", "connection", "idempotency-key",
                    "webhook-id", "webhook-timestamp", "webhook-signature"}
# Credentials in headers are sent as they are but logged masked.
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
CREDENTIAL_WORDS = ("token", "secret", "password")
MASK = "****"


# --- settings ---------------------------------------------------------------------------------

def header_problem(name, value):
    """Why (name, value) cannot be sent as a header, or None."""
    if not TOKEN.match(name):
        return f"{name!r} is not a valid header name"
    if name.lower() in RESERVED_HEADERS:
        return f"{name} is set by Exporter"
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
        return f"the value of {name} has a control character"
    return None


def parse_header_lines(text):
    """Extra Headers, one `Name: value` a line, as pairs; ValueError naming the line otherwise."""
    pairs = []
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name:
            raise ValueError(f"line {number}: expected 'Name: value'")
        problem = header_problem(name, value)
        if problem:
            raise ValueError(f"line {number}: {problem}")
        pairs.append((name, value))
    return pairs


def http_url(form, field):
    try:
        parts = urlsplit(field.data or "")
        hostname = parts.hostname
    except ValueError:
        hostname = None
    if hostname is None or parts.scheme not in ("http", "https"):
        raise ValidationError("Postback URL must be an http:// or https:// URL")
    try:
        parse_target(field.data)  # read as the sender reads it: a URL parsers disagree on is refused
    except TargetRefused as exc:
        raise ValidationError(f"Postback URL: {exc}")


def header_lines(form, field):
    try:
        parse_header_lines(field.data)
    except ValueError as exc:
        raise ValidationError(str(exc))


def signing_secret(form, field):
    try:
        signing.signing_key(field.data or "")
    except ValueError as exc:
        raise ValidationError(str(exc))


class PostbackSettings(BodyTemplateFields, ResponseRuleSettings):
    url = URLField("Postback URL", validators=[DataRequired("Postback URL is required"), http_url],
                   description="e.g. https://postingmydata.com/partials.php")
    method = SelectField("Method", choices=METHODS, default="GET")
    timeout = IntegerField("Timeout (seconds)", default=DEFAULT_TIMEOUT,
                           validators=[Optional(), NumberRange(1, 120, "between 1 and 120 seconds")],
                           description="To connect, and for each read of the answer (blank: 15)")
    headers = TextAreaField("Extra Headers", validators=[header_lines],
                            description="Sent with every request: one 'Name: value' per line. Stored encrypted "
                                        "and never shown again, like a password: type them all again to change them.")
    signing_secret = PasswordField("Signing Secret", validators=[Optional(), signing_secret],
                                   description="When set, each request is signed with Standard Webhooks "
                                               "headers (webhook-id, webhook-timestamp, webhook-signature)")


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """A partner's Set-Cookie must not ride along on the next customer's request."""

    def set_ok(self, cookie, request):
        return False


# --- the request ------------------------------------------------------------------------------

def with_query(url, pairs):
    """The URL with the pairs appended to its query; a query the URL already has is kept."""
    parts = urlsplit(url)
    extra = urlencode(pairs)
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def is_credential(name):
    name = name.lower()
    return name in CREDENTIAL_HEADERS or any(word in name for word in CREDENTIAL_WORDS)


def split_pairs(pairs):
    """(parameters, headers): `header:Name` pairs become headers, in mapping order."""
    params, headers = [], []
    for name, value in pairs:
        if name.lower().startswith(HEADER_PREFIX):
            header = name[len(HEADER_PREFIX):].strip()
            value = " ".join(str(value).splitlines())  # a line break cannot travel in a header
            problem = header_problem(header, value)
            if problem:
                raise ValueError(f"Export Name {name!r}: {problem}")
            headers.append((header, value))
        else:
            params.append((name, value))
    return params, headers


@dataclass
class Request:
    method: str
    url: str
    headers: CaseInsensitiveDict
    body: bytes
    # The Extra Headers' names: their values are secrets (Authorization: Bearer ...), never logged.
    secret_headers: frozenset = frozenset()

    def logged_headers(self):
        """The headers for the attempt log: credentials and Extra Headers masked."""
        return {k: MASK if is_credential(k) or k.lower() in self.secret_headers else v
                for k, v in self.headers.items()}

    def wire_headers(self):
        """Non-ASCII header values go out as UTF-8 bytes (http.client would refuse them as str)."""
        return {k: v if v.isascii() else v.encode() for k, v in self.headers.items()}


class PostbackType(ExportType):
    key = "postback"
    label = "Postback"
    schedule = PER_EVENT
    settings_form = PostbackSettings
    secret_settings = ("signing_secret", "headers")  # Extra Headers carry credentials: encrypted, masked
    # One instance per profile serves a worker's sender threads: its sessions pool keep-alive
    # connections across sends (the pinning adapter keeps no per-request state).
    thread_safe = True

    def __init__(self, settings):
        super().__init__(settings)
        self._sessions = {}
        self._session_lock = threading.Lock()

    def close(self):
        for session in self._sessions.values():
            session.close()

    def session(self, allow_private_targets=False):
        """The pooled session, made on first use: pinned to checked addresses, no cookies kept."""
        with self._session_lock:
            session = self._sessions.get(allow_private_targets)
            if session is None:
                session = pinned_session(allow_private_targets, pool_maxsize=POOL_SIZE, max_retries=0)
                session.cookies.set_policy(_NoCookies())
                self._sessions[allow_private_targets] = session
            return session

    @property
    def method(self):
        return self.settings.get("method") or "GET"

    @property
    def timeout(self):
        return int(self.settings.get("timeout") or DEFAULT_TIMEOUT)

    def describe(self):
        return self.settings.get("url", "")

    @property
    def rules(self):
        """The response rules, read once per instance (per profile version)."""
        if getattr(self, "_rules", None) is None:
            self._rules = ResponseRules.from_settings(self.settings)
        return self._rules

    def preview(self, columns, row):
        req = self.build_request(row, "preview")
        lines = [f"{req.method} {req.url}"] + [f"{k}: {v}" for k, v in req.logged_headers().items()]
        return "\n".join(lines) + ("\n\n" + req.body.decode() if req.body else "")

    def build_request(self, pairs, idempotency_key, timestamp=None):
        """The request for one row; ValueError when a header mapping or line cannot be sent."""
        params, mapped_headers = split_pairs(pairs)
        headers = CaseInsensitiveDict({"User-Agent": USER_AGENT})
        extra = parse_header_lines(self.settings.get("headers"))
        headers.update(extra)
        headers.update(mapped_headers)
        url, body = self.settings.get("url", ""), b""
        if self.method == "GET":
            url = with_query(url, params)
        elif self.method == "POST":
            body = urlencode(params).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:  # a body format of the toolkit; BodyProblem (a ValueError) names the Export Name or line
            text, content_type = build_body(BODY_FORMATS.get(self.method, "json"), params,
                                            xml_root=self.settings.get("xml_root") or "lead",
                                            template=self.settings.get("body_template") or "",
                                            content_type=self.settings.get("template_content_type") or "application/json")
            body = text.encode()
            headers.setdefault("Content-Type", content_type)
        headers["Idempotency-Key"] = idempotency_key
        secret = self.settings.get("signing_secret")
        if secret:
            headers.update(signing.headers(secret, idempotency_key, body, timestamp))
        return Request("GET" if self.method == "GET" else "POST", url, headers, body,
                       frozenset(name.lower() for name, _ in extra))

    def send(self, batch):
        try:
            req = self.build_request(next(iter(batch.rows)), batch.idempotency_key)
        except ValueError as exc:
            return Outcome(ok=False, error=str(exc))
        outcome = Outcome(ok=False, method=req.method, target=req.url, request_headers=req.logged_headers(),
                          request_body=req.body.decode())
        try:
            parse_target(req.url)  # a URL that parsers read differently is never sent
        except TargetRefused as exc:
            outcome.error = str(exc)
            return outcome
        started = time.monotonic()
        try:
            status, headers, body = self._exchange(req, batch.allow_private_targets)
        except TargetRefused as exc:  # the address the name resolves to, checked where it is connected
            outcome.error = str(exc)
        except requests.Timeout as exc:
            outcome.error = errors.explained(exc, req.url, self.timeout)
        except requests.RequestException as exc:
            outcome.error = errors.explained(exc, req.url, self.timeout)
        else:
            judge(outcome, status, headers, body, self.rules)
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        return outcome

    def _exchange(self, req, allow_private_targets=False):
        """Send the request as built (no session defaults) over a pooled keep-alive connection to
        the address the private-target guard checked (pinned); read at most MAX_RESPONSE_BYTES."""
        session = self.session(allow_private_targets)
        prepared = requests.Request(req.method, req.url, headers=req.wire_headers(),
                                    data=req.body if req.method == "POST" else None).prepare()
        response = session.send(prepared, timeout=self.timeout, allow_redirects=False, stream=True)
        raw, reusable = b"", False
        try:
            raw = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
            reusable = len(raw) <= MAX_RESPONSE_BYTES
        finally:
            if not reusable:  # cut short, or longer than we read: that connection is not reused
                response.raw.close()
            response.raw.release_conn()
        return response.status_code, response.headers, decode(raw[:MAX_RESPONSE_BYTES], response)


def decode(raw, response):
    charset = response.encoding if "charset" in response.headers.get("Content-Type", "").lower() else "utf-8"
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def judge(outcome, status, headers, body, rules):
    """A 2xx that satisfies the success rule is delivered (with what the capture rule takes); an
    answer the rejection rule matches is rejected for good; anything else is retried."""
    outcome.status, outcome.response_headers, outcome.response_body = status, dict(headers), body[:2000]
    if 300 <= status < 400:
        outcome.error = f"HTTP {status}: redirect to {headers.get('Location', '(no Location)')} (not followed)"
    else:
        verdict = rules.judge(status, body)
        if verdict.ok:
            outcome.ok, outcome.captured = True, verdict.captured
            outcome.summary = f"postback delivered (HTTP {status})"
            return outcome
        outcome.error, outcome.rejected = verdict.error, verdict.rejected
        if verdict.rejected:
            return outcome
    outcome.retry_after = retry_after(headers.get("Retry-After"))
    return outcome


def retry_after(value):
    """Retry-After in seconds, from a number or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
