"""What a claim may send now: send windows and daily caps (issue 12; the arithmetic is windows.py).

The drain claims first, then asks `admit`: a row whose profile's window is closed goes back to
waiting until the opening, and a capped profile's rows take grants from its day's count (one
conditional UPDATE, so workers together never pass the cap); the rest wait for the next day or
are skipped. Rows of profiles with neither cost nothing here.
"""
from collections import Counter, defaultdict

from sqlalchemy import case, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from . import schedule
from .. import windows
from ..extensions import db, writing
from ..models import Delivery, Event, HistoryEntry, SendCount, utcnow

DELIVERIES = Delivery.__table__


def admit(rows, claimed_at, profiles, worker):
    """The claimed rows that may go now, and the cap day each counted against. A row whose
    profile's send window is closed waits for its opening (a due time set before the window
    changed, a Retry now); past the profile's daily cap, for the next day, or it is skipped.
    Rows of profiles with neither cost no statement."""
    limited = defaultdict(list)
    for row in rows:
        profile = profiles[row.profile_id]
        if profile.window_start is not None or profile.daily_cap:
            limited[row.profile_id].append(row)
    if not limited:
        return rows, {}
    held, counted, waits, skips = set(), {}, [], []
    with writing():
        for profile_id, mine in limited.items():
            profile = profiles[profile_id]
            window = windows.of(profile)
            held.update(r.id for r in mine)
            if not windows.is_open(window, claimed_at):
                opens = windows.next_open(window, claimed_at)
                waits.append((mine, opens, windows.waiting_for_window(window, opens)))
                continue
            admitted, over = _within_cap(profile, sorted(mine, key=lambda r: r.id), claimed_at, counted)
            held.difference_update(r.id for r in admitted)
            if over and profile.over_cap == "skip":
                skips.append((profile, over))
            elif over:
                opens = windows.after_cap(profile, claimed_at)
                waits.append((over, opens, windows.waiting_for_cap(profile.daily_cap, windows.time_zone(profile), opens)))
        for waiting, due, reason in waits:
            _put_back(waiting, claimed_at, worker, due_at=due, waiting_reason=reason,
                      status=case((DELIVERIES.c.attempt_count <= 1, "scheduled"), else_="retrying"))
        for profile, over in skips:
            _skip(profile, over, claimed_at, worker)
        db.session.commit()
    if waits:
        schedule.wake([due for _, due, _ in waits])
    return [r for r in rows if r.id not in held], counted


def held_until(profile, at):
    """(when, why) a delivery of the profile made due at `at` would wait till: its send window is
    closed, or its daily cap is used up for the day; None when it may go. For Retry now and
    Retry all, which would otherwise say "now" of a delivery the claim puts back."""
    window = windows.of(profile)
    if not windows.is_open(window, at):
        opens = windows.next_open(window, at)
        return opens, windows.waiting_for_window(window, opens)
    if profile.daily_cap:
        c = SendCount.__table__.c
        sent = db.session.scalar(select(c.sent).where(c.profile_id == profile.id,
                                                      c.day == windows.cap_day(profile, at))) or 0
        if sent >= profile.daily_cap:
            opens = windows.after_cap(profile, at)
            return opens, windows.waiting_for_cap(profile.daily_cap, windows.time_zone(profile), opens)
    return None


def _within_cap(profile, rows, claimed_at, counted):
    """(rows the cap lets go, rows over it), oldest first; a day's file is not counted."""
    events = [r for r in rows if r.file_date is None]
    if not profile.daily_cap or not events:
        return rows, []
    day = windows.cap_day(profile, claimed_at)
    granted = _grant(profile.id, day, profile.daily_cap, len(events))
    counted.update((r.id, day) for r in events[:granted])
    over = {r.id for r in events[granted:]}
    return [r for r in rows if r.id not in over], events[granted:]


def _grant(profile_id, day, cap, wanted):
    """How many of `wanted` sends the cap still allows today: one conditional UPDATE of the
    profile's count (a row lock on PostgreSQL, the one writer on SQLite), so two workers never
    grant more than the cap between them."""
    counts = SendCount.__table__
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    db.session.execute(dialect.insert(counts).values(profile_id=profile_id, day=day, sent=0, last_grant=0)
                       .on_conflict_do_nothing())
    c = counts.c
    grant = case((c.sent >= cap, 0), (c.sent + wanted > cap, cap - c.sent), else_=wanted)
    return db.session.execute(counts.update().where(c.profile_id == profile_id, c.day == day)
                              .values(last_grant=grant, sent=c.sent + grant).returning(c.last_grant)).scalar_one()


def refund(taken):
    """Grants of sends that never started (claims given back) go back to their day's count."""
    c = SendCount.__table__.c
    for (profile_id, day), n in Counter(taken).items():
        db.session.execute(SendCount.__table__.update().where(c.profile_id == profile_id, c.day == day)
                           .values(sent=func.max(c.sent - n, 0) if db.engine.dialect.name == "sqlite"
                                   else func.greatest(c.sent - n, 0)))


def _put_back(rows, claimed_at, worker, **values):
    """Claimed rows back to waiting, this try not counted, while this claim holds."""
    d = DELIVERIES.c
    db.session.execute(DELIVERIES.update().where(
        d.id.in_([r.id for r in rows]), d.status == "sending", d.claimed_at == claimed_at,
        d.claimed_by == worker)
        .values(claimed_at=None, claimed_by="", attempt_count=d.attempt_count - 1, **values))


def _skip(profile, rows, claimed_at, worker):
    """Over the cap with "skip": cancelled, with a message in each customer's history."""
    _put_back(rows, claimed_at, worker, status="cancelled", cancel_reason=f"daily cap of {profile.daily_cap} reached")
    event_ids = [r.event_id for r in rows if r.event_id is not None]
    customers = dict(db.session.execute(select(Event.id, Event.customer_id).where(Event.id.in_(event_ids))).all())
    history = [dict(customer_id=customers[r.event_id], event_id=r.event_id, delivery_id=r.id, created_at=utcnow(),
                    message=f"Not exported: {profile.name} reached its daily cap of {profile.daily_cap}")
               for r in rows if customers.get(r.event_id)]
    if history:
        db.session.execute(insert(HistoryEntry.__table__), history)
