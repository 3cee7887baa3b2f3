"""The drain: a worker claims due deliveries in bulk, hands them to its engine to send
concurrently, and records attempts, statuses and history in bulk.

At-least-once and one sender at a time: a claim is one conditional UPDATE ... RETURNING
(FOR UPDATE SKIP LOCKED on PostgreSQL) that takes only waiting, due rows and stamps them with
this worker's name and the claim's time; a result is stored on a delivery only while that
claim still holds. A worker that dies leaves claims the sweeper releases, so they go again.
"""
import functools
import logging
import os
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import partial

from flask import current_app
from sqlalchemy import any_, bindparam, case, func, insert, select, text, update
from sqlalchemy.orm import selectinload

from . import admission, circuit, daily_files, schedule, security, sending, windows, workers
from .engine import Engine, Job
from .export_types import Batch, Outcome
from .extensions import db, writing
from .models import WAITING_SQL, Attempt, Delivery, Event, HistoryEntry, Profile, utcnow

log = logging.getLogger(__name__)

DELIVERIES = Delivery.__table__
CLAIM_BATCH = 200  # deliveries one claim takes at most
PURGED = "personal data purged"  # the cancel reason of a claimed delivery whose event was purged meanwhile
# Set when the worker is asked to stop: the drain gives back what it has not started.
stopping = threading.Event()

_engine = None
_engine_lock = threading.Lock()
_type_locks = defaultdict(threading.Lock)  # one send at a time for a type that is not thread_safe


_worker_name = [None, ""]  # (pid, name): asked for at every claim and record


def worker_name():
    pid = os.getpid()
    if _worker_name[0] != pid:  # a forked process is another worker
        _worker_name[:] = [pid, f"{socket.gethostname()}:{pid}"]
    return _worker_name[1]


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


class Heartbeat(threading.Thread):
    """This worker's heartbeat in the database, every few seconds while its engine lives."""

    def __init__(self, app, name, every):
        super().__init__(name="exporter-heartbeat", daemon=True)
        self.app, self.worker, self.every = app, name, every
        self.done = threading.Event()
        self._beat()
        self.start()

    def _beat(self):
        try:
            with self.app.app_context(), writing():
                workers.beat(self.worker)
        except Exception:  # the database is away for a moment: the next beat tries again
            log.exception("could not write the heartbeat")

    def run(self):
        while not self.done.wait(self.every):
            self._beat()

    def stop(self):
        self.done.set()
        self.join(self.every + 1)
        try:
            with self.app.app_context():
                workers.farewell(self.worker)
        except Exception:
            log.exception("could not say farewell; the heartbeat goes stale instead")


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


# --- claiming -------------------------------------------------------------------------------------

def claim_batch(limit, per_host=None, busy_hosts=(), worker=None, now=None, only_hosts=None):
    """Claim up to `limit` due, waiting deliveries, oldest first, at most `per_host` of one host,
    none of `busy_hosts` (and only of `only_hosts`, when given). Returns (claim time, rows); committed."""
    now = now or utcnow()
    statement = _claim_statement(db.engine.dialect.name, bool(per_host), bool(busy_hosts), only_hosts is not None)
    values = {"now": now, "limit": limit, "scan": limit * 4, "per_host": per_host or limit,
              "busy": sorted(busy_hosts), "only": sorted(only_hosts or ()), "worker": worker or worker_name()}
    with writing():
        rows = db.session.execute(statement, values).all()
        db.session.commit()
    return now, rows


@functools.cache
def _claim_statement(dialect, per_host, busy, only):
    """The claim, built once per shape with bound values: a claim runs many times a second.

    Its plan must not depend on the statistics (on a big table they may predate any backlog):
    the waiting rows are found through the partial index on waiting rows, named by its own
    literal predicate; on PostgreSQL the ids are picked once, locked once, and the update goes
    by primary key (`id = ANY(ARRAY(...))`: each subquery runs once, never per row)."""
    d = DELIVERIES.c
    waiting = text(WAITING_SQL)  # literal, not bound: the partial index ix_deliveries_waiting matches it
    due = [waiting, d.due_at <= bindparam("now")]
    wanted = list(due)
    if busy:
        wanted.append(d.target.not_in(bindparam("busy", expanding=True)))
    if only:
        wanted.append(d.target.in_(bindparam("only", expanding=True)))
    if per_host:
        # Rank only the oldest few due rows (the partial index finds them), not the whole
        # backlog: a host that fills them fills its slots too, and is left out of the next claim.
        oldest = (select(d.id, d.due_at, d.target).where(*wanted).order_by(d.due_at, d.id)
                  .limit(bindparam("scan")).subquery())
        rank = func.row_number().over(partition_by=oldest.c.target, order_by=(oldest.c.due_at, oldest.c.id))
        ranked = select(oldest.c.id, oldest.c.due_at, rank.label("rank")).subquery()
        picked = (select(ranked.c.id).where(ranked.c.rank <= bindparam("per_host"))
                  .order_by(ranked.c.due_at, ranked.c.id))
    else:
        picked = select(d.id).where(*wanted).order_by(d.due_at, d.id)
    picked = picked.limit(bindparam("limit"))
    if dialect == "postgresql":  # workers never wait on each other's rows
        # Still waiting and due (FOR UPDATE re-checks a row another claim changed meanwhile),
        # written so that no index matches it: the rows are found by primary key, never by a
        # scan of every waiting row that a stale estimate of one row would choose.
        still = [text("(deliveries.status || '') IN ('scheduled', 'retrying')"), d.due_at <= bindparam("now")]
        locked = (select(d.id).where(d.id == any_(func.array(picked.scalar_subquery())), *still)
                  .with_for_update(skip_locked=True))
        chosen = [d.id == any_(func.array(locked.scalar_subquery())), *still]
    else:
        chosen = [d.id.in_(picked), *due]
    return (DELIVERIES.update().where(*chosen)
            .values(status="sending", claimed_at=bindparam("now"), claimed_by=bindparam("worker"),
                    attempt_count=d.attempt_count + 1, waiting_reason="")
            .returning(d.id, d.profile_id, d.event_id, d.route_id, d.file_date, d.target, d.attempt_count))


def give_back(jobs, worker=None):
    """Claims taken but never started go back to waiting, due now, the try not counted: a
    delivery never tried is `scheduled` again (a stopping worker's give-back is no failure),
    one that had failed before is still `retrying`."""
    by_claim = defaultdict(list)
    for job in jobs:
        by_claim[job.context.claimed_at].append(job.delivery_id)
    d = DELIVERIES.c
    with writing():
        for claimed_at, ids in by_claim.items():
            db.session.execute(DELIVERIES.update().where(
                d.id.in_(ids), d.status == "sending", d.claimed_at == claimed_at,
                d.claimed_by == (worker or worker_name()))
                .values(status=case((d.attempt_count > 1, "retrying"), else_="scheduled"), due_at=utcnow(),
                        claimed_at=None, claimed_by="", attempt_count=d.attempt_count - 1))
        admission.refund([(job.context.profile_id, job.context.counted) for job in jobs if job.context.counted])
        db.session.commit()


# --- what a send carries and what it leaves -----------------------------------------------------

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


def _profiles(rows):
    return {p.id: p for p in db.session.scalars(
        select(Profile).where(Profile.id.in_({r.profile_id for r in rows})).options(selectinload(Profile.mappings)))}


def _jobs(rows, claimed_at, app, profiles=None, counted=None):
    """A Job for each claimed row: rendered now, on this thread, sent by the engine."""
    profiles, counted = profiles or _profiles(rows), counted or {}
    event_ids = [r.event_id for r in rows if r.event_id is not None]
    events = {e.id: e for e in db.session.execute(
        select(Event.id, Event.type, Event.order, Event.card_number, Event.customer_id, Event.purged_at)
        .where(Event.id.in_(event_ids)))} if event_ids else {}
    purged = {r.id for r in rows if r.event_id in events and events[r.event_id].purged_at is not None}
    if purged:
        _cancel_purged([r for r in rows if r.id in purged], claimed_at, counted)
    allow_private = bool(current_app.config["ALLOW_PRIVATE_TARGETS"])
    prepared = {}  # per profile: its type (when shared), secrets and renderer, made once a claim
    for row in rows:
        if row.id in purged:
            continue
        profile = profiles[row.profile_id]
        window = windows.of(profile) if profile.window_start is not None else None
        if row.file_date is not None:
            yield Job(row.id, row.target, partial(_send_file, app, row.id, claimed_at),
                      context=Sent(row.id, row.target, claimed_at, row.attempt_count, profile.id, profile.name,
                                   None, None, None, None, [], window))
            continue
        event = events.get(row.event_id)
        context = Sent(row.id, row.target, claimed_at, row.attempt_count, profile.id, profile.name, row.event_id,
                       event.customer_id if event else None, None, None, [], window, counted.get(row.id))
        try:
            export_type, secrets_, renderer = prepared.get(profile.id) or _prepare(profile, prepared)
            pairs = sending.render(renderer, event, profile)
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


def _cancel_purged(rows, claimed_at, counted, worker=None):
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


# --- recording -------------------------------------------------------------------------------------

def record_many(app, worker, sents):
    """Store finished sends in one transaction: every attempt; each delivery whose claim still
    holds delivered (with its history message) or retrying at its next time."""
    with app.app_context(), writing():
        now = utcnow()
        db.session.execute(insert(Attempt.__table__), [
            sending.attempt_values(s.outcome, s.secrets, delivery_id=s.delivery_id, number=s.attempt_count,
                                   started_at=s.started_at, profile_id=s.profile_id, is_test=False) for s in sents])
        held = _mark_delivered(worker, [s for s in sents if s.outcome.ok], now)
        history = [dict(customer_id=s.customer_id, event_id=s.event_id, delivery_id=s.delivery_id, created_at=now,
                        message=f"Export profile '{s.profile_name}' fired: {s.outcome.summary or 'delivered'}")
                   for s in sents if s.delivery_id in held and s.customer_id]
        if history:
            db.session.execute(insert(HistoryEntry.__table__), history)
        retries = _mark_retrying(worker, [s for s in sents if not s.outcome.ok], now)
        _merge_details(worker, [s for s in sents if s.outcome.details])
        retries |= _record_circuits([(s.host, s.outcome) for s in sents], now)
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
    for host, outcome in sends:
        ok, failed, error = results.get(host, (0, 0, ""))
        if outcome.ok:
            ok += 1
        elif circuit.host_failure(outcome):
            failed, error = failed + 1, outcome.error or f"HTTP {outcome.status}"
        results[host] = (ok, failed, error)
    changed = circuit.record(results, int(cfg["CIRCUIT_FAILURES"]), cfg["CIRCUIT_PROBE_SECONDS"],
                             cfg["RETRY_MAX_SECONDS"], now)
    if changed:  # a host went down or came back: this worker's next claim reads the circuits again
        _blocked[0] = 0.0
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

def _send_file(app, delivery_id, claimed_at):
    with app.app_context():
        send_claimed(db.session.get(Delivery, delivery_id), claimed_at)
    return None  # recorded already


def send_claimed(delivery, claimed_at, worker=None):
    """Send one claimed delivery here and now and record it (a day's file, `files send --now`)."""
    if delivery.file_date is None and delivery.event is not None and delivery.event.purged_at is not None:
        _cancel_purged([delivery], claimed_at, {}, worker)
        return False
    started = utcnow()
    secrets_ = []
    try:
        export_type, secrets_ = sending.export_type_for(delivery.profile)
        if delivery.file_date is not None:
            batch, sensitive = daily_files.build_batch(delivery)
        else:
            renderer = sending.renderer_for(delivery.profile)
            row = sending.render(renderer, delivery.event, delivery.profile)
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
            values.update(status="delivered", delivered_at=now, last_error="")
        else:
            due = now + schedule.timedelta_seconds(schedule.backoff_seconds(delivery.attempt_count, outcome.retry_after))
            values.update(status="retrying", last_error=security.redact(outcome.error or f"HTTP {outcome.status}", secrets_),
                          due_at=windows.next_open(windows.of(delivery.profile), due))
        held = db.session.execute(
            update(Delivery).where(Delivery.id == delivery.id, Delivery.status == "sending",
                                   Delivery.claimed_at == claimed_at, Delivery.claimed_by == (worker or worker_name()))
            .values(**values).execution_options(synchronize_session=False)).rowcount == 1
        probes = _record_circuits([(delivery.target, outcome)], now)
        if held:
            db.session.refresh(delivery)
            if outcome.ok:
                summary = outcome.summary or f"{delivery.profile.export_type} delivered"
                write_history(delivery, f"Export profile '{delivery.profile.name}' fired: {summary}")
        else:
            log.warning("delivery %s: claim lost while sending; attempt kept, status left to the newer claim", delivery.id)
        db.session.commit()
    if held and not outcome.ok:
        schedule.wake([delivery.due_at, *probes])
    return held


def write_history(delivery, message):
    """A message in the customer's history; a daily file writes one per customer in it."""
    if delivery.file_date is not None:
        return daily_files.write_history(delivery, message)
    event = delivery.event
    if event is not None and event.customer_id:
        db.session.add(HistoryEntry(customer_id=event.customer_id, event_id=event.id,
                                    delivery_id=delivery.id, message=message))


# --- the drain job and a single send ------------------------------------------------------------------

def drain():
    """Claim and send due deliveries until none is left, or DRAIN_SECONDS have passed (then a
    fresh drain carries on). Sends still in flight when it returns go on in the engine."""
    app = current_app._get_current_object()
    cfg = app.config
    engine = engine_for(app)
    schedule.ack_wake()
    _release_dead_claims(cfg)
    deadline = time.monotonic() + float(cfg["DRAIN_SECONDS"])
    # Jobs waiting behind their host's slots go back well before the sweeper would think their
    # claims lost (and another claim would send them again).
    patience = float(cfg["CLAIM_TIMEOUT_SECONDS"]) / 2
    claimed = 0
    while not stopping.is_set() and time.monotonic() < deadline:
        if taken := engine.take_back(patience):
            give_back(taken)
        room, busy = engine.room()
        if room <= 0:
            engine.wait_for_room(0.05)
            continue
        limit = min(room, CLAIM_BATCH)
        per_host = engine.per_host_claim()
        claimed_at, rows = _claim(limit, per_host, busy, cfg)
        if not rows:
            if not busy and not engine.waiting():
                return {"claimed": claimed}
            engine.wait_for_a_host(busy, 0.05)  # a busy host frees slots, or more falls due
            continue
        if len(rows) >= limit or _took_a_hosts_most(rows, per_host):
            schedule.wake()  # more may be due: an idle worker may join in
        profiles = _profiles(rows)
        rows, counted = admission.admit(rows, claimed_at, profiles, worker_name())
        for job in _jobs(rows, claimed_at, app, profiles, counted):
            engine.submit(job)
        claimed += len(rows)
    give_back(engine.take_waiting())
    if not stopping.is_set():
        schedule.wake()
    return {"claimed": claimed, "out_of_time": True}


def _took_a_hosts_most(rows, per_host):
    """Whether the claim took as many rows of one host as a claim may (one fast host's backlog)."""
    if not per_host or len(rows) < per_host:
        return False
    return max(Counter(row.target for row in rows).values()) >= per_host


_blocked = [0.0, (set(), set()), None]  # when read, (down, probe due), the next probe to come
_released_at = [0.0]


def _release_dead_claims(cfg):
    """The sweeper's release of dead workers' claims, done by drains too, a few times a minute
    at most: a write per drain would slow the drains that low latency asks for."""
    if time.monotonic() - _released_at[0] < float(cfg["WORKER_STALE_SECONDS"]) / 2:
        return
    _released_at[0] = time.monotonic()
    with writing():
        released = workers.release_stale_claims(cfg["CLAIM_TIMEOUT_SECONDS"], cfg["WORKER_STALE_SECONDS"])
    if released:
        log.warning("released %s claims of workers that stopped beating", len(released))


def _blocked_hosts():
    """The circuits, read at most once a second (and after this worker saw one change, and when
    a probe falls due): they change seldom, and claims come often."""
    read_at, _, next_probe = _blocked
    if time.monotonic() - read_at > 1.0 or (next_probe is not None and utcnow() >= next_probe):
        down, due, next_probe = circuit.circuits()
        _blocked[:] = [time.monotonic(), (down, due), next_probe]
    return _blocked[1]


def _claim(limit, per_host, busy, cfg):
    """A claim that leaves down hosts alone, plus one probe for each down host whose probe is due
    and that this worker wins."""
    down, probe_due = _blocked_hosts()
    claimed_at, rows = claim_batch(limit, per_host, busy | down | probe_due)
    probes = {host for host in probe_due - busy if circuit.take_probe(host, cfg["CIRCUIT_PROBE_SECONDS"])}
    if probes:
        _, probe_rows = claim_batch(len(probes), 1, busy, only_hosts=probes, now=claimed_at)
        rows = rows + probe_rows
    return claimed_at, rows


def send_one(delivery_id):
    """Claim one due delivery and send it from this process (no worker needed); its status.
    The claim asks admission as a drain's does: while the profile's send window is closed the
    delivery goes back to waiting for the opening (its waiting_reason says so), unsent."""
    claimed_at = utcnow()
    d = DELIVERIES.c
    rows = db.session.execute(DELIVERIES.update().where(
        d.id == delivery_id, d.status.in_(Delivery.WAITING), d.due_at <= claimed_at)
        .values(status="sending", claimed_at=claimed_at, claimed_by=worker_name(), attempt_count=d.attempt_count + 1,
                waiting_reason="")
        .returning(d.id, d.profile_id, d.event_id, d.route_id, d.file_date, d.target, d.attempt_count)).all()
    db.session.commit()
    if len(rows) != 1:
        return "skipped"
    admitted, _ = admission.admit(rows, claimed_at, _profiles(rows), worker_name())  # counted: sent or failed
    delivery = db.session.get(Delivery, delivery_id)
    db.session.refresh(delivery)
    if admitted:
        send_claimed(delivery, claimed_at)
    return delivery.status
