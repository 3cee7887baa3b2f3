"""Claiming: the due, waiting deliveries a drain takes in one statement, and what it gives back.

At-least-once and one sender at a time: a claim is one conditional UPDATE ... RETURNING
(FOR UPDATE SKIP LOCKED on PostgreSQL) that takes only waiting, due rows and stamps them with
this worker's name and the claim's time; a result is stored on a delivery only while that
claim still holds (record.py). Down hosts are left out, but for one probe each when it is due.
"""
import functools
import logging
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

from sqlalchemy import any_, bindparam, case, func, select, text

from ..extensions import db, writing
from ..models import WAITING_SQL, Delivery, utcnow
from . import admission, circuit, workers
from .heartbeat import worker_name

log = logging.getLogger(__name__)

DELIVERIES = Delivery.__table__
CLAIM_BATCH = 200  # deliveries one claim takes at most

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


LIMITED = {"retry-after": "Waiting: {host} asked to wait (Retry-After)",
           "rate": "Waiting: {host}'s rate limit", "in flight": "Waiting: {host}'s limit of sends at once"}


def give_back(jobs, worker=None):
    """Claims taken but never started go back to waiting, the try not counted: a delivery never
    tried is `scheduled` again (a stopping worker's give-back is no failure), one that had failed
    before is still `retrying`. Due now, or when its host's limits let it go (job.not_before),
    with a waiting reason that says which limit."""
    by_claim = defaultdict(list)
    for job in jobs:
        by_claim[job.context.claimed_at, job.not_before, job.limited and job.host].append(job)
    d = DELIVERIES.c
    now, later = utcnow(), set()
    with writing():
        for (claimed_at, not_before, host), group in by_claim.items():
            due = max(now, datetime.fromtimestamp(not_before, timezone.utc).replace(tzinfo=None)) if not_before else now
            if due > now:  # a drain is woken then, on the second (one wake-up for a second's many)
                later.add(due.replace(microsecond=0) + timedelta(seconds=1))
            reason = LIMITED.get(group[0].limited, "Waiting: {host}'s limits").format(host=host) if host else ""
            db.session.execute(DELIVERIES.update().where(
                d.id.in_([job.delivery_id for job in group]), d.status == "sending", d.claimed_at == claimed_at,
                d.claimed_by == (worker or worker_name()))
                .values(status=case((d.attempt_count > 1, "retrying"), else_="scheduled"), due_at=due,
                        claimed_at=None, claimed_by="", attempt_count=d.attempt_count - 1,
                        waiting_reason=reason[:255]))
        admission.refund([(job.context.profile_id, job.context.counted) for job in jobs if job.context.counted])
        db.session.commit()
    return later



def took_a_hosts_most(rows, per_host):
    """Whether the claim took as many rows of one host as a claim may (one fast host's backlog)."""
    if not per_host or len(rows) < per_host:
        return False
    return max(Counter(row.target for row in rows).values()) >= per_host


_blocked = [0.0, (set(), set()), None]  # when read, (down, probe due), the next probe to come
_released_at = [0.0]


def release_dead_claims(cfg):
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


def claim_due(limit, per_host, busy, cfg):
    """A claim that leaves down hosts alone, plus one probe for each down host whose probe is due
    and that this worker wins."""
    down, probe_due = _blocked_hosts()
    claimed_at, rows = claim_batch(limit, per_host, busy | down | probe_due)
    probes = {host for host in probe_due - busy if circuit.take_probe(host, cfg["CIRCUIT_PROBE_SECONDS"])}
    if probes:
        _, probe_rows = claim_batch(len(probes), 1, busy, only_hosts=probes, now=claimed_at)
        rows = rows + probe_rows
    return claimed_at, rows




def circuits_changed():
    """A host went down or came back: this worker's next claim reads the circuits again."""
    _blocked[0] = 0.0
