"""Preparing a claim's jobs: each claimed delivery rendered with its profile's mappings as they
are now, and handed to the engine as a Job whose send runs on a sender thread."""
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import windows
from ..export_types import Batch, Outcome
from ..extensions import db
from ..models import Event, Profile, utcnow
from . import sending
from .engine import Job
from .record import before_send, cancel_purged, send_file

log = logging.getLogger(__name__)

_type_locks = defaultdict(threading.Lock)  # one send at a time for a type that is not thread_safe


@dataclass
class Sent:
    """A finished send of one event's delivery, for the recorder."""
    delivery_id: int
    host: str
    claimed_at: object
    attempt_count: int
    profile_id: int
    profile_name: str
    event_id: int | None
    customer_id: int | None
    outcome: Outcome
    started_at: object
    secrets: list
    window: object = None  # the profile's send window: a retry waits for it
    counted: object = None  # the cap day this send counts against, given back with the claim


def _send(export_type, batch, context):
    """On a sender thread: the type's send, any exception a failed try."""
    started = utcnow()
    cls = type(export_type)
    try:
        if getattr(cls, "thread_safe", False):
            outcome = export_type.send(batch)
        else:
            with _type_locks[cls]:
                outcome = export_type.send(batch)
    except Exception as exc:  # a plugin's bug: a failed try, retried like any other
        log.exception("delivery %s failed to send", context.delivery_id)
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    context.outcome, context.started_at = outcome, started
    return context


def _failed(error, context):
    context.outcome, context.started_at = Outcome(ok=False, error=error), utcnow()
    return context


def profiles_of(rows):
    return {p.id: p for p in db.session.scalars(
        select(Profile).where(Profile.id.in_({r.profile_id for r in rows})).options(selectinload(Profile.mappings)))}


def jobs_for(rows, claimed_at, app, profiles=None, counted=None):
    """A Job for each claimed row: rendered now, on this thread, sent by the engine."""
    profiles, counted = profiles or profiles_of(rows), counted or {}
    event_ids = [r.event_id for r in rows if r.event_id is not None]
    events = {e.id: e for e in db.session.execute(
        select(Event.id, Event.type, Event.order, Event.card_number, Event.customer_id, Event.purged_at, Event.order_id)
        .where(Event.id.in_(event_ids)))} if event_ids else {}
    purged = {r.id for r in rows if r.event_id in events and events[r.event_id].purged_at is not None}
    if purged:
        cancel_purged([r for r in rows if r.id in purged], claimed_at, counted)
    plans, cancelled = before_send([r for r in rows if r.id not in purged], profiles, events, claimed_at, counted)
    purged |= cancelled  # left out like a purged one: finished here, not sent
    allow_private = bool(current_app.config["ALLOW_PRIVATE_TARGETS"])
    prepared = {}  # per profile: its type (when shared), secrets and renderer, made once a claim
    for row in rows:
        if row.id in purged:
            continue
        profile = profiles[row.profile_id]
        window = windows.of(profile) if profile.window_start is not None else None
        if row.file_date is not None:
            yield Job(row.id, row.target, partial(send_file, app, row.id, claimed_at),
                      context=Sent(row.id, row.target, claimed_at, row.attempt_count, profile.id, profile.name,
                                   None, None, None, None, [], window))
            continue
        event = events.get(row.event_id)
        context = Sent(row.id, row.target, claimed_at, row.attempt_count, profile.id, profile.name, row.event_id,
                       event.customer_id if event else None, None, None, [], window, counted.get(row.id))
        plan = plans.get(row.id)
        if plan is not None and plan.action == "wait":  # a reversal whose original is still on its way
            yield Job(row.id, row.target, partial(_failed, plan.message, context), context=context)
            continue
        try:
            export_type, secrets_, renderer = prepared.get(profile.id) or _prepare(profile, prepared)
            pairs = sending.render(renderer, event, profile, plan.fields if plan else None)
            context.secrets = secrets_ + sending.sensitive_pairs(renderer, [pairs])
            batch = Batch(columns=renderer.columns, rows=[pairs], profile_name=profile.name,
                          idempotency_key=str(row.id), route_id=row.route_id, allow_private_targets=allow_private)
            send = partial(_send, export_type, batch, context)
        except Exception as exc:  # a bad profile, an undecryptable secret, a missing type: a failed try
            log.exception("delivery %s could not be prepared", row.id)
            send = partial(_failed, f"{type(exc).__name__}: {exc}", context)
        yield Job(row.id, row.target, send, context=context)


def _prepare(profile, prepared):
    """(export type, secrets, renderer) for a send of the profile; kept for the claim's other
    sends unless the type wants a fresh instance per send (not thread_safe)."""
    export_type, secrets_ = sending.export_type_for(profile, reuse=True)
    made = (export_type, secrets_, sending.renderer_for(profile))
    if getattr(type(export_type), "thread_safe", False):
        prepared[profile.id] = made
    return made


