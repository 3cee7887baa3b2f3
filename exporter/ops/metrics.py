"""The Prometheus figures /metrics serves, read from the database at scrape time.

A custom collector, not counters kept in memory: several web and worker processes on several
machines share one database, so the database is the only place every send is counted. Each
scrape runs a few GROUP BY queries: deliveries by status, one pass over the attempts for the
counts by outcome and export type and the latency histogram, the due backlog and the hosts.
The attempt counters are totals over the attempts table: deleting a profile (whose attempts
go with it) lowers them, which Prometheus reads as a counter reset.
"""
from datetime import timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from sqlalchemy import case, func, select

from . import health
from ..extensions import db
from ..models import Attempt, Delivery, Profile

# Upper bounds of the send latency buckets, in milliseconds (attempts record elapsed_ms).
LATENCY_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


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
        family = GaugeMetricFamily("exporter_deliveries", "Deliveries by status.", labels=["status"])
        found = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        for status in Delivery.STATUSES:
            family.add_metric([status], found.get(status, 0))
        return family

    def _attempts(self):
        """Attempts (test sends left out) by outcome and export type, and their latency, in one pass."""
        export_type = func.coalesce(Profile.export_type, "unknown")
        buckets = [func.sum(case((Attempt.elapsed_ms <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS_MS]
        rows = db.session.execute(
            select(export_type, Attempt.ok, func.count(), func.count(Attempt.elapsed_ms),
                   func.coalesce(func.sum(Attempt.elapsed_ms), 0), *buckets)
            .outerjoin(Profile, Attempt.profile_id == Profile.id)
            .where(Attempt.is_test.is_(False))
            .group_by(export_type, Attempt.ok)).all()
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


def render(redis_url, queue_name):
    """The Prometheus text exposition of every figure above."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(redis_url, queue_name))
    return generate_latest(registry)
