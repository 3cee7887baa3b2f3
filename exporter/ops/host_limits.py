"""The Hosts page's figures and changes: each host's limits (the hosts table), its allowance now
and why (Redis, delivery/limits.py), and the workers limiting hosts on their own while Redis is
away (the workers table). Every worker reads a change within LIMITS_READ_SECONDS.
"""
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import select

from .. import audit
from ..delivery import limits, workers
from ..extensions import db
from ..models import Host, Worker, utcnow
from . import health


@dataclass
class HostRow:
    name: str
    max_in_flight: int | None
    rate_limit: int | None
    rate_per: int
    down: bool
    state: limits.HostState | None  # None: Redis did not answer

    @property
    def blocked_at(self):
        """Until when the host asked every worker to wait (Retry-After), naive UTC; None: not now."""
        if self.state is None or self.state.blocked_until is None:
            return None
        return datetime.fromtimestamp(self.state.blocked_until, timezone.utc).replace(tzinfo=None)

    @property
    def allowed_now(self):
        """What the halved allowance lets through now: '5 a second, 2 at once'."""
        factor, parts = self.state.factor if self.state else 1.0, []
        if self.rate_limit:
            rate = self.rate_limit * factor
            parts.append(f"{rate:.3g} a {'second' if self.rate_per == 1 else 'minute'}")
        if self.max_in_flight:
            parts.append(f"{max(1, int(self.max_in_flight * factor))} at once")
        return ", ".join(parts)

    @property
    def rate_text(self):
        return f"{self.rate_limit} a {'second' if self.rate_per == 1 else 'minute'}" if self.rate_limit else ""


def overview():
    """(a row per host with limits set or slowed lately, whether Redis answered)."""
    hosts = {h.name: h for h in db.session.scalars(select(Host).where(
        (Host.max_in_flight.is_not(None)) | (Host.rate_limit.is_not(None)) | Host.down_since.is_not(None)))}
    states, answered = {}, False
    url = current_app.config.get("REDIS_URL")
    if url:
        try:
            states = {s.host: s for s in limits.host_states(health.redis_client(url), hosts,
                                                            limits.key_prefix(current_app.config["QUEUE_NAME"]))}
            answered = True
        except Exception:  # the page says Redis did not answer
            pass
    rows = []
    for name in sorted(set(hosts) | set(states)):
        host = hosts.get(name)
        rows.append(HostRow(name, host.max_in_flight if host else None, host.rate_limit if host else None,
                            host.rate_per if host else 1, bool(host and host.down_since), states.get(name)))
    return rows, answered


def workers_on_their_own():
    """The live workers that limit hosts on their own (Redis did not answer them), since when."""
    stale = current_app.config["WORKER_STALE_SECONDS"]
    alive = set(workers.alive(stale))
    return [(w.name, w.limits_own_since) for w in db.session.scalars(
        select(Worker).where(Worker.limits_own_since.is_not(None)).order_by(Worker.name)) if w.name in alive]


def set_limits(name, max_in_flight, rate_limit, rate_per):
    """Set (or, with both None, clear) a host's limits; audited; committed."""
    host = db.session.get(Host, name)
    before = _limits_of(host) if host else None
    if host is None:
        host = Host(name=name, failures=0, probes=0, last_error="")
        db.session.add(host)
    host.max_in_flight, host.rate_limit, host.rate_per = max_in_flight, rate_limit, rate_per or 1
    host.updated_at = utcnow()
    after = _limits_of(host)
    cleared = max_in_flight is None and rate_limit is None
    audit.record("host.limits", "host", None, name, before=before, after=after,
                 summary=f"Limits of {name} removed" if cleared else f"Limits of {name} set: {describe(host)}")
    db.session.commit()


def _limits_of(host):
    return {"max_in_flight": host.max_in_flight, "rate_limit": host.rate_limit, "rate_per": host.rate_per}


def describe(host):
    parts = []
    if host.max_in_flight:
        parts.append(f"{host.max_in_flight} at once")
    if host.rate_limit:
        parts.append(f"{host.rate_limit} a {'second' if host.rate_per == 1 else 'minute'}")
    return ", ".join(parts) or "no limits"
