"""Intake tokens: made here, stored only as a hash, shown to the admin once."""
from . import audit, security
from .extensions import db
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


def authenticate(token):
    """The live token row for a presented token, its last use noted; None if unknown or revoked."""
    if not token:
        return None
    row = db.session.scalar(db.select(IntakeToken).where(
        IntakeToken.token_hash == security.hash_token(token), IntakeToken.revoked_at.is_(None)))
    now = utcnow()
    if row and (row.last_used_at is None or (now - row.last_used_at).total_seconds() >= LAST_USED_EVERY_SECONDS):
        row.last_used_at = now  # noted once a minute at most: a write per request would slow the intake
    return row
