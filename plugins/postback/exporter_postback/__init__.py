"""The Postback export type: one HTTP request per event, the mapped pairs as parameters."""
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from wtforms import Form, IntegerField, SelectField, URLField
from wtforms.validators import DataRequired, NumberRange, ValidationError

from exporter.export_types import PER_EVENT, ExportType, Outcome
from exporter.security import TargetRefused, check_target_url

METHODS = [("GET", "GET (query string)"), ("POST", "POST (form-encoded)"), ("POST_JSON", "POST (JSON)")]
DEFAULT_TIMEOUT = 15


def http_url(form, field):
    parts = urlsplit(field.data or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Postback URL must be an http:// or https:// URL")


class PostbackSettings(Form):
    url = URLField("Postback URL", validators=[DataRequired("Postback URL is required"), http_url],
                   description="e.g. https://postingmydata.com/partials.php")
    method = SelectField("Method", choices=METHODS, default="GET")
    timeout = IntegerField("Timeout (seconds)", default=DEFAULT_TIMEOUT,
                           validators=[NumberRange(1, 120, "between 1 and 120 seconds")])


def with_query(url, pairs):
    """The URL with the pairs appended to its query; a query the URL already has is kept."""
    parts = urlsplit(url)
    extra = urlencode(pairs)
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class PostbackType(ExportType):
    key = "postback"
    label = "Postback"
    schedule = PER_EVENT
    settings_form = PostbackSettings

    def describe(self):
        return self.settings.get("url", "")

    def preview(self, columns, row):
        method = self.settings.get("method") or "GET"
        if method == "GET":
            return with_query(self.settings.get("url", ""), row)
        request = self.build_request(row, "preview")
        return f"{request['method']} {request['url']}\n\n{request['body']}"

    def build_request(self, pairs, idempotency_key):
        method = self.settings.get("method") or "GET"
        url = self.settings.get("url", "")
        headers = {"Idempotency-Key": idempotency_key, "User-Agent": "Exporter/0.1"}
        if method == "GET":
            return {"method": "GET", "url": with_query(url, pairs), "headers": headers, "body": ""}
        if method == "POST_JSON":
            import json

            headers["Content-Type"] = "application/json"
            return {"method": "POST", "url": url, "headers": headers,
                    "body": json.dumps(dict(pairs), ensure_ascii=False)}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return {"method": "POST", "url": url, "headers": headers, "body": urlencode(pairs)}

    def send(self, batch):
        pairs = next(iter(batch.rows))
        req = self.build_request(pairs, batch.idempotency_key)
        outcome = Outcome(ok=False, method=req["method"], target=req["url"],
                          request_headers=req["headers"], request_body=req["body"])
        try:
            check_target_url(req["url"], batch.allow_private_targets)
        except TargetRefused as exc:
            outcome.error = str(exc)
            return outcome
        started = time.monotonic()
        try:
            response = requests.request(req["method"], req["url"], headers=req["headers"],
                                        data=req["body"].encode() if req["body"] else None,
                                        timeout=int(self.settings.get("timeout") or DEFAULT_TIMEOUT),
                                        allow_redirects=False)
        except requests.RequestException as exc:
            outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
            outcome.error = f"{type(exc).__name__}: {exc}"
            return outcome
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        outcome.status = response.status_code
        outcome.response_headers = dict(response.headers)
        outcome.response_body = response.text[:2000]
        outcome.ok = 200 <= response.status_code < 300
        if outcome.ok:
            outcome.summary = f"postback delivered (HTTP {response.status_code})"
        else:
            outcome.error = f"HTTP {response.status_code}"
            if 300 <= response.status_code < 400:
                outcome.error += f": redirect to {response.headers.get('Location', '?')} (not followed)"
            outcome.retry_after = _retry_after(response.headers.get("Retry-After"))
        return outcome


def _retry_after(value):
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
