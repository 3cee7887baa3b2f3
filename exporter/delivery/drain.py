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

from ..extensions import db
from ..models import Delivery, utcnow
from . import admission, circuit, claim, schedule
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
            engine = Engine(partial(record_many, app, worker_name()), host_concurrency=cfg["HOST_CONCURRENCY"],
                            threads=cfg["SEND_THREADS"], host_failed=_host_failed, hold_after=cfg["CIRCUIT_FAILURES"])
            engine.heartbeat = Heartbeat(app, worker_name(), float(cfg["HEARTBEAT_SECONDS"]))
            _engine = (app, engine)
        return _engine[1]


def _host_failed(sent):
    return circuit.host_failure(sent.outcome)


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
    deadline = time.monotonic() + float(cfg["DRAIN_SECONDS"])
    # Jobs waiting behind their host's slots go back well before the sweeper would think their
    # claims lost (and another claim would send them again).
    patience = float(cfg["CLAIM_TIMEOUT_SECONDS"]) / 2
    claimed = 0
    while not stopping.is_set() and time.monotonic() < deadline:
        if taken := engine.take_back(patience):
            claim.give_back(taken)
        room, busy = engine.room()
        if room <= 0:
            engine.wait_for_room(0.05)
            continue
        limit = min(room, claim.CLAIM_BATCH)
        per_host = engine.per_host_claim()
        claimed_at, rows = claim.claim_due(limit, per_host, busy, cfg)
        if not rows:
            if not busy and not engine.waiting():
                return {"claimed": claimed}
            engine.wait_for_a_host(busy, 0.05)  # a busy host frees slots, or more falls due
            continue
        if len(rows) >= limit or claim.took_a_hosts_most(rows, per_host):
            schedule.wake()  # more may be due: an idle worker may join in
        profiles = profiles_of(rows)
        rows, counted = admission.admit(rows, claimed_at, profiles, worker_name())
        for job in jobs_for(rows, claimed_at, app, profiles, counted):
            engine.submit(job)
        claimed += len(rows)
    claim.give_back(engine.take_waiting())
    if not stopping.is_set():
        schedule.wake()
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
