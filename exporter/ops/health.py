"""Is Exporter working? The checks behind /healthz, the dashboard's worker count and its list of
down hosts. No web parts: the health blueprint and the dashboard both call these.

Each check answers from its own source: the database (SELECT 1), Redis (PING), RQ's worker
registry for the app's queue and the workers table (a worker counts while RQ lists it and its
heartbeat in the table is fresh: a dead one is seen within WORKER_STALE_SECONDS), RQ's cron scheduler registry (a CronScheduler counts while it has sent a heartbeat
within two of its beats, 120 s at most: cron_stale_seconds), and the deliveries table (how long the oldest due delivery has
waited). Errors are named by their type only: a message could carry a URL or a password.
"""
import time
from dataclasses import dataclass, field

from flask import current_app
from rq.cron_scheduler_registry import get_registry_key as cron_registry_key
from rq.defaults import DEFAULT_CRON_SCHEDULER_TTL
from rq.worker_registration import WORKERS_BY_QUEUE_KEY
from sqlalchemy import func, select, text

from .. import audit
from ..delivery import limits, schedule, workers
from ..extensions import db
from ..models import Delivery, Host, utcnow

REDIS_TIMEOUT_SECONDS = 2  # a hung Redis fails the check instead of hanging /healthz
WORKERS_CACHE_SECONDS = 5  # the banner on every page asks Redis at most this often

# One round trip: the workers registered on a queue whose keys still live (a SIGKILLed
# worker stays in the set until some worker's maintenance cleans it, but its key expires).
_LIVE_WORKERS = """
local alive = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', key) == 1 then alive = alive + 1 end
end
return alive
"""

_clients = {}
_workers_cache = {}


@dataclass
class Check:
    ok: bool
    details: dict = field(default_factory=dict)

    def as_dict(self):
        return {"ok": self.ok, **self.details}


def redis_client(url):
    """A connection for health checks only, with short timeouts and no retries (redis-py's default
    backoff took 8 s to give up on a refused port: /healthz must answer well before that)."""
    if url not in _clients:
        _clients[url] = limits.connect(url, REDIS_TIMEOUT_SECONDS)
    return _clients[url]


def _failed(exc, what):
    return Check(False, {"error": f"{what}: {type(exc).__name__}"})


# --- the parts -------------------------------------------------------------------------------

def check_database():
    try:
        db.session.execute(text("SELECT 1"))
        return Check(True)
    except Exception as exc:
        db.session.rollback()
        return _failed(exc, "the database did not answer")


def check_redis(connection):
    if connection is None:
        return Check(False, {"error": "REDIS_URL is not set"})
    try:
        connection.ping()
        return Check(True)
    except Exception as exc:
        return _failed(exc, "Redis did not answer")


def live_workers(connection, queue_name, now=None):
    """How many workers are alive: registered with RQ on the queue (one Redis call) and beating in
    the workers table within WORKER_STALE_SECONDS. RQ keeps a SIGKILLed worker registered for
    minutes, until its key expires; its heartbeat goes stale in seconds."""
    registered = int(connection.eval(_LIVE_WORKERS, 1, WORKERS_BY_QUEUE_KEY % queue_name))
    if not registered:
        return 0
    return min(registered, len(workers.alive(float(current_app.config["WORKER_STALE_SECONDS"]), now)))


def cron_stale_seconds(sweep_interval):
    """How long a CronScheduler may be silent before it counts as stopped. `exporter cron` beats
    once per loop, and its loop sleeps until its next tick is due, a minute at most: it beats every
    min(SWEEP_INTERVAL_SECONDS, 60) s. Two beats missed, and 5 s for a slow Redis, is a stopped
    cron, never more than RQ's own threshold (120 s): with the default 60 s sweep, 120 s."""
    return min(2 * min(float(sweep_interval), 60.0) + 5, float(DEFAULT_CRON_SCHEDULER_TTL))


def live_cron_schedulers(connection, now=None, stale_seconds=None):
    """How many CronSchedulers (`exporter cron`) sent a heartbeat within cron_stale_seconds() of
    the app's sweep interval: a SIGKILLed one stops counting within that bound."""
    now = time.time() if now is None else now
    if stale_seconds is None:
        stale_seconds = cron_stale_seconds(current_app.config["SWEEP_INTERVAL_SECONDS"])
    return len(connection.zrangebyscore(cron_registry_key(), now - stale_seconds, "+inf"))


def check_workers(connection, queue_name):
    return _count_check(lambda: live_workers(connection, queue_name), "could not count workers",
                        "no worker is alive: nothing is sent (start `exporter worker`)")


def check_scheduler(connection):
    return _count_check(lambda: live_cron_schedulers(connection), "could not count cron schedulers",
                        "no cron scheduler is alive: nothing sweeps (start `exporter cron`)")


def _count_check(count, failed, none_alive):
    """OK when count() finds a live process; the error says what to start when none is."""
    try:
        alive = count()
    except Exception as exc:
        return _failed(exc, failed)
    details = {"alive": alive}
    if not alive:
        details["error"] = none_alive
    return Check(alive > 0, details)


def down_hosts():
    """Hosts whose circuit is open, the longest down first."""
    return db.session.scalars(select(Host).where(Host.down_since.is_not(None))
                              .order_by(Host.down_since, Host.name)).all()


def _due(now):
    """Waiting deliveries due by now, leaving out those to a down host: they wait for the
    host's probe by design, and hosts down are reported on their own."""
    down = select(Host.name).where(Host.down_since.is_not(None))
    return [Delivery.status.in_(Delivery.WAITING), Delivery.due_at <= now, Delivery.target.not_in(down)]


def due_backlog(now=None):
    """(how many deliveries are due and waiting, seconds the oldest of them has waited or None)."""
    now = now or utcnow()
    count, oldest = db.session.execute(select(func.count(), func.min(Delivery.due_at)).where(*_due(now))).one()
    if oldest is None:
        return count, None
    if isinstance(oldest, str):  # SQLite's min() of a datetime column
        from datetime import datetime

        oldest = datetime.fromisoformat(oldest)
    return count, max((now - oldest).total_seconds(), 0.0)


def check_oldest_due(max_age, now=None):
    try:
        count, age = due_backlog(now)
    except Exception as exc:
        db.session.rollback()
        return _failed(exc, "could not read the deliveries")
    details = {"due": count, "age_seconds": None if age is None else round(age, 1), "max_age_seconds": max_age}
    ok = age is None or age <= max_age
    if not ok:
        details["error"] = f"a due delivery has waited {age:.0f} s (more than {max_age} s)"
    return Check(ok, details)


# --- the whole report --------------------------------------------------------------------------

def report():
    """{"ok": bool, "failing": [names], "checks": {name: {...}}, "hosts_down": n} for /healthz."""
    cfg = current_app.config
    connection = redis_client(cfg["REDIS_URL"]) if cfg.get("REDIS_URL") else None
    checks = {"database": check_database(), "redis": check_redis(connection)}
    if checks["redis"].ok:
        checks["workers"] = check_workers(connection, cfg["QUEUE_NAME"])
        checks["scheduler"] = check_scheduler(connection)
    else:
        checks["workers"] = checks["scheduler"] = Check(False, {"error": "unknown: Redis did not answer"})
    if checks["database"].ok:
        checks["oldest_due"] = check_oldest_due(float(cfg["HEALTH_MAX_DUE_AGE_SECONDS"]))
    else:
        checks["oldest_due"] = Check(False, {"error": "unknown: the database did not answer"})
    failing = [name for name, check in checks.items() if not check.ok]
    body = {"ok": not failing, "failing": failing, "checks": {n: c.as_dict() for n, c in checks.items()}}
    if checks["database"].ok:
        body["hosts_down"] = len(down_hosts())
    return body


def workers_alive_cached():
    """Live workers for the banner on every page: at most one Redis call per few seconds; None
    when Redis does not answer."""
    cfg = current_app.config
    if not cfg.get("REDIS_URL"):
        return None
    key = (cfg["REDIS_URL"], cfg["QUEUE_NAME"])
    cached = _workers_cache.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    try:
        alive = live_workers(redis_client(cfg["REDIS_URL"]), cfg["QUEUE_NAME"])
    except Exception:
        alive = None
    _workers_cache[key] = (time.monotonic() + WORKERS_CACHE_SECONDS, alive)
    return alive


def forget_cached_workers():
    """Tests: count again on the next page."""
    _workers_cache.clear()


# --- an admin's action -------------------------------------------------------------------------

def probe_now(name):
    """Make a down host's next probe due now and wake a drain to send it; False if no host of
    that name is down."""
    host = db.session.get(Host, name)
    if host is None or host.down_since is None:
        return False
    host.probe_at = utcnow()
    audit.record("host.probe", "host", None, name, summary=f"Probe now: {name}, down since "
                 f"{host.down_since:%Y-%m-%d %H:%M} UTC, is probed at once")
    db.session.commit()
    schedule.wake()
    return True
