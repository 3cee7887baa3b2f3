"""Intake tokens: made here, stored only as a hash, shown to the admin once."""
import time
import weakref

from .. import audit, security
from ..extensions import db, writing
from ..models import IntakeToken, utcnow


def create(name):
    token = security.new_token()
    row = IntakeToken(name=name.strip() or "token", token_hash=security.hash_token(token))
    db.session.add(row)
    db.session.flush()
    # The entry names the token, never the token itself (nor its hash).
    audit.record("token.create", "token", row.id, row.name, summary=f"Intake token {row.name!r} created",
                 after={"name": row.name})
    db.session.commit()
    return token


def revoke(row):
    """Revoke a token (once: revoking a revoked token changes nothing)."""
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        _live.pop(db.engine, None)  # this process forgets it at once; the others within LIVE_SECONDS
        audit.record("token.revoke", "token", row.id, row.name, summary=f"Intake token {row.name!r} revoked",
                     before={"name": row.name, "revoked": False}, after={"name": row.name, "revoked": True})
    db.session.commit()


LAST_USED_EVERY_SECONDS = 60
LIVE_SECONDS = 1.0  # a live token is read again after this: a revoked one stops working within it
_live = weakref.WeakKeyDictionary()  # by engine: {token hash: (row, when read)}


# Built once: the intake asks this for every request.
_LIVE = (db.select(IntakeToken.id, IntakeToken.name, IntakeToken.last_used_at)
         .where(IntakeToken.token_hash == db.bindparam("token_hash"), IntakeToken.revoked_at.is_(None)))
_USED = db.update(IntakeToken).where(IntakeToken.id == db.bindparam("token_id")).values(last_used_at=db.bindparam("now"))


def authenticate(token):
    """The live token (id, name, last_used_at) for a presented token, None if unknown or revoked.
    A live token is remembered for LIVE_SECONDS: the CRM's requests come many a second, each would
    read it. Its last use is noted once a minute at most: a write per request would slow the intake."""
    if not token:
        return None
    token_hash, engine, now = security.hash_token(token), db.engine, time.monotonic()
    known = _live.setdefault(engine, {})
    hit = known.get(token_hash)
    if hit is not None and now - hit[1] < LIVE_SECONDS:
        return hit[0]
    # On the session's connection, not through the ORM's execute: a plain row is all it needs.
    row = db.session.connection().execute(_LIVE, {"token_hash": token_hash}).first()
    if row is None:
        known.pop(token_hash, None)
        return None
    if len(known) > 1000:  # only live tokens get here: a bound, not a cache to tune
        known.clear()
    known[token_hash] = (row, now)
    used = utcnow()
    if row.last_used_at is None or (used - row.last_used_at).total_seconds() >= LAST_USED_EVERY_SECONDS:
        with writing():
            db.session.execute(_USED, {"token_id": row.id, "now": used})
            db.session.commit()
    return row
