"""Intake tokens: made here, stored only as a hash, shown to the admin once."""
from . import audit, security
from .extensions import db, writing
from .models import IntakeToken, utcnow


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
        audit.record("token.revoke", "token", row.id, row.name, summary=f"Intake token {row.name!r} revoked",
                     before={"name": row.name, "revoked": False}, after={"name": row.name, "revoked": True})
    db.session.commit()


LAST_USED_EVERY_SECONDS = 60


# Built once: the intake asks this for every request.
_LIVE = (db.select(IntakeToken.id, IntakeToken.name, IntakeToken.last_used_at)
         .where(IntakeToken.token_hash == db.bindparam("token_hash"), IntakeToken.revoked_at.is_(None)))
_USED = db.update(IntakeToken).where(IntakeToken.id == db.bindparam("token_id")).values(last_used_at=db.bindparam("now"))


def authenticate(token):
    """The live token (id, name, last_used_at) for a presented token, None if unknown or revoked.
    Its last use is noted once a minute at most: a write per request would slow the intake."""
    if not token:
        return None
    # On the session's connection, not through the ORM's execute: a plain row is all it needs.
    row = db.session.connection().execute(_LIVE, {"token_hash": security.hash_token(token)}).first()
    now = utcnow()
    if row and (row.last_used_at is None or (now - row.last_used_at).total_seconds() >= LAST_USED_EVERY_SECONDS):
        with writing():
            db.session.execute(_USED, {"token_id": row.id, "now": now})
            db.session.commit()
    return row
