"""The Prometheus figures /metrics serves, read from the database at scrape time.

A custom collector, not counters kept in memory: several web and worker processes on several
machines share one database, so the database is the only place every send is counted.

At a million attempts a pass over them all took 1.4 s a scrape, so the attempt counters and the
latency histogram are the hourly roll-ups of attempt_hours (each closed hour folded once, by the
first scrape after it closed ROLLUP_LAG ago) plus the attempts since the last folded hour, read
through ix_attempts_started_at. The roll-ups outlive the attempts: a purge or a deleted profile no
longer lowers the counters. Deliveries by status are stats.status_counts (exact up to its cap,
PostgreSQL's estimate above it, as the metric's help says).
"""
from datetime import timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, insert, select
from sqlalchemy.exc import IntegrityError

from . import health, stats
from ..extensions import db
from ..models import LATENCY_BUCKETS_MS, Attempt, AttemptHour, Profile, utcnow

# An hour is folded once it closed this long ago: longer than any send takes between its start
# (the attempt's started_at) and its record, so no attempt arrives in an hour already folded.
ROLLUP_LAG = timedelta(hours=1)
_FIGURES = ["attempts", "timed", "sum_ms", *(f"le_{bound}" for bound in LATENCY_BUCKETS_MS)]


def _timestamp(naive_utc):
    return naive_utc.replace(tzinfo=timezone.utc).timestamp()


class DatabaseCollector:
    def __init__(self, redis_url=None, queue_name=None):
        self.redis_url, self.queue_name = redis_url, queue_name

    def collect(self):
        yield self._deliveries()
        yield from self._attempts()
        yield from self._backlog()
        yield from self._hosts()
        yield from self._processes()

    def _deliveries(self):
        family = GaugeMetricFamily(
            "exporter_deliveries",
            f"Deliveries by status (exact up to {stats.COUNT_CAP}, above it PostgreSQL's estimate).",
            labels=["status"])
        for status, count in stats.status_counts().items():
            family.add_metric([status], count.n)
        return family

    def _attempts(self):
        """Attempts (test sends left out) by outcome and export type, and their latency."""
        rows = attempt_totals()
        attempts = CounterMetricFamily("exporter_attempts", "Send attempts by outcome and export type.",
                                       labels=["outcome", "export_type"])
        latency = {}  # export type: [timed, sum_ms, bucket counts...]
        for kind, ok, count, timed, sum_ms, *in_buckets in rows:
            attempts.add_metric(["ok" if ok else "failed", kind], count)
            total = latency.setdefault(kind, [0, 0] + [0] * len(LATENCY_BUCKETS_MS))
            for i, value in enumerate([timed, sum_ms, *in_buckets]):
                total[i] += int(value or 0)
        histogram = HistogramMetricFamily("exporter_send_latency_seconds",
                                          "Time a send took (each attempt's elapsed time).", labels=["export_type"])
        for kind, (timed, sum_ms, *in_buckets) in sorted(latency.items()):
            points = [(floatToGoString(bound / 1000), n) for bound, n in zip(LATENCY_BUCKETS_MS, in_buckets)]
            histogram.add_metric([kind], points + [("+Inf", timed)], sum_value=sum_ms / 1000)
        yield attempts
        yield histogram

    def _backlog(self):
        count, age = health.due_backlog()
        yield GaugeMetricFamily("exporter_due_deliveries",
                                "Deliveries due and waiting to be sent (those to down hosts left out).", value=count)
        yield GaugeMetricFamily("exporter_oldest_due_age_seconds",
                                "How long the oldest due delivery has waited (0 when none waits).", value=age or 0)

    def _hosts(self):
        down = health.down_hosts()
        yield GaugeMetricFamily("exporter_hosts_down", "Target hosts whose circuit is open.", value=len(down))
        since = GaugeMetricFamily("exporter_host_down_since_timestamp_seconds",
                                  "When each down host went down (Unix time).", labels=["host"])
        for host in down:
            since.add_metric([host.name], _timestamp(host.down_since))
        yield since

    def _processes(self):
        """Live workers and cron schedulers, when Redis answers (exporter_redis_up says whether)."""
        counts = None
        if self.redis_url:
            try:
                connection = health.redis_client(self.redis_url)
                counts = (health.live_workers(connection, self.queue_name), health.live_cron_schedulers(connection))
            except Exception:
                counts = None
        yield GaugeMetricFamily("exporter_redis_up", "1 when Redis answered this scrape.",
                                value=int(counts is not None))
        if counts is not None:
            yield GaugeMetricFamily("exporter_workers_alive", "RQ workers listening on the queue.", value=counts[0])
            yield GaugeMetricFamily("exporter_cron_schedulers_alive", "Cron schedulers with a recent heartbeat.",
                                    value=counts[1])


def _attempt_figures(where, by_hour=False):
    """Attempts (test sends left out) by export type and outcome (and hour): _FIGURES each."""
    export_type = func.coalesce(Profile.export_type, "unknown")
    hour = stats.hour_of(Attempt.started_at)
    figures = [func.count(), func.count(Attempt.elapsed_ms), func.coalesce(func.sum(Attempt.elapsed_ms), 0),
               *(func.sum(case((Attempt.elapsed_ms <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS_MS)]
    keys = [hour, export_type, Attempt.ok] if by_hour else [export_type, Attempt.ok]
    return db.session.execute(
        select(*keys, *figures).outerjoin(Profile, Attempt.profile_id == Profile.id)
        .where(Attempt.is_test.is_(False), *where).group_by(*keys)).all()


def fold_closed_hours(now=None):
    """Roll the attempts of each hour that closed ROLLUP_LAG ago, and is not rolled yet, into
    attempt_hours. Returns where the roll-ups end: the attempts from then on are not in them."""
    until = ((now or utcnow()) - ROLLUP_LAG).replace(minute=0, second=0, microsecond=0)
    last = db.session.scalar(select(func.max(AttemptHour.hour)))
    start = last + timedelta(hours=1) if last is not None else None
    if start is not None and start >= until:
        return start
    where = [Attempt.started_at < until] + ([Attempt.started_at >= start] if start is not None else [])
    rows = [dict(zip(["hour", "export_type", "ok", *_FIGURES], row)) for row in _attempt_figures(where, by_hour=True)]
    for row in rows:
        row["hour"] = stats.as_datetime(row["hour"])
        row.update({key: int(row[key] or 0) for key in _FIGURES})
    if rows:
        try:
            db.session.execute(insert(AttemptHour), rows)
            db.session.commit()
        except IntegrityError:  # another scrape folded the same hours first: theirs count
            db.session.rollback()
    last = db.session.scalar(select(func.max(AttemptHour.hour)))
    return last + timedelta(hours=1) if last is not None else None


def attempt_totals(now=None):
    """[(export type, ok, attempts, timed, sum_ms, le_25, ..., le_30000)]: the roll-ups' sums plus
    the attempts since the last rolled hour."""
    since = fold_closed_hours(now)
    totals = {}
    rolled = db.session.execute(
        select(AttemptHour.export_type, AttemptHour.ok, *(func.sum(getattr(AttemptHour, key)) for key in _FIGURES))
        .group_by(AttemptHour.export_type, AttemptHour.ok)).all()
    live = _attempt_figures([Attempt.started_at >= since] if since is not None else [])
    for kind, ok, *figures in [*rolled, *live]:
        total = totals.setdefault((kind, bool(ok)), [0] * len(_FIGURES))
        for i, value in enumerate(figures):
            total[i] += int(value or 0)
    return [(kind, ok, *figures) for (kind, ok), figures in sorted(totals.items())]


def render(redis_url, queue_name):
    """The Prometheus text exposition of every figure above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(redis_url, queue_name))
    return generate_latest(registry)
