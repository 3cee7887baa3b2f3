"""The health checks on a real Redis and database: live workers and cron schedulers as RQ
registers them, and the oldest due delivery's age (deliveries to a down host left out)."""
import time
from datetime import timedelta

import pytest
from rq import SimpleWorker
from rq.cron import CronScheduler
from rq.cron_scheduler_registry import get_registry_key

from exporter.ops import health
from exporter.delivery import queue
from exporter.extensions import db
from exporter.models import Delivery, Host, utcnow

from ..factories import make_profile


@pytest.fixture
def connection(app):
    return queue.connect(app.config["REDIS_URL"])


def live_worker(app, name=None):
    """A real RQ worker's registration on the app's queue and its heartbeat in the workers table,
    as `exporter worker` makes them."""
    from exporter.delivery import workers

    worker = SimpleWorker([queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"])],
                          connection=queue.connect(app.config["REDIS_URL"]), name=name)
    worker.register_birth()
    workers.beat(worker.name)
    return worker


def live_cron(app):
    cron = CronScheduler(connection=queue.connect(app.config["REDIS_URL"]))
    cron.register_birth()
    return cron


def test_workers_count_while_registered_and_not_after(app, connection):
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 0
    one, two = live_worker(app), live_worker(app)
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 2
    assert health.live_workers(connection, "another-queue") == 0
    one.register_death()  # a worker that stops on a signal
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 1
    connection.delete(two.key)  # a SIGKILLed worker, once its heartbeat key expired
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 0
    assert not health.check_workers(connection, app.config["QUEUE_NAME"]).ok


def test_a_worker_whose_heartbeat_is_stale_is_dead_though_rq_still_lists_it(app, client, connection):
    """Issue 23: every worker SIGKILLed, /healthz answered 200 for minutes, while RQ kept their
    registrations; the heartbeat table knew within WORKER_STALE_SECONDS."""
    from exporter.models import Worker

    worker, cron = live_worker(app), live_cron(app)
    assert client.get("/healthz").status_code == 200
    db.session.get(Worker, worker.name).seen_at = utcnow() - timedelta(seconds=app.config["WORKER_STALE_SECONDS"] + 1)
    db.session.commit()  # it stopped beating: killed, its RQ key still alive
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 0
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json["checks"]["workers"]["alive"] == 0
    assert "no worker is alive" in answer.json["checks"]["workers"]["error"]


def test_a_cron_scheduler_counts_while_its_heartbeat_is_recent(app, connection):
    assert health.live_cron_schedulers(connection) == 0
    cron = live_cron(app)
    assert health.live_cron_schedulers(connection) == 1
    connection.zadd(get_registry_key(), {cron.name: time.time() - 300})  # killed 5 minutes ago
    assert health.live_cron_schedulers(connection) == 0
    check = health.check_scheduler(connection)
    assert not check.ok and "exporter cron" in check.details["error"]


def due_delivery(profile, minutes_ago, status="scheduled", target="partner.example.com"):
    delivery = Delivery(profile=profile, status=status, target=target,
                        due_at=utcnow() - timedelta(minutes=minutes_ago))
    db.session.add(delivery)
    db.session.commit()
    return delivery


def test_the_oldest_due_age_counts_waiting_due_deliveries_only(app):
    profile = make_profile()
    assert health.due_backlog() == (0, None)
    due_delivery(profile, -5)  # not yet due
    due_delivery(profile, 30, status="delivered")
    due_delivery(profile, 40, status="cancelled")
    due_delivery(profile, 50, status="sending")  # claimed: the sweeper's business, not a backlog
    due_delivery(profile, 2, status="retrying")
    due_delivery(profile, 10)
    count, age = health.due_backlog()
    assert count == 2 and 595 < age < 610
    check = health.check_oldest_due(300)
    assert not check.ok and check.details["due"] == 2 and "waited 6" in check.details["error"]
    assert health.check_oldest_due(900).ok


def test_deliveries_to_a_down_host_wait_for_its_probe_not_for_a_worker(app):
    profile = make_profile()
    due_delivery(profile, 60, target="dialer.example.com")
    due_delivery(profile, 1, target="partner.example.com")
    db.session.add_all([Host(name="dialer.example.com", failures=5, down_since=utcnow() - timedelta(hours=1),
                             last_error="HTTP 503"),
                        Host(name="partner.example.com", failures=1)])  # a failure or two: still up
    db.session.commit()
    count, age = health.due_backlog()
    assert count == 1 and 55 < age < 70
    assert [h.name for h in health.down_hosts()] == ["dialer.example.com"]


def test_probe_now_makes_the_probe_due_and_wakes_a_drain(app, connection):
    later = utcnow() + timedelta(minutes=20)
    db.session.add(Host(name="dialer.example.com", failures=5, down_since=utcnow(), probe_at=later))
    db.session.commit()
    assert health.probe_now("dialer.example.com")
    db.session.expire_all()
    assert db.session.get(Host, "dialer.example.com").probe_at <= utcnow()
    jobs = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).get_jobs()
    assert [job.func_name for job in jobs] == [queue.DRAIN_JOB]
    assert not health.probe_now("nobody.example.com")
    db.session.add(Host(name="up.example.com", failures=1))
    db.session.commit()
    assert not health.probe_now("up.example.com")  # only a down host has a probe to hurry


def test_the_banner_count_is_cached_a_few_seconds(app, connection, monkeypatch):
    health.forget_cached_workers()
    assert health.workers_alive_cached() == 0
    live_worker(app)
    assert health.workers_alive_cached() == 0  # cached
    monkeypatch.setattr(health, "WORKERS_CACHE_SECONDS", 0)
    health.forget_cached_workers()
    assert health.workers_alive_cached() == 1
