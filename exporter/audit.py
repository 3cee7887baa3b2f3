"""The audit log: who changed what, when, before and after (issue 12).

One function writes it, `record`, called by the domain code that makes a change, so the web
forms, the profiles JSON upload and the CLI leave the same entries. Who acts is set once per
request or command with `acting_as` (a context variable: no Flask here). An entry joins the
caller's transaction; it is committed with the change it describes, or not at all.
"""
import contextlib
import contextvars

from . import security
from .extensions import db
from .models import AuditEntry

_actor = contextvars.ContextVar("audit_actor", default=("system", ""))


@contextlib.contextmanager
def acting_as(actor, via):
    """Entries recorded inside name actor (an admin's email, "cli:<user>") and via (web, upload, cli, cron)."""
    token = _actor.set((actor, via))
    try:
        yield
    finally:
        _actor.reset(token)


def set_actor(actor, via):
    """For a request: set who acts until the context ends (Flask runs each request in its own context)."""
    _actor.set((actor, via))


def current_actor():
    return _actor.get()


def record(action, target_type, target_id=None, target_name="", *, profile_id=None, summary="",
           before=None, after=None, via=None):
    """Add an entry to the session; the caller commits it with the change."""
    actor, current_via = _actor.get()
    entry = AuditEntry(actor=actor, via=via or current_via, action=action, target_type=target_type,
                       target_id=target_id, target_name=str(target_name or "")[:255], profile_id=profile_id,
                       summary=summary, before=masked(before), after=masked(after))
    db.session.add(entry)
    return entry


SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "private_key", "passphrase")


def masked(value, secret_keys=()):
    """A copy of a snapshot with every secret masked: keys named like a secret, the keys given,
    and any stored ciphertext ("enc:...")."""
    if isinstance(value, dict):
        return {k: (security.MASK if _is_secret(k, v, secret_keys) else masked(v, secret_keys))
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, secret_keys) for v in value]
    return value


def _is_secret(key, value, secret_keys):
    if value in (None, ""):
        return False
    name = str(key).lower()
    return (key in secret_keys or any(word in name for word in SECRET_WORDS)
            or (isinstance(value, str) and value.startswith(security.ENCRYPTED_PREFIX)))


def changes(before, after):
    """{key: (old, new)} of the top-level keys that differ: what an entry's page shows first."""
    before, after = before or {}, after or {}
    return {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after), key=str)
            if before.get(k) != after.get(k)}
