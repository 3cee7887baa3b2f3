"""What a send needs from a profile: its export type, its compiled mappings, the record of an
event, and the attempt log of what went out. Shared by the drain (dispatch.py), daily files
and the profile tools; no flow lives here.

A worker keeps export types and renderers between sends: types per profile version (its type
and settings), renderers per mapping content, so an edited profile is used at once.
"""
import json
import threading
from urllib.parse import urlsplit

from flask import current_app

from .. import mapping, security
from ..models import Attempt

RESPONSE_EXCERPT = 2000
_CACHE_SIZE = 256
_cache_lock = threading.Lock()
_types = {}


def registry():
    return current_app.extensions["export_types"]


def daily_files():
    """The files part (exporter.files.daily_files): it builds a day's file's batch and writes its
    history. It sits above delivery, so the app factory hands it to the drain."""
    return current_app.extensions["daily_files"]


URL_CREDENTIALS = "_credentials"  # beside a URL setting: the whole URL, encrypted, when it holds credentials


def secret_names():
    """The credential-like names (SECRET_NAMES): their Static and URL values are secrets."""
    return current_app.config.get("SECRET_NAMES") or security.DEFAULT_SECRET_NAMES


def url_settings(cls):
    return getattr(cls, "url_settings", ("url",)) if cls else ("url",)


def plain_settings(profile, reveal_urls=True):
    """The profile's settings with its type's secrets decrypted, for the type's own use only.
    reveal_urls=False (what a preview shows) keeps each URL with its credentials masked."""
    cls = registry().get(profile.export_type)
    secret_names_ = cls.secret_settings if cls else ()
    key = current_app.config["SECRET_KEY"]
    plain = {k: security.decrypt(key, v) if k in secret_names_ else v for k, v in (profile.settings or {}).items()}
    for name in url_settings(cls):
        stored = plain.pop(name + URL_CREDENTIALS, None)
        if stored and reveal_urls:
            plain[name] = security.decrypt(key, stored)
    return plain


def export_type_for(profile, reuse=False):
    """The profile's export type with its settings decrypted, and the (secret, mask) pairs to
    redact from what is logged. ValueError when a stored secret cannot be decrypted.

    reuse=True (the drain) keeps one instance per profile version for a type that declares
    itself thread_safe, so its connections are pooled across sends; any other type gets a
    fresh instance per send, as the plugin manual has always promised."""
    cls = registry().get(profile.export_type)
    if cls is None:
        raise LookupError(f"export type {profile.export_type!r} is not installed")
    if not (reuse and getattr(cls, "thread_safe", False)):
        return _new_type(cls, profile)
    key = (profile.id, cls, json.dumps(profile.settings or {}, sort_keys=True, default=str))
    with _cache_lock:
        cached = _types.get(key)
    if cached is None:
        cached = _new_type(cls, profile)
        with _cache_lock:
            _evict(_types)
            stale = [k for k in _types if k[0] == profile.id]
            for k in stale:  # an edited profile: its old instance's connections are closed
                _close(_types.pop(k)[0])
            cached = _types.setdefault(key, cached)
    return cached


def _new_type(cls, profile):
    plain = plain_settings(profile)
    secrets_ = [(plain[name], security.MASK) for name in cls.secret_settings if plain.get(name)]
    for name in url_settings(cls):  # the URL's credentials, wherever its text is logged
        secrets_ += security.url_secret_pairs(plain.get(name) if isinstance(plain.get(name), str) else "",
                                              secret_names())
    return cls(plain), secrets_


def _close(export_type):
    close = getattr(export_type, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing a pool must never stop a send
            pass


def _evict(cache):
    if len(cache) >= _CACHE_SIZE:
        for key in list(cache)[: _CACHE_SIZE // 2]:
            _close(cache.pop(key)[0])


def renderer_for(profile):
    """The profile's mappings as they are now, compiled once per content (mapping.renderer_for),
    their secret Static Values decrypted to be sent (and masked by renderer.masked)."""
    return mapping.renderer_for(profile, current_app.config["SECRET_KEY"])


def render(renderer, event, profile, extra=None):
    """An event's row through a profile's renderer, straight from the order as stored; extra: more
    fields for the mappings (a reversal's original.*)."""
    key, card, order = current_app.config["SECRET_KEY"], None, event.order or {}
    if extra:
        order = {**order, **extra}
    if event.card_number and profile.pci_documented:
        card = security.decrypt(key, event.card_number)
    if renderer.opens_order:
        order = security.opened_order(order, key, profile.pci_documented)
    return renderer.from_order(order, event.type, card)


def target_host(profile):
    """The host a profile sends to, for per-host limits and the dashboard."""
    settings = profile.settings or {}
    url = settings.get("url") or ""
    return urlsplit(url).hostname or settings.get("host") or ""


def sensitive_pairs(renderer, rows):
    """(raw, masked) for each sensitive value of the rows, to redact from what is logged."""
    return [(raw, masked) for row in rows for (_, raw), (_, masked) in zip(row, renderer.masked(row))
            if raw != masked]


def attempt_values(outcome, secrets_, **fields):
    """An attempt's columns from an outcome, every secret and sensitive value masked."""
    def r(text):
        return security.redact(text or "", secrets_)

    return dict(
        ok=outcome.ok, method=outcome.method or "", target=r(outcome.target),
        request_headers={k: r(str(v)) for k, v in (outcome.request_headers or {}).items()},
        request_body=r(outcome.request_body), status=outcome.status,
        response_headers={k: r(str(v)) for k, v in (outcome.response_headers or {}).items()},
        response_body=r((outcome.response_body or "")[:RESPONSE_EXCERPT]),
        elapsed_ms=outcome.elapsed_ms, error=r(outcome.error), **fields)


def attempt_from(outcome, secrets_, **fields):
    return Attempt(**attempt_values(outcome, secrets_, **fields))
