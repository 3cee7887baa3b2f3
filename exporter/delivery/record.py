"""Recording: what a send leaves. Attempts, statuses and history in bulk for the engine's sends;
one send recorded on its own for a day's file and `files send --now`. A result is stored on a
delivery only while the claim that sent it still holds."""
import functools
import logging
from collections import defaultdict

from flask import current_app
from sqlalchemy import bindparam, insert, update

from .. import security, windows
from ..export_types import Batch, Outcome
from ..extensions import db, writing
from ..models import Attempt, Delivery, HistoryEntry, utcnow
from . import admission, circuit, reversals, schedule, sending, suppression
from .claim import DELIVERIES, circuits_changed
from .heartbeat import worker_name

log = logging.getLogger(__name__)

PURGED = "personal data purged"  # the cancel reason of a claimed delivery whose event was purged meanwhile


def cancel_purged(rows, claimed_at, counted, worker=None):
    """Claimed deliveries whose event's personal data was purged while they waited (retention,
    Forget): cancelled, never sent; the try and any cap grant given back."""
    d = DELIVERIES.c
    with writing():
        db.session.execute(DELIVERIES.update().where(
            d.id.in_([r.id for r in rows]), d.status == "sending", d.claimed_at == claimed_at,
            d.claimed_by == (worker or worker_name()))
            .values(status="cancelled", cancel_reason=PURGED, claimed_at=None, claimed_by="",
                    attempt_count=d.attempt_count - 1))
        admission.refund([(r.profile_id, counted[r.id]) for r in rows if r.id in counted])
        db.session.commit()
    log.warning("deliveries %s: their event's personal data was purged; cancelled, not sent", [r.id for r in rows])



def before_send(rows, profiles, events, claimed_at, counted, worker=None):
    """Reversals and duplicate suppression, for claimed rows about to be rendered: the reversal
    plans by row id (send with the original's fields, or wait for it), and the ids cancelled here
    (never exported originals, duplicates), each with its history message."""
    plans, cancels, keys, seen, now = {}, [], {}, {}, utcnow()
    for row in rows:
        event = events.get(row.event_id)
        if row.file_date is not None or event is None:
            continue
        profile = profiles[row.profile_id]
        if reversals.is_reversal(profile, event.type):
            plan = plans[row.id] = reversals.plan(profile, event.order_id)
            if plan.action == "cancel":
                cancels.append((row, event, plan.message, plan.history))
                continue
        if profile.dedupe_days:
            key = suppression.key_of(profile, event.order or {}, event.type)
            prior = key and (seen.get((profile.id, key)) or suppression.earlier(profile, key, row.id, now))
            if prior:
                cancels.append((row, event, suppression.reason(profile, prior), suppression.history(profile)))
                continue
            if key:
                seen[(profile.id, key)] = keys[row.id] = key
    if cancels or keys or any(p.original_id for p in plans.values()):
        _write_before_send(cancels, keys, plans, claimed_at, counted, worker or worker_name())
    return plans, {row.id for row, *_ in cancels}


def _write_before_send(cancels, keys, plans, claimed_at, counted, worker):
    d = DELIVERIES.c
    with writing():
        for row, event, reason, message in cancels:  # the try is not counted, nor the cap's grant
            cancelled = db.session.execute(DELIVERIES.update().where(
                d.id == row.id, d.status == "sending", d.claimed_at == claimed_at, d.claimed_by == worker)
                .values(status="cancelled", cancel_reason=reason[:255], claimed_at=None, claimed_by="",
                        attempt_count=d.attempt_count - 1)).rowcount
            if cancelled and event.customer_id:
                db.session.add(HistoryEntry(customer_id=event.customer_id, event_id=event.id, delivery_id=row.id,
                                            message=message))
        admission.refund([(row.profile_id, counted[row.id]) for row, *_ in cancels if row.id in counted])
        if keys:
            db.session.execute(DELIVERIES.update().where(d.id == bindparam("b_id")).values(dedupe_key=bindparam("b_key")),
                               [{"b_id": i, "b_key": k} for i, k in keys.items()])
        for delivery_id, plan in plans.items():
            delivery = db.session.get(Delivery, delivery_id) if plan.original_id else None
            if delivery is not None and (delivery.details or {}).get("original_delivery") != plan.original_id:
                delivery.details = {**(delivery.details or {}), "original_delivery": plan.original_id}
        db.session.commit()


def record_many(app, worker, sents):
    """Store finished sends in one transaction: every attempt; each delivery whose claim still
    holds delivered (with its history message) or retrying at its next time."""
    with app.app_context(), writing():
        now = utcnow()
        db.session.execute(insert(Attempt.__table__), [
            sending.attempt_values(s.outcome, s.secrets, delivery_id=s.delivery_id, number=s.attempt_count,
                                   started_at=s.started_at, profile_id=s.profile_id, is_test=False) for s in sents])
        held = _mark_delivered(worker, [s for s in sents if s.outcome.ok], now)
        _keep_captured([s for s in sents if s.outcome.ok and s.outcome.captured and s.delivery_id in held])
        rejected = _mark_rejected(worker, [s for s in sents if not s.outcome.ok and s.outcome.rejected])
        history = [dict(customer_id=s.customer_id, event_id=s.event_id, delivery_id=s.delivery_id, created_at=now,
                        message=history_message(s.profile_name, s.outcome, s.secrets))
                   for s in sents if (s.delivery_id in held or s.delivery_id in rejected) and s.customer_id]
        if history:
            db.session.execute(insert(HistoryEntry.__table__), history)
        retries = _mark_retrying(worker, [s for s in sents if not s.outcome.ok and not s.outcome.rejected], now)
        _merge_details(worker, [s for s in sents if s.outcome.details])
        retries |= _record_circuits([(s.host, s.outcome, s.started_at) for s in sents], now)
        db.session.commit()
        lost = [s.delivery_id for s in sents if s.outcome.ok and s.delivery_id not in held]
        if lost:
            log.warning("deliveries %s: claim lost while sending; attempts kept, status left to the newer claim", lost)
        if retries:
            schedule.wake(retries)


def _record_circuits(sends, now=None):
    """Each host's successes and failures in this batch, for its circuit; the probe times to wake at."""
    cfg = current_app.config
    results = {}
    for host, outcome, started in sends:
        ok, failed, error, last_started = results.get(host, (0, 0, "", None))
        if outcome.ok:
            ok += 1
        elif circuit.host_failure(outcome):
            failed, error = failed + 1, outcome.error or f"HTTP {outcome.status}"
            last_started = max(filter(None, (last_started, started)), default=None)
        results[host] = (ok, failed, error, last_started)
    changed = circuit.record(results, int(cfg["CIRCUIT_FAILURES"]), cfg["CIRCUIT_PROBE_SECONDS"],
                             cfg["RETRY_MAX_SECONDS"], now)
    if changed:  # a host went down or came back: this worker's next claim reads the circuits again
        circuits_changed()
    return changed


def _mark_delivered(worker, sents, now):
    held = set()
    by_claim = defaultdict(list)
    for s in sents:
        by_claim[s.claimed_at].append(s.delivery_id)
    for claimed_at, ids in by_claim.items():
        held.update(db.session.scalars(_delivered_statement(), {
            "ids": ids, "claimed": claimed_at, "worker": worker, "now": now}))
    return held


@functools.cache
def _delivered_statement():
    d = DELIVERIES.c
    return (DELIVERIES.update().where(d.id.in_(bindparam("ids", expanding=True)), d.status == "sending",
                                      d.claimed_at == bindparam("claimed"), d.claimed_by == bindparam("worker"))
            .values(status="delivered", delivered_at=bindparam("now"), last_error="", claimed_at=None, claimed_by="")
            .returning(d.id))


def history_message(profile_name, outcome, secrets_=()):
    """The customer's history line for a send that ended: delivered (naming what the partner gave
    back) or rejected for good (in the partner's words)."""
    if outcome.ok:
        summary = outcome.summary or "delivered"
        if outcome.captured:
            summary += f", partner id {outcome.captured}"
        return security.redact(f"Export profile '{profile_name}' fired: {summary}", secrets_)
    return security.redact(f"Export profile '{profile_name}' {outcome.error.splitlines()[0]}", secrets_)


def _keep_captured(sents):
    """What each delivered send's answer gave back (a capture rule), kept on its delivery."""
    if sents:
        db.session.execute(DELIVERIES.update().where(DELIVERIES.c.id == bindparam("b_id"))
                           .values(captured_id=bindparam("b_captured")),
                           [{"b_id": s.delivery_id, "b_captured": s.outcome.captured[:255]} for s in sents])


def _mark_rejected(worker, sents):
    """Refused for good by the partner (a rejection rule): finished, never retried. The ids held."""
    d, held = DELIVERIES.c, set()
    for s in sents:
        error = security.redact(s.outcome.error, s.secrets)
        held.update(db.session.scalars(
            DELIVERIES.update().where(d.id == s.delivery_id, d.status == "sending", d.claimed_at == s.claimed_at,
                                      d.claimed_by == worker)
            .values(status="rejected", last_error=error, claimed_at=None, claimed_by="").returning(d.id)))
    return held


def _mark_retrying(worker, sents, now):
    """Each failed delivery due again after its backoff; the due times, to wake a drain then."""
    if not sents:
        return set()
    d = DELIVERIES.c
    params = []
    for s in sents:
        due = now + schedule.timedelta_seconds(schedule.backoff_seconds(s.attempt_count, s.outcome.retry_after))
        due = windows.next_open(s.window, due)  # a retry waits for the send window too
        error = security.redact(s.outcome.error or f"HTTP {s.outcome.status}", s.secrets)
        params.append({"b_id": s.delivery_id, "b_claimed": s.claimed_at, "b_due": due, "b_error": error})
    db.session.execute(
        DELIVERIES.update().where(d.id == bindparam("b_id"), d.status == "sending",
                                  d.claimed_at == bindparam("b_claimed"), d.claimed_by == worker)
        .values(status="retrying", due_at=bindparam("b_due"), last_error=bindparam("b_error"),
                claimed_at=None, claimed_by=""), params)
    return {p["b_due"] for p in params}


def _merge_details(worker, sents):
    """A type's details for the delivery page (rare for per-event types: one statement each)."""
    for s in sents:
        delivery = db.session.get(Delivery, s.delivery_id)
        if delivery is not None:
            delivery.details = {**(delivery.details or {}), **s.outcome.details}


# --- a day's file: sent and recorded on its own thread ---------------------------------------------

def send_file(app, delivery_id, claimed_at):
    with app.app_context():
        send_claimed(db.session.get(Delivery, delivery_id), claimed_at)
    return None  # recorded already


def send_claimed(delivery, claimed_at, worker=None):
    """Send one claimed delivery here and now and record it (a day's file, `files send --now`)."""
    if delivery.file_date is None and delivery.event is not None and delivery.event.purged_at is not None:
        cancel_purged([delivery], claimed_at, {}, worker)
        return False
    started = utcnow()
    secrets_ = []
    try:
        export_type, secrets_ = sending.export_type_for(delivery.profile)
        if delivery.file_date is not None:
            batch, sensitive = sending.daily_files().build_batch(delivery)
        else:
            plans, cancelled = before_send([delivery], {delivery.profile_id: delivery.profile},
                                           {delivery.event_id: delivery.event}, claimed_at, {}, worker)
            if cancelled:
                return False
            plan = plans.get(delivery.id)
            if plan is not None and plan.action == "wait":
                raise LookupError(plan.message)
            renderer = sending.renderer_for(delivery.profile)
            row = sending.render(renderer, delivery.event, delivery.profile, plan.fields if plan else None)
            batch = Batch(columns=renderer.columns, rows=[row], profile_name=delivery.profile.name,
                          idempotency_key=str(delivery.id), route_id=delivery.route_id,
                          allow_private_targets=bool(current_app.config["ALLOW_PRIVATE_TARGETS"]))
            sensitive = sending.sensitive_pairs(renderer, [row])
        secrets_ += sensitive
        outcome = export_type.send(batch)
    except Exception as exc:  # a plugin's bug, a bad profile, an undecryptable secret: a failed try
        log.exception("delivery %s failed to send", delivery.id)
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    return record(delivery, outcome, started, secrets_, claimed_at, worker)


def record(delivery, outcome, started, secrets_, claimed_at, worker=None):
    """Store one attempt, then finish the delivery or schedule its next try, while the claim holds.

    If the sweeper released the claim (this send outlived CLAIM_TIMEOUT_SECONDS) the attempt is
    kept and the newer claim decides."""
    with writing():
        db.session.add(sending.attempt_from(outcome, secrets_, delivery_id=delivery.id, number=delivery.attempt_count,
                                            started_at=started, profile_id=delivery.profile_id))
        now = utcnow()
        values = {"claimed_at": None, "claimed_by": ""}
        if outcome.details:
            values["details"] = {**(delivery.details or {}), **outcome.details}
        if outcome.ok:
            values.update(status="delivered", delivered_at=now, last_error="", captured_id=(outcome.captured or "")[:255])
        elif outcome.rejected:
            values.update(status="rejected", last_error=security.redact(outcome.error, secrets_))
        else:
            due = now + schedule.timedelta_seconds(schedule.backoff_seconds(delivery.attempt_count, outcome.retry_after))
            values.update(status="retrying", last_error=security.redact(outcome.error or f"HTTP {outcome.status}", secrets_),
                          due_at=windows.next_open(windows.of(delivery.profile), due))
        held = db.session.execute(
            update(Delivery).where(Delivery.id == delivery.id, Delivery.status == "sending",
                                   Delivery.claimed_at == claimed_at, Delivery.claimed_by == (worker or worker_name()))
            .values(**values).execution_options(synchronize_session=False)).rowcount == 1
        probes = _record_circuits([(delivery.target, outcome, started)], now)
        if held:
            db.session.refresh(delivery)
            if outcome.ok or outcome.rejected:
                outcome.summary = outcome.summary or f"{delivery.profile.export_type} delivered"
                write_history(delivery, history_message(delivery.profile.name, outcome, secrets_))
        else:
            log.warning("delivery %s: claim lost while sending; attempt kept, status left to the newer claim", delivery.id)
        db.session.commit()
    if held and not outcome.ok and not outcome.rejected:
        schedule.wake([delivery.due_at, *probes])
    return held


def write_history(delivery, message):
    """A message in the customer's history; a daily file writes one per customer in it."""
    if delivery.file_date is not None:
        return sending.daily_files().write_history(delivery, message)
    event = delivery.event
    if event is not None and event.customer_id:
        db.session.add(HistoryEntry(customer_id=event.customer_id, event_id=event.id,
                                    delivery_id=delivery.id, message=message))


