"""A failed request in plain words: "connection refused by 127.0.0.1:8765", "timed out after
15 s", "TLS certificate not trusted". The first line of an Outcome's error is what lists and
the dashboard show; the exception as raised follows on the next line, for the attempt's page."""
import errno
import socket
import ssl
from http.client import RemoteDisconnected
from urllib.parse import urlsplit

import requests


def explained(exc, url, timeout):
    """The plain words, then the raw exception (its URL's query left out) on a second line."""
    return f"{plain_error(exc, url, timeout)}\n{type(exc).__name__}: {without_query(str(exc), url)}"


def plain_error(exc, url, timeout):
    """What happened, in words an admin can act on."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    where = f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    causes = list(_chain(exc))
    if isinstance(exc, requests.ConnectTimeout):
        return f"timed out after {timeout} s connecting to {where}"
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout} s waiting for {where} to answer"
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason
            return f"TLS certificate of {host} not trusted" + (f": {reason}" if reason else "")
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return f"could not resolve host {host}"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(cause, (ConnectionResetError, RemoteDisconnected)):
            return f"{where} closed the connection without answering"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake with {where} failed"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no route to {where} (network unreachable)"
    if isinstance(exc, requests.TooManyRedirects):
        return f"too many redirects from {host}"
    if isinstance(exc, requests.ConnectionError):
        return f"could not connect to {where}"
    return f"the request to {host} failed ({type(exc).__name__})"


def _chain(exc, depth=0):
    """The exception and everything it wraps: causes, contexts, urllib3's reason, exception args."""
    if exc is None or depth > 12:
        return
    yield exc
    seen = [exc.__cause__, exc.__context__, getattr(exc, "reason", None)]
    seen += [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
    for inner in seen:
        if isinstance(inner, BaseException) and inner is not exc:
            yield from _chain(inner, depth + 1)


def without_query(message, url):
    """The parameters (names, emails) belong in the attempt's request, not in an error text."""
    parts = urlsplit(url)
    if not parts.query:
        return message
    return message.replace(f"{parts.path}?{parts.query}", f"{parts.path}?...").replace(url, url.split("?")[0] + "?...")
