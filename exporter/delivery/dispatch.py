"""What happens to deliveries besides the send: Retry now, Retry all, cancel, partials that a
sale converts, and the sweeper that keeps every due delivery moving whatever Redis holds.

The send itself is the drain (drain.py). The names the screens use to reach a profile's
export type and mappings are re-exported from sending.py.
"""
import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import any_, func, insert, update

from . import admission, record, schedule, workers
from .. import audit
from ..extensions import among, db
from ..models import Delivery, Event, HistoryEntry, Profile, utcnow
from .schedule import backoff_seconds, enqueue  # noqa: F401  (the screens' and tests' names)
from .sending import (URL_CREDENTIALS, attempt_from, export_type_for, plain_settings, registry,  # noqa: F401
                      renderer_for, secret_names, sensitive_pairs, target_host, url_settings)

log = logging.getLogger(__name__)


# --- admin actions --------------------------------------------------------------------------------

def retry_now(delivery):
    """Make a waiting or cancelled delivery due now; never one a worker is sending. While its
    profile's window is closed (or its cap used up) it is due at the opening instead, with its
    waiting_reason saying so."""
    before = _state(delivery)
    held = admission.held_until(delivery.profile, utcnow())
    made = _make_due([delivery.id], held)
    if made:
        _record(delivery, "delivery.retry", "Retry now", before,
                {"status": "retrying", "due": held[0].isoformat() if held else "now"})
    db.session.commit()
    if not made:
        return False
    db.session.refresh(delivery)
    schedule.wake([held[0] if held else None])  # at the opening: no other wake-up may be on its way
    return True


def retry_all(deliveries, profile=None):
    """Retry now for many: one statement and one wake-up, however many. One audit entry on the
    profile (given, or the deliveries' own when they share one) says how many."""
    profile_ids = {d.profile_id for d in deliveries}
    profile_id = profile.id if profile else (profile_ids.pop() if len(profile_ids) == 1 else None)
    held = None
    if profile_id is not None:
        held = admission.held_until(profile or deliveries[0].profile, utcnow())
    count = _make_due([d.id for d in deliveries], held)
    if count:
        name = profile.name if profile else (deliveries[0].profile.name if profile_id else "")
        summary = f"Retry all: {count} retrying deliveries " + (waits(held[1], "wait") if held else "sent again now")
        audit.record("delivery.retry_all", "profile", profile_id, name, profile_id=profile_id, summary=summary,
                     after={"count": count, **({"due": held[0].isoformat()} if held else {})})
    db.session.commit()
    if count:
        schedule.wake([held[0] if held else None])
    return count


def waits(reason, verb="waits"):
    """'Waiting for the send window: opens ...' as a sentence's verb: 'waits for the send window: ...'."""
    return reason.replace("Waiting", verb, 1)


def _make_due(ids, held=None):
    """Make due now, or at the (when, why) of admission.held_until; the caller commits."""
    if not ids:
        return 0
    due, reason = held or (utcnow(), "")
    # An event whose personal data was purged has nothing left to send.
    purged = db.exists().where(Event.id == Delivery.event_id, Event.purged_at.is_not(None))
    result = db.session.execute(
        update(Delivery).where(Delivery.id.in_(ids), Delivery.status.in_((*Delivery.WAITING, "rejected", "cancelled")),
                               ~purged)
        .values(status="retrying", due_at=due, cancel_reason="", waiting_reason=reason)
        .execution_options(synchronize_session=False))
    return result.rowcount


def _state(delivery):
    return {"status": delivery.status, "due_at": delivery.due_at.isoformat() if delivery.due_at else None,
            "attempts": delivery.attempt_count, "cancel_reason": delivery.cancel_reason or ""}


def _record(delivery, action, summary, before, after):
    audit.record(action, "delivery", delivery.id, f"#{delivery.id} of {delivery.profile.name!r}",
                 profile_id=delivery.profile_id, summary=summary, before=before, after=after)


def cancel_waiting(delivery, reason):
    """Cancel a delivery if it is still waiting (not while a worker sends it); no commit."""
    result = db.session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.status.in_(Delivery.WAITING))
        .values(status="cancelled", cancel_reason=reason).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return False
    db.session.refresh(delivery)
    record.write_history(delivery, f"Export profile '{delivery.profile.name}' cancelled: {reason}")
    return True


def cancel(delivery, reason):
    """An admin's cancel (with its audit entry); the sale's cancel of converted partials is cancel_waiting."""
    before = _state(delivery)
    cancelled = cancel_waiting(delivery, reason)
    if cancelled:
        _record(delivery, "delivery.cancel", f"Cancelled: {reason}", before, _state(delivery))
    db.session.commit()
    return cancelled


def cancel_converted(customer_id, order_id, before_event_id=None):
    """A sale for the same order or customer cancels its waiting partials ("converted"): those
    of events stored before the sale's (before_event_id), when given."""
    return cancel_converted_many([(customer_id, order_id, before_event_id)])


def cancel_converted_many(sales):
    """Each sale (customer id, order id, its event id or None) cancels the waiting partials of its
    customer or order stored before it, as cancel_converted does, for a whole body at once: one
    read (the partial events by customer and order, then their deliveries by event), one
    conditional update, one insert of history messages, however many sales. No commit."""
    latest = {"customer": {}, "order": {}}  # the last sale of each, by event id (None: any partial)
    for customer_id, order_id, sale_id in sales:
        for kind, key in (("customer", customer_id), ("order", order_id)):
            if key is not None and (kind == "order" or key):
                seen = latest[kind].get(key, 0)
                latest[kind][key] = None if sale_id is None or seen is None else max(seen, sale_id)
    if not latest["customer"] and not latest["order"]:
        return 0
    if db.session.get_bind().dialect.name == "postgresql":
        return _cancel_converted_in_one_statement(latest)
    owner = []
    if latest["customer"]:
        owner.append(among(Event.customer_id, latest["customer"]))
    if latest["order"]:
        owner.append(among(Event.order_id, latest["order"]))
    # One statement in two steps, each with a plan that holds whatever the statistics say: the
    # partials of those customers and orders (their indexes), picked once into an array (on
    # PostgreSQL `= ANY(ARRAY(...))`: the subquery runs once, never joined), then their waiting
    # deliveries by event id. A join let a table without statistics yet (a new install) pick a
    # hash join over a scan of deliveries: 23 ms a body where the two reads took 4. The status
    # is written so that no index matches it: a scan of every waiting delivery is what a stale
    # estimate of "few wait" would choose (the conditional update below checks it again). So is
    # the type: without statistics, "few partials" ANDed ix_events_type's every partial (128,000
    # index entries, 4.5 ms a read) with the customers' and orders' few events.
    partials = db.select(Event.id).where(db.or_(*owner), (Event.type + "") == "partial")
    if db.session.get_bind().dialect.name == "postgresql":
        of_partials = Delivery.event_id == any_(func.array(partials.scalar_subquery()))
    else:
        of_partials = Delivery.event_id.in_(partials)
    candidates = [c for c in db.session.execute(
        db.select(Delivery.id, Delivery.event_id, Event.customer_id, Event.order_id,
                  Profile.id.label("profile_id"), Profile.name)
        .join(Event, Delivery.event_id == Event.id).join(Profile, Delivery.profile_id == Profile.id)
        .where(of_partials, (Delivery.status + "").in_(Delivery.WAITING), Profile.skip_converted_partials.is_(True)))
        if _before_a_sale(c, latest)]
    ids = [c.id for c in candidates]
    if not ids:
        return 0
    cancelled = db.session.execute(
        update(Delivery).where(among(Delivery.id, ids), (Delivery.status + "").in_(Delivery.WAITING))  # by primary key
        .values(status="cancelled", cancel_reason="converted")
        .returning(Delivery.id, Delivery.event_id, Delivery.profile_id)
        .execution_options(synchronize_session=False)).all()
    _write_cancel_history(cancelled, {c.id: c.customer_id for c in candidates}, "converted",
                          {c.profile_id: c.name for c in candidates})
    return len(cancelled)


# PostgreSQL: the same in one round trip, written out in SQL (building it with the ORM was a
# tenth of a busy intake's CPU). The last sale of each customer and order comes as arrays; the
# partials are picked once into an array, as below; their waiting deliveries of profiles that
# skip converted partials are cancelled where a sale came after the partial (_before_a_sale), by
# a conditional update that checks the status again on the row it locks; the history is written
# from what the update returns.
_CANCEL_CONVERTED = """
WITH sales (customer_id, order_id, last_id) AS (
    SELECT key, NULL::bigint, last_id FROM unnest(%(customers)s::bigint[], %(customers_last)s::bigint[]) AS s (key, last_id)
    UNION ALL
    SELECT NULL::bigint, key, last_id FROM unnest(%(orders)s::bigint[], %(orders_last)s::bigint[]) AS s (key, last_id)),
cancelled AS (
    UPDATE deliveries AS d SET status = 'cancelled', cancel_reason = 'converted', updated_at = %(now)s
    FROM events AS e, profiles AS p
    WHERE d.event_id = ANY(ARRAY(SELECT id FROM events WHERE (type || '') = 'partial'
                                 AND (customer_id = ANY(%(customers)s::bigint[]) OR order_id = ANY(%(orders)s::bigint[]))))
      AND (d.status || '') IN ('scheduled', 'retrying')
      AND e.id = d.event_id AND p.id = d.profile_id AND p.skip_converted_partials
      AND EXISTS (SELECT 1 FROM sales AS s WHERE (s.customer_id = e.customer_id OR s.order_id = e.order_id)
                  AND (s.last_id IS NULL OR e.id < s.last_id))
    RETURNING d.id, d.event_id, e.customer_id, p.name),
history AS (
    INSERT INTO history_entries (customer_id, event_id, delivery_id, message, created_at)
    SELECT customer_id, event_id, id, 'Export profile ''' || name || ''' cancelled: converted', %(now)s
    FROM cancelled WHERE customer_id IS NOT NULL)
SELECT count(*) FROM cancelled
"""


def _cancel_converted_in_one_statement(latest):
    params = {"now": utcnow()}
    for kind in ("customer", "order"):
        params[kind + "s"], params[kind + "s_last"] = list(latest[kind]), list(latest[kind].values())
    return db.session.connection().exec_driver_sql(_CANCEL_CONVERTED, params).scalar()


def _before_a_sale(candidate, latest):
    """Whether a sale of the partial's customer or order was stored after it."""
    for kind, key in (("customer", candidate.customer_id), ("order", candidate.order_id)):
        if key in latest[kind]:
            last = latest[kind][key]
            if last is None or candidate.event_id < last:
                return True
    return False


def _write_cancel_history(cancelled, customers, reason, names):
    """The customers' history messages of cancelled per-event deliveries, in one insert; names:
    the profiles' names by id (read with the deliveries: no statement more)."""
    now = utcnow()
    rows = [dict(customer_id=customers[r.id], event_id=r.event_id, delivery_id=r.id, created_at=now,
                 message=f"Export profile '{names[r.profile_id]}' cancelled: {reason}")
            for r in cancelled if customers.get(r.id)]
    if rows:
        db.session.execute(insert(HistoryEntry.__table__), rows)


# --- the sweeper --------------------------------------------------------------------------------

def sweep(now=None):
    """Release claims of dead workers (their heartbeat stopped) and of sends older than the claim
    timeout; wake a drain when due deliveries wait, whatever Redis holds (a scheduled wake-up may
    sit in a registry that no scheduler moves)."""
    cfg = current_app.config
    now = now or utcnow()
    released = workers.release_stale_claims(cfg["CLAIM_TIMEOUT_SECONDS"], cfg["WORKER_STALE_SECONDS"], now)
    stale = now - timedelta(seconds=cfg["SWEEP_GRACE_SECONDS"])
    waiting = db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(
        Delivery.status.in_(Delivery.WAITING), Delivery.due_at <= stale))
    woke = bool(released or waiting) and schedule.wake()
    return {"released": len(released), "due": waiting, "woke": bool(woke)}
