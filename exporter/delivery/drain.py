"""The drain: a worker claims due deliveries in bulk, hands them to its engine to send
concurrently, and records attempts, statuses and history in bulk.

At-least-once and one sender at a time: a claim is one conditional UPDATE ... RETURNING
(FOR UPDATE SKIP LOCKED on PostgreSQL) that takes only waiting, due rows and stamps them with
this worker's name and the claim's time; a result is stored on a delivery only while that
claim still holds. A worker that dies leaves claims the sweeper releases, so they go again.

The parts: claim.py takes the due rows, prepare.py renders them into the engine's jobs,
record.py stores what each send left, heartbeat.py says this worker lives.
"""
import logging
import threading
import time
from functools import partial

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import Delivery, Host, utcnow
from . import admission, circuit, claim, limits, schedule
from .engine import Engine
from .heartbeat import Heartbeat, worker_name
from .prepare import jobs_for, profiles_of
from .record import record_many, send_claimed

log = logging.getLogger(__name__)

# Set when the worker is asked to stop: the drain gives back what it has not started.
stopping = threading.Event()

_engine = None
_engine_lock = threading.Lock()


# --- the engine of this process ---------------------------------------------------------------

def engine_for(app):
    """This process's engine, bound to the app whose database it records into."""
    global _engine
    with _engine_lock:
        if _engine is not None and _engine[0] is not app:
            _engine[1].stop(timeout=10)
            _engine[1].heartbeat.stop()
            _engine = None
        if _engine is None:
            cfg = app.config
            shared = _limits(cfg)
            engine = Engine(partial(record_many, app, worker_name()), host_concurrency=cfg["HOST_CONCURRENCY"],
                            threads=cfg["SEND_THREADS"], host_failed=_host_failed, hold_after=cfg["CIRCUIT_FAILURES"],
                            limits=shared, slowed=_slowed, give_back=partial(_give_back, app))
            engine.heartbeat = Heartbeat(app, worker_name(), float(cfg["HEARTBEAT_SECONDS"]),
                                         lambda: shared.fallback_since)
            _limits_read[0] = 0.0
            _engine = (app, engine)
        return _engine[1]


def _host_failed(sent):
    return circuit.host_failure(sent.outcome)


def _limits(cfg):
    """The host limits every worker shares, through the app's Redis (a connection of their own
    with short timeouts: a hung Redis must not hold sends long); in memory without one."""
    if not cfg.get("REDIS_URL"):
        return limits.LocalLimits(cfg["HOST_MAX_IN_FLIGHT"])
    return limits.SharedLimits(limits.connect(cfg["REDIS_URL"]), cfg["HOST_MAX_IN_FLIGHT"],
                               float(cfg["SEND_TIMEOUT_SECONDS"]) + 15, limits.key_prefix(cfg["QUEUE_NAME"]))


def _slowed(sent):
    """A partner that asks to slow down: a 429, or a 503 that says when to come back."""
    outcome = getattr(sent, "outcome", None)
    if outcome is None or outcome.status not in (429, 503):
        return None
    retry_after = schedule.seconds(outcome.retry_after)
    if outcome.status == 503 and retry_after is None:
        return None  # an outage: the circuit's business
    after = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
    return retry_after, f"HTTP {outcome.status}{after} at {utcnow():%H:%M:%S} UTC"


def _give_back(app, jobs):
    with app.app_context():
        later = claim.give_back(jobs)
        schedule.wake([None, *later])


_limits_read = [0.0]
LIMITS_READ_SECONDS = 5  # an admin's change of a host's limits reaches each worker this fast


def _read_limits(engine):
    """Each host's limits from the hosts table, a few times a minute."""
    if time.monotonic() - _limits_read[0] < LIMITS_READ_SECONDS:
        return
    _limits_read[0] = time.monotonic()
    rows = db.session.execute(select(Host.name, Host.max_in_flight, Host.rate_limit, Host.rate_per).where(
        (Host.max_in_flight.is_not(None)) | (Host.rate_limit.is_not(None)))).all()
    engine.limits.configure({name: limits.HostLimit(in_flight or 0, rate or 0, per or 1)
                             for name, in_flight, rate, per in rows})


def wait_idle(timeout=None):
    """Wait until this process's engine has sent and recorded all it was handed (tests, `--burst`)."""
    current = _engine
    return current[1].idle(timeout) if current else True


def stop_engine(timeout=None):
    """Finish and record the sends in hand (a worker stopping, a test ending), then say farewell."""
    global _engine
    with _engine_lock:
        current, _engine = _engine, None
    if not current:
        return True
    done = current[1].stop(timeout)
    current[1].heartbeat.stop()
    return done


# --- the drain job and a single send ------------------------------------------------------------------

def drain():
    """Claim and send due deliveries until none is left, or DRAIN_SECONDS have passed (then a
    fresh drain carries on). Sends still in flight when it returns go on in the engine."""
    app = current_app._get_current_object()
    cfg = app.config
    engine = engine_for(app)
    schedule.ack_wake()
    claim.release_dead_claims(cfg)
    _read_limits(engine)
    deadline = time.monotonic() + float(cfg["DRAIN_SECONDS"])
    # Jobs waiting behind their host's slots go back well before the sweeper would think their
    # claims lost (and another claim would send them again).
    patience = float(cfg["CLAIM_TIMEOUT_SECONDS"]) / 2
    claimed, nothing_else = 0, None
    while not stopping.is_set() and time.monotonic() < deadline:
        _read_limits(engine)
        if taken := engine.take_back(patience):
            if later := claim.give_back(taken):  # held back by their hosts' limits: a drain when they may go
                schedule.wake(later)
        room, busy = engine.room()
        if room <= 0:
            engine.wait_for_room(0.05)
            continue
        if nothing_else and busy >= nothing_else[1] and time.monotonic() < nothing_else[0]:
            engine.wait_for_a_host(busy, nothing_else[0] - time.monotonic())
            continue  # a claim found nothing but busy hosts' rows a moment ago: not again so soon
        limit = min(room, claim.CLAIM_BATCH)
        per_host = engine.per_host_claim()
        claimed_at, rows = claim.claim_due(limit, per_host, busy, cfg)
        if not rows:
            if not busy and not engine.waiting():
                return {"claimed": claimed}
            nothing_else = (time.monotonic() + 0.05, busy)
            engine.wait_for_a_host(busy, 0.05)  # a busy host frees slots, or more falls due
            continue
        if len(rows) >= limit or claim.took_a_hosts_most(rows, per_host):
            schedule.wake()  # more may be due: an idle worker may join in
        profiles = profiles_of(rows)
        rows, counted = admission.admit(rows, claimed_at, profiles, worker_name())
        for job in jobs_for(rows, claimed_at, app, profiles, counted):
            engine.submit(job)
        claimed += len(rows)
    later = claim.give_back(engine.take_waiting())
    if not stopping.is_set():
        schedule.wake([None, *later])
    return {"claimed": claimed, "out_of_time": True}


def send_one(delivery_id):
    """Claim one due delivery and send it from this process (no worker needed); its status.
    The claim asks admission as a drain's does: while the profile's send window is closed the
    delivery goes back to waiting for the opening (its waiting_reason says so), unsent."""
    claimed_at = utcnow()
    d = claim.DELIVERIES.c
    rows = db.session.execute(claim.DELIVERIES.update().where(
        d.id == delivery_id, d.status.in_(Delivery.WAITING), d.due_at <= claimed_at)
        .values(status="sending", claimed_at=claimed_at, claimed_by=worker_name(), attempt_count=d.attempt_count + 1,
                waiting_reason="")
        .returning(d.id, d.profile_id, d.event_id, d.route_id, d.file_date, d.target, d.attempt_count)).all()
    db.session.commit()
    if len(rows) != 1:
        return "skipped"
    admitted, _ = admission.admit(rows, claimed_at, profiles_of(rows), worker_name())  # counted: sent or failed
    delivery = db.session.get(Delivery, delivery_id)
    db.session.refresh(delivery)
    if admitted:
        send_claimed(delivery, claimed_at)
    return delivery.status
