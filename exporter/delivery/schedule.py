"""When deliveries go out: a new delivery's due time, backoff after a failure, and waking the
workers at due times. The database says what is due; RQ only wakes a drain (dispatch.drain)
at the right moment, and the sweeper wakes one whatever Redis holds.
"""
import logging
import math
import random
from datetime import timedelta

from flask import current_app

from sqlalchemy import bindparam, select

from . import queue
from .. import windows
from ..extensions import db
from ..models import Delivery, Event, utcnow

log = logging.getLogger(__name__)


def minutes(n):
    """An Export Delay of n minutes (a minute is MINUTE_SECONDS: tests shorten it)."""
    return timedelta(seconds=n * current_app.config["MINUTE_SECONDS"])


def due_at(profile, occurred_at):
    """After the Export Delay, and inside the profile's send window: never early."""
    return due_times(profile)(occurred_at)


def due_times(profile, now=None):
    """due_at for many events of one profile: its window and delay read once (an intake body).
    With a window, an old event (a CRM that posts late) is due at the window's next opening
    from now, not at an opening already past, which no wake-up would ever come for."""
    window, delay = windows.of(profile), minutes(profile.delay_minutes)
    if window is None:
        return lambda occurred_at: occurred_at + delay
    now = now or utcnow()
    return lambda occurred_at: windows.next_open(window, max(occurred_at + delay, now))


def rewindow(profile, old_window, now=None):
    """A profile's window changed (General Settings, the profiles JSON): its waiting deliveries
    that the old window held until an opening are due when the new window lets them go, not
    at the old opening. Never earlier than now, nor than a new delivery's Export Delay; a retry's
    backoff is not kept (like Retry now), and a day's file and a delivery over the daily cap keep
    their time. The new due times, to wake a drain at once the caller commits."""
    new_window = windows.of(profile)
    if old_window is None or new_window == old_window:
        return []
    now = now or utcnow()
    rows = db.session.execute(
        select(Delivery.id, Delivery.due_at, Delivery.attempt_count, Event.occurred_at)
        .outerjoin(Event, Event.id == Delivery.event_id)
        .where(Delivery.profile_id == profile.id, Delivery.status.in_(Delivery.WAITING), Delivery.due_at > now,
               Delivery.file_date.is_(None), ~Delivery.waiting_reason.startswith("Waiting: the daily cap"))).all()
    moved = []
    for row in rows:
        if not windows.is_opening(old_window, row.due_at):
            continue  # due after its own delay or backoff, not held by the window
        earliest = now
        if row.attempt_count == 0 and row.occurred_at is not None:
            earliest = max(now, row.occurred_at + minutes(profile.delay_minutes))
        due = windows.next_open(new_window, earliest)
        if due != row.due_at:
            moved.append({"b_id": row.id, "b_due": due})
    if moved:
        d = Delivery.__table__.c
        db.session.execute(Delivery.__table__.update().where(d.id == bindparam("b_id"), d.status.in_(Delivery.WAITING))
                           .values(due_at=bindparam("b_due"), waiting_reason=""), moved)
    return [m["b_due"] for m in moved]


def timedelta_seconds(seconds):
    return timedelta(seconds=seconds)


def backoff_seconds(attempt_count, retry_after=None):
    """30 s doubling per failed try, capped at an hour (both configurable), with ±20 % jitter."""
    cfg = current_app.config
    base, cap = float(cfg["RETRY_BASE_SECONDS"]), float(cfg["RETRY_MAX_SECONDS"])
    if seconds(retry_after) is not None:  # a plugin's odd value (nan, "soon") falls back to backoff
        return min(max(seconds(retry_after), 0.0), cap)
    delay = min(cap, base * 2 ** max(attempt_count - 1, 0))
    return min(cap, delay * random.uniform(0.8, 1.2))


def seconds(value):
    """A Retry-After or setting as finite seconds, None when it is not one."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) else None


def drain_timeout():
    """How long a drain job may run: its claiming time, then the sends it has in hand."""
    cfg = current_app.config
    return int(cfg["DRAIN_SECONDS"]) + int(cfg["CLAIM_TIMEOUT_SECONDS"])


def wake(due_times=(None,)):
    """Wake a drain at each due time (naive UTC; None or a past time: now). One Redis round trip
    when a drain is already on its way. A failure loses nothing: the sweeper wakes one."""
    cfg = current_app.config
    if not cfg.get("REDIS_URL"):
        return False
    now = utcnow()
    times = {None if t is None or t <= now else t for t in due_times}
    try:
        queue.wake(queue.connect(cfg["REDIS_URL"]), cfg["QUEUE_NAME"], times, job_timeout=drain_timeout())
        return True
    except Exception:
        log.exception("could not wake a drain; the sweeper will")
        return False


def ack_wake():
    """A drain starting: it will see every delivery committed before now, so the next wake-up
    must enqueue a new drain."""
    cfg = current_app.config
    if cfg.get("REDIS_URL"):
        try:
            queue.ack_wake(queue.connect(cfg["REDIS_URL"]), cfg["QUEUE_NAME"])
        except Exception:
            log.exception("could not acknowledge the wake-up")



def enqueue(delivery):
    """Make sure a committed delivery will be sent at its due time (a day's file too)."""
    return wake([delivery.due_at])
