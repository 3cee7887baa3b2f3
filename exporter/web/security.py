"""What every response carries, and what every request may ask: security headers, the
session cookie's flags, ids that fit the database, login throttling's storage."""
import ipaddress
from urllib.parse import urlsplit

from flask import has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import IntegerConverter

MAX_ID = 2**63 - 1  # ids are 64-bit columns: a larger one names nothing (404), never a 500

# No inline script or style anywhere: every script and style sheet is a file under /static.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class IdConverter(IntegerConverter):
    """<int:...> in a path: at most a 64-bit id."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):  # noqa: A002 - werkzeug's names
        super().__init__(map, fixed_digits, min, max, signed)


def plain_loopback():
    """The request came over plain HTTP to a loopback address (exporter run on 127.0.0.1)."""
    if not has_request_context() or request.scheme != "http":
        return False
    host = urlsplit("//" + request.host).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure unless configured off, or the app runs in debug or on plain loopback."""

    def open_session(self, app, request):
        """No session cookie: the empty session Flask would give, without building its signer first
        (the CRM's intake requests carry none)."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app, session, response):
        """An empty session nobody read or changed: nothing to write, as Flask decides too, without
        working out the cookie's flags first (the Secure flag looks at the request's host)."""
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)

    def get_cookie_secure(self, app):
        configured = app.config.get("SESSION_COOKIE_SECURE")
        if configured is not None:
            return bool(configured)
        return not (app.debug or plain_loopback())


def _logged_in_answer():
    """What a browser with a session asks (a page, a download, a redirect) is never kept by a cache:
    neither a shared one nor the back button after logout. The static files, the same for everyone,
    may be; the CRM's intake sends no cookie."""
    from . import nobody_logged_in

    return request.endpoint != "static" and not nobody_logged_in()


def protect(app):
    from ..extensions import limiter

    app.url_map.converters["int"] = IdConverter
    app.session_interface = SessionInterface()
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    limiter.init_app(app)

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if _logged_in_answer():
            response.headers["Cache-Control"] = "no-store"
        return response


def use_redis_for_limits(app, url):
    """exporter run starts its embedded Redis after the app exists: move login throttling onto it."""
    from ..extensions import limiter

    app.config["RATELIMIT_STORAGE_URI"] = url
    limiter.init_app(app)
