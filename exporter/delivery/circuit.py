"""A circuit per target host: after CIRCUIT_FAILURES failures in a row a host is down; while it
is down its deliveries wait and one probe goes out per backoff step; a probe that succeeds
closes the circuit and the host's backlog flows again, within the per-host limit.

Only failures that say the host itself is in trouble count: no answer at all (refused, timed
out, unreachable) or a 5xx. A 4xx about one delivery's data does not, and neither does a 429: it
asks to slow down (its Retry-After is honoured by the retry), it does not say the host is down.

While a host is down only its probes' results move its next probe: a send already in flight
when the circuit opened (it started before the host went down) is recorded, and its failure
is the host's last error, but it is no failed probe and does not push the next probe back.
"""
import functools
from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import Host, utcnow


def host_failure(outcome):
    return not outcome.ok and (outcome.status is None or outcome.status >= 500)


def probe_seconds(probes, base, cap):
    """The wait before the next probe: base, doubling per failed probe, capped."""
    return min(float(cap), float(base) * 2 ** min(probes, 30))


def blocked_hosts(now=None):
    """(hosts down whose next probe is not due, hosts down whose probe is due)."""
    down, due, _ = circuits(now)
    return down, due


def circuits(now=None):
    """blocked_hosts(), and the earliest probe still to come (None when none is)."""
    now = now or utcnow()
    rows = db.session.execute(select(Host.name, Host.probe_at).where(Host.down_since.is_not(None))).all()
    waiting = [at for _, at in rows if at is not None and at > now]
    return ({name for name, at in rows if at is None or at > now},
            {name for name, at in rows if at is not None and at <= now}, min(waiting, default=None))


def take_probe(host, wait_seconds, now=None):
    """Win the right to send this host's probe now (one worker does); the next is due later."""
    now = now or utcnow()
    won = db.session.execute(
        update(Host).where(Host.name == host, Host.down_since.is_not(None), Host.probe_at <= now)
        .values(probe_at=now + timedelta(seconds=wait_seconds))
        .execution_options(synchronize_session=False)).rowcount == 1
    db.session.commit()
    return won


def record(results, threshold, base, cap, now=None):
    """Update the circuits after a batch of sends: results is {host: (successes, host failures,
    last error, when the last failed send started)}. Returns when to wake a drain: each probe
    this opened or moved, None (now) when a host came back. No commit."""
    now = now or utcnow()
    up = [host for host, (ok, *_) in results.items() if ok and host]
    probes = set()
    if up:
        closed = db.session.scalars(_reset_statement(), {"up": up}).all()
        if closed:
            probes.add(None)  # a host is back: its backlog is due, wake a drain now
    for host, (ok, failed, error, last_started) in results.items():
        if ok or not failed or not host:
            continue
        _ensure(host)
        row = db.session.get(Host, host, with_for_update=True, populate_existing=True)
        row.failures += failed
        row.last_error = error[:2000]
        if row.down_since is None and row.failures >= threshold:
            row.down_since, row.probes = now, 0
            row.probe_at = now + timedelta(seconds=probe_seconds(0, base, cap))
        elif row.down_since is not None and _a_probe(last_started, row.down_since):  # it failed: wait longer
            row.probes += 1
            row.probe_at = now + timedelta(seconds=probe_seconds(row.probes, base, cap))
        if row.down_since is not None:
            probes.add(row.probe_at)
    return probes


def _a_probe(started, down_since):
    """A send to a down host that started once it was down: only a probe is claimed for it then.
    One that started before was in flight when the circuit opened."""
    if started is None or down_since is None:
        return True
    return started.replace(tzinfo=None) >= down_since.replace(tzinfo=None)


@functools.cache
def _reset_statement():
    """Built once: it runs after every batch of sends, usually to change nothing."""
    return (update(Host).where(Host.name.in_(bindparam("up", expanding=True)),
                               (Host.failures > 0) | Host.down_since.is_not(None))
            .values(failures=0, down_since=None, probe_at=None, probes=0)
            .returning(Host.name).execution_options(synchronize_session=False))


def _ensure(host):
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(Host).values(name=host, failures=0, probes=0, last_error="")
                       .on_conflict_do_nothing(index_elements=["name"]))


def probe_now(host):
    """An admin's Probe now: the host's next probe is due at once. True when the host is down."""
    done = db.session.execute(update(Host).where(Host.name == host, Host.down_since.is_not(None))
                              .values(probe_at=utcnow()).execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return bool(done)
