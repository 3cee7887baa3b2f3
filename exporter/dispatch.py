"""A delivery's life: schedule, claim, render, send, record, retry.

At-least-once: a delivery is claimed with a conditional UPDATE (one worker at a time,
never before it is due), and every failure schedules the next try until it succeeds
or an admin cancels it.
"""
import logging
import math
import random
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import update

from . import catalog, mapping, queue, security
from .export_types import Batch, Outcome
from .extensions import db
from .models import Attempt, Delivery, Event, HistoryEntry, Profile, utcnow

log = logging.getLogger(__name__)
RESPONSE_EXCERPT = 2000


# --- profiles and their types -----------------------------------------------------------

def registry():
    return current_app.extensions["export_types"]


def plain_settings(profile):
    """The profile's settings with its type's secrets decrypted, for the type's own use only."""
    cls = registry().get(profile.export_type)
    secret_names = cls.secret_settings if cls else ()
    key = current_app.config["SECRET_KEY"]
    return {k: security.decrypt(key, v) if k in secret_names else v for k, v in (profile.settings or {}).items()}


def export_type_for(profile):
    """The profile's export type with its settings decrypted, and the (secret, mask) pairs to
    redact from what is logged. ValueError when a stored secret cannot be decrypted."""
    cls = registry().get(profile.export_type)
    if cls is None:
        raise LookupError(f"export type {profile.export_type!r} is not installed")
    plain = plain_settings(profile)
    return cls(plain), [(plain[name], security.MASK) for name in cls.secret_settings if plain.get(name)]


def renderer_for(profile):
    """The profile's mappings as they are now, compiled (a worker's job runs in a fresh process:
    there is nothing worth caching across sends)."""
    return mapping.compile(profile.mappings)


def event_record(event, profile):
    card = None
    if event.card_number and profile.pci_documented:
        card = security.decrypt(current_app.config["SECRET_KEY"], event.card_number)
    order = security.opened_order(event.order, current_app.config["SECRET_KEY"], profile.pci_documented)
    return catalog.record_from_order(order, event.type, card_number=card)


def target_host(profile):
    """The host a profile sends to, for per-host limits and the dashboard."""
    settings = profile.settings or {}
    url = settings.get("url") or ""
    return urlsplit(url).hostname or settings.get("host") or ""


# --- scheduling ---------------------------------------------------------------------------

def minutes(n):
    return timedelta(seconds=n * current_app.config["MINUTE_SECONDS"])


def new_delivery(profile, event, route_id):
    """A delivery of one event for one profile, due at occurred_at + Export Delay."""
    delivery = Delivery(profile=profile, event=event, route_id=route_id, status="scheduled",
                        due_at=event.occurred_at + minutes(profile.delay_minutes), target=target_host(profile))
    db.session.add(delivery)
    return delivery


def enqueue(delivery):
    """Hand a committed delivery to RQ. A failure here loses nothing: the sweeper finds it."""
    cfg = current_app.config
    if not cfg.get("REDIS_URL"):
        return None
    try:
        # A send may take as long as its claim lasts (a big daily file): not RQ's 3-minute default.
        return queue.enqueue_delivery(queue.get_queue(cfg["REDIS_URL"], cfg["QUEUE_NAME"]),
                                      delivery.id, delivery.due_at, rate_limit=rate_limit_for(delivery),
                                      job_timeout=int(cfg["CLAIM_TIMEOUT_SECONDS"]))
    except Exception:
        log.exception("could not enqueue delivery %s; the sweeper will", delivery.id)
        return None


def rate_limit_for(delivery):
    """At most HOST_CONCURRENCY requests in flight to one host (RQ's RateLimit)."""
    limit = current_app.config.get("HOST_CONCURRENCY")
    if not limit or not delivery.target:
        return None
    from rq.rate_limit import RateLimit

    return RateLimit(key=f"exporter-host:{delivery.target}", concurrency=int(limit))


def backoff_seconds(attempt_count, retry_after=None):
    """30 s doubling per failed try, capped at an hour (both configurable), with ±20 % jitter."""
    cfg = current_app.config
    base, cap = float(cfg["RETRY_BASE_SECONDS"]), float(cfg["RETRY_MAX_SECONDS"])
    if _seconds(retry_after) is not None:  # a plugin's odd value (nan, "soon") falls back to backoff
        return min(max(_seconds(retry_after), 0.0), cap)
    delay = min(cap, base * 2 ** max(attempt_count - 1, 0))
    return min(cap, delay * random.uniform(0.8, 1.2))


def _seconds(value):
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) else None


# --- sending -------------------------------------------------------------------------------

def claim(delivery_id, now=None):
    """Take a due, waiting delivery for this worker: its claim time, or None when another has it
    or it is not due."""
    now = now or utcnow()
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(Delivery.WAITING), Delivery.due_at <= now)
        .values(status="sending", claimed_at=now, attempt_count=Delivery.attempt_count + 1)
        .execution_options(synchronize_session=False))
    db.session.commit()
    return now if result.rowcount == 1 else None


def deliver(delivery_id):
    """Send one delivery if it is due and unclaimed; record the attempt; retry or finish."""
    claimed_at = claim(delivery_id)
    if claimed_at is None:
        delivery = db.session.get(Delivery, delivery_id)
        if delivery and delivery.status in Delivery.WAITING and delivery.due_at > utcnow():
            enqueue(delivery)  # woke early (a clock skew, a retry moved later): wait for its time
            return "not due"
        return "skipped"
    delivery = db.session.get(Delivery, delivery_id)
    started = utcnow()
    secrets_ = []
    try:
        export_type, secrets_ = export_type_for(delivery.profile)
        batch, sensitive = build_batch(delivery)
        secrets_ += sensitive
        outcome = export_type.send(batch)
    except Exception as exc:  # a plugin's bug, a bad profile, an undecryptable secret: a failed try
        log.exception("delivery %s failed to send", delivery_id)
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    record(delivery, outcome, started, secrets_, claimed_at)
    return "delivered" if outcome.ok else "retrying"


def build_batch(delivery):
    """The batch for a delivery and the (raw, masked) pairs to redact from what is logged."""
    profile = delivery.profile
    if delivery.file_date is not None:  # a day's file; a per-event delivery never has one
        from . import daily_files

        return daily_files.build_batch(delivery)
    renderer = renderer_for(profile)
    row = renderer(event_record(delivery.event, profile))
    batch = Batch(columns=renderer.columns, rows=[row], profile_name=profile.name,
                  idempotency_key=str(delivery.id), route_id=delivery.route_id,
                  allow_private_targets=bool(current_app.config["ALLOW_PRIVATE_TARGETS"]))
    return batch, sensitive_pairs(renderer, [row])


def sensitive_pairs(renderer, rows):
    """(raw, masked) for each sensitive value of the rows, to redact from what is logged."""
    return [(raw, masked) for row in rows for (_, raw), (_, masked) in zip(row, renderer.masked(row))
            if raw != masked]


def attempt_from(outcome, secrets_, **fields):
    def r(text):
        return security.redact(text or "", secrets_)

    return Attempt(
        ok=outcome.ok, method=outcome.method, target=r(outcome.target),
        request_headers={k: r(str(v)) for k, v in (outcome.request_headers or {}).items()},
        request_body=r(outcome.request_body), status=outcome.status,
        response_headers={k: r(str(v)) for k, v in (outcome.response_headers or {}).items()},
        response_body=r((outcome.response_body or "")[:RESPONSE_EXCERPT]),
        elapsed_ms=outcome.elapsed_ms, error=r(outcome.error), **fields)


def record(delivery, outcome, started, secrets_, claimed_at):
    """Store the attempt, then finish the delivery or schedule its next try.

    The delivery changes only while this worker still holds its claim: if the sweeper released
    it (this send outlived CLAIM_TIMEOUT_SECONDS) the attempt is kept, and the newer claim decides.
    """
    db.session.add(attempt_from(outcome, secrets_, delivery_id=delivery.id, number=delivery.attempt_count,
                                started_at=started, profile_id=delivery.profile_id))
    now = utcnow()
    values = {"claimed_at": None}
    if outcome.details:
        values["details"] = {**(delivery.details or {}), **outcome.details}
    if outcome.ok:
        values.update(status="delivered", delivered_at=now, last_error="")
    else:
        values.update(status="retrying", last_error=security.redact(outcome.error or f"HTTP {outcome.status}", secrets_),
                      due_at=now + timedelta(seconds=backoff_seconds(delivery.attempt_count, outcome.retry_after)))
    held = db.session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.status == "sending",
                               Delivery.claimed_at == claimed_at)
        .values(**values).execution_options(synchronize_session=False)).rowcount == 1
    if held:
        db.session.refresh(delivery)
        if outcome.ok:
            summary = outcome.summary or f"{delivery.profile.export_type} delivered"
            write_history(delivery, f"Export profile '{delivery.profile.name}' fired: {summary}")
    else:
        log.warning("delivery %s: claim lost while sending; attempt kept, status left to the newer claim", delivery.id)
    db.session.commit()
    if held and not outcome.ok:
        enqueue(delivery)
    return held


def write_history(delivery, message):
    """A message in the customer's history; a daily file writes one per customer in it."""
    if delivery.file_date is not None:
        from . import daily_files

        return daily_files.write_history(delivery, message)
    event = delivery.event
    if event is not None and event.customer_id:
        db.session.add(HistoryEntry(customer_id=event.customer_id, event_id=event.id,
                                    delivery_id=delivery.id, message=message))


# --- admin actions and the sweeper -----------------------------------------------------------

def retry_now(delivery):
    """Make a waiting or cancelled delivery due now; never one a worker is sending."""
    result = db.session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.status.in_((*Delivery.WAITING, "cancelled")))
        .values(status="retrying", due_at=utcnow(), cancel_reason="")
        .execution_options(synchronize_session=False))
    db.session.commit()
    if result.rowcount != 1:
        return False
    db.session.refresh(delivery)
    enqueue(delivery)
    return True


def cancel_waiting(delivery, reason):
    """Cancel a delivery if it is still waiting (not while a worker sends it); no commit."""
    result = db.session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.status.in_(Delivery.WAITING))
        .values(status="cancelled", cancel_reason=reason).execution_options(synchronize_session=False))
    if result.rowcount != 1:
        return False
    db.session.refresh(delivery)
    write_history(delivery, f"Export profile '{delivery.profile.name}' cancelled: {reason}")
    return True


def cancel(delivery, reason):
    cancelled = cancel_waiting(delivery, reason)
    db.session.commit()
    return cancelled


def cancel_converted(customer_id, order_id):
    """A sale for the same order or customer cancels its waiting partials ("converted")."""
    owner = [Event.customer_id == customer_id] if customer_id else []
    if order_id is not None:
        owner.append(Event.order_id == order_id)
    if not owner:
        return 0
    waiting = db.session.scalars(
        db.select(Delivery).join(Event, Delivery.event_id == Event.id).join(Profile)
        .where(Delivery.status.in_(Delivery.WAITING), Event.type == "partial",
               Profile.skip_converted_partials.is_(True), db.or_(*owner))).all()
    return sum(cancel_waiting(d, "converted") for d in waiting)


def sweep(now=None):
    """Release claims of dead workers; re-enqueue due deliveries that no job carries."""
    cfg = current_app.config
    now = now or utcnow()
    released = release_stale_claims(now - timedelta(seconds=cfg["CLAIM_TIMEOUT_SECONDS"]))
    q = queue.get_queue(cfg["REDIS_URL"], cfg["QUEUE_NAME"])
    stale = now - timedelta(seconds=cfg["SWEEP_GRACE_SECONDS"])
    due = db.session.scalars(
        db.select(Delivery).where(Delivery.status.in_(Delivery.WAITING), Delivery.due_at <= stale)).all()
    requeued = 0
    for delivery in {*due, *released}:
        if not queue.has_live_job(q, queue.delivery_job_id(delivery.id, delivery.due_at)):
            enqueue(delivery)
            requeued += 1
    return {"released": len(released), "requeued": requeued}


def release_stale_claims(claimed_before):
    """Deliveries claimed before this time belong to a dead worker: due again now."""
    stale = db.session.scalars(db.select(Delivery).where(
        Delivery.status == "sending", Delivery.claimed_at < claimed_before)).all()
    released = []
    for delivery in stale:
        result = db.session.execute(
            update(Delivery).where(Delivery.id == delivery.id, Delivery.status == "sending",
                                   Delivery.claimed_at == delivery.claimed_at)
            .values(status="retrying", due_at=utcnow(), claimed_at=None)
            .execution_options(synchronize_session=False))
        if result.rowcount == 1:
            released.append(delivery)
    db.session.commit()
    for delivery in released:
        db.session.refresh(delivery)
    return released
