"""Worker heartbeats, and the release of claims whose worker is gone.

A worker process that sends writes its heartbeat to the database every few seconds; a claim
names its worker. When a heartbeat is older than WORKER_STALE_SECONDS the worker is dead, and
its claims go back to waiting at once, not after CLAIM_TIMEOUT_SECONDS. A claim whose
claimant never beat (`exporter files send --now`) waits out the claim timeout. A released
claim's grant goes back to its daily cap: the delivery is counted again when it is claimed again.
"""
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select, update

from . import admission
from .. import windows
from ..extensions import db
from ..models import Delivery, Profile, Worker, utcnow


def beat(name, own_limits_since=None):
    """This worker is alive (made on its first beat), and since when it limits hosts on its own
    (epoch seconds; None while the limits are shared through Redis)."""
    now = utcnow()
    own = datetime.fromtimestamp(own_limits_since, timezone.utc).replace(tzinfo=None) if own_limits_since else None
    if db.session.execute(update(Worker).where(Worker.name == name).values(seen_at=now, limits_own_since=own)
                          .execution_options(synchronize_session=False)).rowcount == 0:
        db.session.add(Worker(name=name, started_at=now, seen_at=now, limits_own_since=own))
    db.session.commit()


def farewell(name):
    """A clean exit: no claims left, nothing to release."""
    db.session.execute(db.delete(Worker).where(Worker.name == name))
    db.session.commit()


def alive(stale_seconds, now=None):
    """The names of the workers whose heartbeat is fresh."""
    since = (now or utcnow()) - timedelta(seconds=stale_seconds)
    return list(db.session.scalars(select(Worker.name).where(Worker.seen_at >= since).order_by(Worker.name)))


def release_stale_claims(claim_timeout, stale_seconds, now=None):
    """Claims of dead workers, and claims older than the claim timeout, are due again now.
    Returns the released deliveries' ids; committed."""
    now = now or utcnow()
    dead = select(Worker.name).where(Worker.seen_at < now - timedelta(seconds=stale_seconds))
    # Read first (rows locked on PostgreSQL): a claim's time says which cap day it counted against.
    # Rows another transaction holds are skipped: another cron's sweep releasing them (two sweeps
    # locking the same rows in their own orders could deadlock), or a recorder finishing them.
    stale = db.session.execute(
        select(Delivery.id, Delivery.profile_id, Delivery.file_date, Delivery.claimed_at)
        .where(Delivery.status == "sending", or_(
            Delivery.claimed_at < now - timedelta(seconds=claim_timeout), Delivery.claimed_by.in_(dead)))
        .order_by(Delivery.id).with_for_update(skip_locked=True)).all()
    released = list(db.session.scalars(
        update(Delivery).where(Delivery.id.in_([r.id for r in stale]), Delivery.status == "sending")
        .values(status="retrying", due_at=utcnow(), claimed_at=None, claimed_by="")
        .returning(Delivery.id).execution_options(synchronize_session=False))) if stale else []
    _refund_caps([r for r in stale if r.id in set(released)])
    # A dead worker's row goes once its claims are back; a day later at the latest.
    db.session.execute(db.delete(Worker).where(Worker.seen_at < now - timedelta(days=1)))
    db.session.commit()
    return released


def _refund_caps(rows):
    """Released per-event claims of capped profiles give their grant back to the day they
    counted against (a day's file is not counted). A claim taken in the moment before its
    worker asked the cap (and died then) was not counted: its refund lets one more through."""
    events = [r for r in rows if r.file_date is None]
    if not events:
        return
    capped = {p.id: p for p in db.session.scalars(select(Profile).where(
        Profile.id.in_({r.profile_id for r in events}), Profile.daily_cap.is_not(None)))}
    admission.refund([(r.profile_id, windows.cap_day(capped[r.profile_id], r.claimed_at))
                      for r in events if r.profile_id in capped])
